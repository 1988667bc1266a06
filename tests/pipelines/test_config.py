import os

import pytest

from tfstream.pipelines.config import ConfigError, config_from_dict, load_config, resolve_source_paths

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


@pytest.mark.parametrize("name", ["flights_dense.yaml", "digits_lstm.yaml"])
def test_shipped_configs_load_and_find_their_data(name):
    config = load_config(os.path.join(CONFIGS, name))
    paths = resolve_source_paths(config.source)
    assert len(paths) == 1 and os.path.isfile(paths[0])
    assert config.schema().label.name == config.label.name



def test_unknown_key_names_path_and_closest_key(make_job):
    with pytest.raises(ConfigError, match=r"^reader.batch_sise: unknown key; did you mean 'batch_size'\?$"):
        make_job("flights_dense.yaml", reader={"batch_sise": 32})
    with pytest.raises(ConfigError, match=r"^features\[2\].on_mising: unknown key; did you mean 'on_missing'\?$"):
        make_job("flights_dense.yaml", features=[{"name": "month", "type": "int"}, {"name": "day", "type": "int"},
                                                 {"name": "x", "type": "float", "on_mising": "drop"}])
    with pytest.raises(ConfigError, match=r"^modle: unknown key; did you mean 'model'\?$"):
        make_job("flights_dense.yaml", modle={})


def test_wrong_types_and_ranges(make_job):
    with pytest.raises(ConfigError, match=r"^reader.batch_size: expected an integer, got 'big'$"):
        make_job("flights_dense.yaml", reader={"batch_size": "big"})
    with pytest.raises(ConfigError, match=r"reader.batch_size: expected 1..1000000, got 0"):
        make_job("flights_dense.yaml", reader={"batch_size": 0})
    with pytest.raises(ConfigError, match=r"split.fractions: the fractions add up to 1.1, not 1"):
        make_job("flights_dense.yaml", split={"fractions": {"train": 0.9, "validation": 0.1, "eval": 0.1}})
    with pytest.raises(ConfigError, match=r"model.dropout: expected 0 <= dropout < 1, got 1.5"):
        make_job("flights_dense.yaml", model={"dropout": 1.5})
    with pytest.raises(ConfigError, match=r"train: split 'test' is not one of split.fractions"):
        make_job("flights_dense.yaml", train={"eval_split": "test"})


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"^label: missing required key$"):
        config_from_dict({"name": "x", "source": {"format": "csv", "path": "x.csv"},
                          "features": [{"name": "a", "type": "float"}], "model": {"type": "dense"}})


def test_feature_rules(make_job):
    with pytest.raises(ConfigError, match=r"features\[x\]: set `default:` exactly when `on_missing: default`"):
        make_job("flights_dense.yaml", features=[{"name": "x", "type": "float", "on_missing": "default"}])
    with pytest.raises(ConfigError, match=r"features: sequence features are read from an npz or a tfds source only"):
        make_job("flights_dense.yaml", features=[{"name": "x", "type": "sequence", "dim": 2}])
    with pytest.raises(ConfigError, match=r"features: the names \['late'\] are used twice"):
        make_job("flights_dense.yaml", features=[{"name": "late", "type": "float"}])


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match=r"nope.yaml: no such config file"):
        load_config(str(tmp_path / "nope.yaml"))
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the config: expected a mapping"):
        load_config(str(top))


def test_package_paths(make_job):
    config = make_job("flights_dense.yaml", source={"path": "pkg:no_such_package_xyz/data.csv"})
    with pytest.raises(FileNotFoundError, match=r"package 'no_such_package_xyz' is not installed"):
        resolve_source_paths(config.source)
    config = make_job("flights_dense.yaml", source={"path": "/nonexistent/*.csv"})
    with pytest.raises(FileNotFoundError, match=r"no file matches '/nonexistent/\*.csv'"):
        resolve_source_paths(config.source)


def test_config_is_frozen(make_job):
    config = make_job("flights_dense.yaml")
    with pytest.raises(Exception):
        config.reader.batch_size = 1  # type: ignore[misc]


def test_defaults_are_typed(make_job):
    def job(feature):
        return make_job("flights_dense.yaml", features=[feature])

    f = job({"name": "n", "type": "int", "on_missing": "default", "default": 0}).features[0]
    assert f.default == 0 and isinstance(f.default, int)
    f = job({"name": "x", "type": "float", "on_missing": "default", "default": 1}).features[0]
    assert f.default == 1.0 and isinstance(f.default, float)
    with pytest.raises(ConfigError, match=r"features\[n\].default: an int feature needs an integer, got 1.5"):
        job({"name": "n", "type": "int", "on_missing": "default", "default": 1.5})
    with pytest.raises(ConfigError, match=r"features\[c\].default: a string feature needs a string default, got 0"):
        job({"name": "c", "type": "string", "on_missing": "default", "default": 0})
    with pytest.raises(ConfigError, match=r"features\[x\].default: a float feature needs a number, got 'zz'"):
        job({"name": "x", "type": "float", "on_missing": "default", "default": "zz"})


def test_num_shards_names_splits(make_job):
    with pytest.raises(ConfigError, match=r"output.num_shards: \['trian'\] are not splits; the splits are"):
        make_job("flights_dense.yaml", output={"num_shards": {"trian": 3}})


@pytest.mark.parametrize("feature, message", [
    ({"name": "c", "type": "string", "on_missing": "impute"},
     r"features\[c\].on_missing: impute replaces a missing number by the training mean; a string feature needs "
     r"error, drop or default"),
    ({"name": "n", "type": "int", "on_nan": "impute"},
     r"features\[n\].on_nan: only float and sequence features hold NaN or inf; remove it"),
    ({"name": "x", "type": "float", "on_nan": "ignore"},
     r"features\[x\].on_nan: expected one of error, drop, impute; got 'ignore'"),
    ({"name": "x", "type": "float", "max_length": 5}, r"features\[x\].max_length: only a sequence feature has a length"),
    ({"name": "x", "type": "float", "vocab_size": 5},
     r"features\[x\]: vocab_size and oov_buckets belong to string features"),
    ({"name": "c", "type": "string", "oov_buckets": 0}, r"features\[c\].oov_buckets: expected 1..1000, got 0"),
])
def test_value_policies_are_checked(make_job, feature, message):
    with pytest.raises(ConfigError, match=message):
        make_job("flights_dense.yaml", features=[feature])


def test_validation_section(make_job):
    job = make_job("flights_dense.yaml", validation={"max_bad_fraction": 0.01, "drift": {"on_drift": "error"}})
    assert job.validation.max_bad_fraction == 0.01 and job.validation.drift.max_mean_shift == 0.5
    with pytest.raises(ConfigError, match=r"validation.max_bad_fraction: expected a fraction in \[0, 1\], got 2"):
        make_job("flights_dense.yaml", validation={"max_bad_fraction": 2})
    with pytest.raises(ConfigError, match=r"validation.drift.on_drift: expected warn, error or ignore; got 'fail'"):
        make_job("flights_dense.yaml", validation={"drift": {"on_drift": "fail"}})
    with pytest.raises(ConfigError, match=r"validation.drift.max_shift: unknown key; did you mean 'max_mean_shift'\?"):
        make_job("flights_dense.yaml", validation={"drift": {"max_shift": 1}})
