"""The retrain: section: its rules, each message pinned."""

import pytest

from tfstream.pipelines.config import ConfigError, config_from_dict
from tfstream.testing import job_dict


def _job(**retrain):
    return job_dict("flights_retrain.yaml", retrain={**job_dict("flights_retrain.yaml")["retrain"], **retrain})


def test_the_shipped_config_loads():
    config = config_from_dict(_job())
    assert config.retrain.window == 3 and config.retrain.gate_metric("binary") == "log_loss"
    assert config.retrain.significance == 0.01


@pytest.mark.parametrize("change, message", [
    ({"window": 0}, "retrain.window: expected 1..10000, got 0"),
    ({"min_improvement": 1.0}, "retrain.min_improvement: expected a fraction 0 <= x < 1, got 1.0"),
    ({"significance": 0.0}, "retrain.significance: expected 0 < x <= 0.5, got 0.0"),
    ({"keep_versions": 0}, "retrain.keep_versions: expected 1..1000, got 0"),
    ({"models_dir": "gs://bucket/models"}, "retrain.models_dir: expected a local directory"),
    ({"metric": "rmse"}, "retrain.metric: 'rmse' is not a metric of a binary label"),
    ({"windw": 3}, "retrain.windw: unknown key; did you mean 'window'?"),
])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(_job(**change))
    assert message in str(e.value)


def test_span_placeholder_rules():
    job = _job()
    job["source"]["path"] = "raw/*.csv"
    with pytest.raises(ConfigError, match=r"source.path: with a retrain: section, mark the span"):
        config_from_dict(job)
    job = job_dict("flights_dense.yaml", source={"path": "raw/span={span}/x.csv"})
    with pytest.raises(ConfigError, match=r"source.path: \{span\} marks spans, which `tfstream retrain` reads"):
        config_from_dict(job)
    job = _job()
    del job["model"]
    with pytest.raises(ConfigError, match="retrain: needs a model: section"):
        config_from_dict(job)


def test_require_retrain_says_what_to_add():
    config = config_from_dict(job_dict("flights_dense.yaml"))
    with pytest.raises(ConfigError, match=r"retrain: missing; `tfstream retrain` needs a `retrain:` section"):
        config.require_retrain()
