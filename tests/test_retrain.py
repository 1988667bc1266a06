"""Scheduled retraining (`tfstream retrain`), end to end on monthly spans of the real
flights data, with faults injected: concurrent runs, SIGKILL while training, a changed
span, label-shuffled and NaN candidates, a rerun with nothing new.

(The kill during promotion is tests/training/test_registry.py's; the window merge against
a preprocess of the concatenation is tests/pipelines/test_window.py's.)
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tfstream.testing import ROOT, flights_monthly_spans, job_dict

pytestmark = pytest.mark.slow

EVERY = 10  # every 10th flight: about 2,800 a month


@pytest.fixture(scope="module")
def raw_spans(tmp_path_factory) -> str:
    """Three monthly spans of flights (January to March 2013)."""
    raw = tmp_path_factory.mktemp("raw_spans")
    flights_monthly_spans(str(raw), every=EVERY, months=(1, 2, 3))
    return str(raw)


def _job(tmp_path, raw: str, **overrides) -> dict:
    """configs/flights_retrain.yaml on ``raw``, writing under ``tmp_path``."""
    retrain = {"datasets_dir": str(tmp_path / "datasets"), "models_dir": str(tmp_path / "models"), "window": 2,
               **overrides.pop("retrain", {})}
    train = {"epochs": 2, **overrides.pop("train", {})}
    output = overrides.pop("output", {"num_shards": {"train": 1, "validation": 1, "eval": 1}})
    return job_dict("flights_retrain.yaml", source={"path": os.path.join(raw, "span={span}", "flights.csv")},
                    retrain=retrain, train=train, output=output, **overrides)


def _config(tmp_path, raw: str, **overrides):
    from tfstream.pipelines.config import config_from_dict

    return config_from_dict(_job(tmp_path, raw, **overrides))


def _copy_spans(raw: str, dest) -> str:
    shutil.copytree(raw, dest)
    return str(dest)


def _write_yaml(path, job: dict) -> str:
    import yaml

    path.write_text(yaml.safe_dump(job))
    return str(path)


def _cli(*args: str, cwd=ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tfstream.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _mtimes(*roots) -> dict[str, int]:
    out = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                out[path] = os.stat(path).st_mtime_ns
    return out


def test_months_in_order_promote_keep_and_nothing_new(tmp_path, raw_spans):
    """The scheduler's view: month after month; a rerun is a no-op that rewrites nothing."""
    from tfstream.retraining import EXIT_NOTHING_NEW, EXIT_PROMOTED, read_records, retrain
    from tfstream.training import registry

    config = _config(tmp_path, raw_spans)
    first = retrain(config, until="2013-01", verbose=0)
    assert first.exit_code == EXIT_PROMOTED, first.record["reason"]
    rec = first.record
    assert rec["window"] == ["2013-01"] and rec["spans_seen"] == ["2013-01"]
    assert rec["datasets"][0]["made"] == "new" and rec["promoted_version"] == 1
    assert rec["warm_start"]["used"] is False and rec["champion"] is None
    assert set(rec["versions"]) == {"tfstream", "tensorflow", "keras", "apache-beam"}
    assert rec["candidate"]["scores"]["log_loss"] > 0 and rec["durations"]["total"] > 0

    for parent, _, names in os.walk(tmp_path / "datasets"):  # source.record_paths: relative
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                assert raw_spans.encode() not in f.read(), os.path.join(parent, name)

    models = os.path.join(str(tmp_path / "models"), "flights_retrain")
    before = _mtimes(tmp_path / "datasets", models)
    again = retrain(config, until="2013-01", verbose=0)
    assert again.exit_code == EXIT_NOTHING_NEW and again.record["reason"].startswith("nothing new")
    after = _mtimes(tmp_path / "datasets", models)
    own = {os.path.join(models, "runs.jsonl"), os.path.join(models, ".retrain.lock")}
    assert {p: t for p, t in after.items() if p not in own} == {p: t for p, t in before.items() if p not in own}

    second = retrain(config, until="2013-02", verbose=0)
    assert second.exit_code in (0, 10), second.record["reason"]
    rec = second.record
    assert rec["window"] == ["2013-01", "2013-02"]
    assert [d["made"] for d in rec["datasets"]] == [None, "new"]  # January reused, February written
    assert rec["warm_start"]["used"] is True, rec["warm_start"]
    assert rec["champion"]["version"] == 1 and rec["champion"]["scores"]["log_loss"] > 0
    assert rec["gate_split"]["span"] == "2013-02"
    champion = registry.champion(models)
    assert champion.number == (2 if second.exit_code == 0 else 1)
    model, version = registry.load_champion(models)
    assert version.number == champion.number and os.path.isdir(version.export_dir)
    records = read_records(models)
    assert [r["exit_code"] for r in records] == [0, EXIT_NOTHING_NEW, second.exit_code]
    assert len({r["run_id"] for r in records}) == 3


def test_a_changed_span_is_written_again(tmp_path, raw_spans):
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.retraining import retrain

    raw = _copy_spans(raw_spans, tmp_path / "raw")
    config = _config(tmp_path, raw)
    assert retrain(config, until="2013-01", verbose=0).exit_code == 0
    january = os.path.join(str(tmp_path / "datasets"), "flights_retrain", "span=2013-01")
    old = load_manifest(january)
    path = os.path.join(raw, "span=2013-01", "flights.csv")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines[:-100])  # a correction: the last 100 flights withdrawn
    result = retrain(config, until="2013-01", verbose=0)
    assert result.record["datasets"][0]["made"].startswith("changed input: flights.csv")
    new = load_manifest(january)
    assert new.snapshot["id"] != old.snapshot["id"] and new.snapshot["parent"] == old.snapshot["id"]
    assert new.source.rows_read == old.source.rows_read - 100
    assert os.path.isdir(os.path.join(january, "snapshots", old.snapshot["id"]))  # the old one stays
    assert result.exit_code in (0, 10)  # a new window: a new decision, not "nothing new"


def test_a_changed_dataset_setting_rewrites_the_spans(tmp_path, raw_spans):
    from tfstream.retraining import retrain

    assert retrain(_config(tmp_path, raw_spans), until="2013-01", verbose=0).exit_code == 0
    changed = _config(tmp_path, raw_spans, validation={"max_bad_fraction": 0.5})
    result = retrain(changed, until="2013-01", verbose=0)
    assert result.record["datasets"][0]["made"] == "changed config"
    # The same rows pass either way: the same records, byte for byte, so nothing to train.
    assert result.exit_code == 11 and "trained on this window" in result.record["reason"]


def test_two_runs_started_together_one_trains_the_other_exits_75(tmp_path, raw_spans):
    from tfstream.retraining import read_records

    config = _write_yaml(tmp_path / "job.yaml", _job(tmp_path, raw_spans))
    runs = [_cli("retrain", "--config", config, "--until", "2013-01") for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in runs]
    codes = sorted(p.returncode for p in runs)
    assert codes == [0, 75], [o[1][-2000:] for o in outs]
    busy = next(o for p, o in zip(runs, outs) if p.returncode == 75)
    assert "another" in busy[1] and "--wait" in busy[1]
    records = read_records(os.path.join(str(tmp_path / "models"), "flights_retrain"))
    assert sorted(r["exit_code"] for r in records) == [0, 75]
    assert sum(1 for r in records if r.get("epochs_run")) == 1  # exactly one trained


def test_a_run_killed_while_training_resumes_with_the_same_epoch_count(tmp_path, raw_spans):
    from tfstream.retraining import read_records

    epochs = 6
    job = _job(tmp_path, raw_spans, train={"epochs": epochs, "early_stopping_patience": 0})
    config = _write_yaml(tmp_path / "job.yaml", job)
    history = os.path.join(str(tmp_path / "models"), "flights_retrain", "candidate", "history.csv")
    run = _cli("retrain", "--config", config, "--until", "2013-01")
    deadline = time.time() + 400
    while time.time() < deadline and run.poll() is None:
        if os.path.exists(history) and len(open(history).read().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.2)
    assert run.poll() is None, run.communicate()[1][-2000:]
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = _cli("retrain", "--config", config, "--until", "2013-01")
    out, err = done.communicate(timeout=600)
    assert done.returncode in (0, 10), err[-2000:]
    last = read_records(os.path.join(str(tmp_path / "models"), "flights_retrain"))[-1]
    # Killed once history.csv holds 2 epochs: the backup holds epoch 2 too (resumed at 3), or
    # the kill came between the history's line and the backup's rename, and epoch 2 is run
    # again (resumed at 2; training/callbacks.py: repeated, never skipped). Either way it
    # resumes, not restarts, and ends with the same epoch count.
    assert last["resumed_at_epoch"] is not None and last["resumed_at_epoch"] >= 2, last
    assert last["epochs_run"] == epochs


def test_kills_at_random_moments_of_training_never_break_the_resume(tmp_path, raw_spans):
    """Killed again and again while the candidate trains (in the middle of a batch, of a
    checkpoint's write, of the backup's), the run resumes each time and ends with every
    epoch: each checkpoint file is written whole, then renamed (training/callbacks.py)."""
    from tfstream.retraining import read_records

    epochs = 10
    config = _write_yaml(tmp_path / "job.yaml", _job(tmp_path, raw_spans,
                                                     train={"epochs": epochs, "early_stopping_patience": 0}))
    history = os.path.join(str(tmp_path / "models"), "flights_retrain", "candidate", "history.csv")

    def logged() -> int:
        return len(open(history).read().splitlines()) if os.path.exists(history) else 0

    rng = random.Random(11)
    kills = 0
    for _ in range(4):
        before = logged()
        run = _cli("retrain", "--config", config, "--until", "2013-01")
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None and logged() <= before:
            time.sleep(0.02)  # until this process has trained an epoch
        time.sleep(rng.uniform(0.0, 0.6))  # then anywhere in the next one or two
        if run.poll() is not None:
            break
        run.send_signal(signal.SIGKILL)
        run.wait()
        kills += 1
    done = _cli("retrain", "--config", config, "--until", "2013-01")
    out, err = done.communicate(timeout=600)
    assert done.returncode in (0, 10), err[-2000:]
    assert kills == 4
    assert read_records(os.path.join(str(tmp_path / "models"), "flights_retrain"))[-1]["epochs_run"] == epochs


def _shuffle_labels(raw: str, dest, months=(1, 2, 3), seed: int = 7) -> str:
    """The spans with their arrival delays shuffled among the rows: labels that no
    feature predicts."""
    rng = random.Random(seed)
    for m in months:
        src = os.path.join(raw, f"span=2013-{m:02d}", "flights.csv")
        out = os.path.join(str(dest), f"span=2013-{m:02d}", "flights.csv")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(src, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        column = rows[0].index("arr_delay")
        delays = [r[column] for r in rows[1:]]
        rng.shuffle(delays)
        for r, d in zip(rows[1:], delays):
            r[column] = d
        with open(out, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return str(dest)


def test_a_candidate_trained_on_shuffled_labels_is_never_promoted(tmp_path, raw_spans):
    from tfstream.retraining import EXIT_KEPT, EXIT_PROMOTED, retrain
    from tfstream.training import registry

    for seed in (7, 8, 9):  # three shufflings: without a champion, nothing learned is promoted
        shuffled = _shuffle_labels(raw_spans, tmp_path / f"shuffled{seed}", months=(1,), seed=seed)
        alone = retrain(_config(tmp_path / f"a{seed}", shuffled), until="2013-01", verbose=0)
        assert alone.exit_code == EXIT_KEPT and "trivial baselines" in alone.record["reason"], alone.record
        assert registry.champion(os.path.join(str(tmp_path / f"a{seed}" / "models"), "flights_retrain")) is None

    # With a champion trained on real labels: a shuffled month does not replace it.
    raw = _copy_spans(raw_spans, tmp_path / "mixed")
    config = _config(tmp_path / "b", raw, retrain={"window": 1})
    assert retrain(config, until="2013-01", verbose=0).exit_code == EXIT_PROMOTED
    shutil.rmtree(os.path.join(raw, "span=2013-02"))
    _shuffle_labels(raw_spans, raw, months=(2,))
    result = retrain(config, until="2013-02", verbose=0)
    assert result.exit_code == EXIT_KEPT, result.record["reason"]
    assert registry.champion(os.path.join(str(tmp_path / "b" / "models"), "flights_retrain")).number == 1


def test_a_nan_metric_is_never_promoted(tmp_path, raw_spans, monkeypatch):
    import tfstream.training.trainer as trainer
    from tfstream.retraining import EXIT_KEPT, read_records, retrain

    real = trainer.evaluate

    def broken(*args, **kwargs):
        scores, baselines = real(*args, **kwargs)
        return {**scores, "log_loss": float("nan")}, baselines

    monkeypatch.setattr(trainer, "evaluate", broken)
    result = retrain(_config(tmp_path, raw_spans), until="2013-01", verbose=0)
    assert result.exit_code == EXIT_KEPT
    assert "nan" in result.record["reason"] and "never promoted" in result.record["reason"]
    assert not os.path.exists(os.path.join(str(tmp_path / "models"), "flights_retrain", "CHAMPION"))
    assert read_records(os.path.join(str(tmp_path / "models"), "flights_retrain"))[-1]["decision"] == "kept champion"


def test_models_cli_lists_shows_and_rolls_back(tmp_path, raw_spans):
    from tfstream.cli import main
    from tfstream.retraining import retrain
    from tfstream.training import registry

    raw = _copy_spans(raw_spans, tmp_path / "raw")
    config = _config(tmp_path, raw, retrain={"window": 1, "min_improvement": 0.0})
    assert retrain(config, until="2013-01", verbose=0).exit_code == 0
    models = os.path.join(str(tmp_path / "models"), "flights_retrain")
    # A second version, promoted whatever it scores (the gate is the test above's).
    v2 = registry.promote(models, registry.champion(models).path, ["model.keras", "export", "metrics.json",
                                                                   "window.json"], {"note": "copy"}, keep=5)
    assert registry.champion(models).number == v2.number == 2
    assert main(["models", "list", models]) == 0
    assert main(["models", "show", models, "--version", "1"]) == 0
    assert main(["models", "rollback", models]) == 0
    assert registry.champion(models).number == 1
    assert main(["models", "runs", models, "--plot", str(tmp_path / "runs.png")]) == 0
    assert (tmp_path / "runs.png").stat().st_size > 1000
    with open(os.path.join(models, "versions", "1", "model.keras"), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(["models", "show", models]) == 3  # the champion's checksum no longer matches
    with pytest.raises(registry.ChecksumError):
        registry.load_champion(models)
    assert json.loads(open(os.path.join(models, "CHAMPION")).read())["version"] == 1


def test_a_promoted_copy_that_fails_its_check_is_removed_and_not_promoted(tmp_path, raw_spans, monkeypatch):
    import tfstream.retraining as retraining
    from tfstream.training import registry

    def broken(path, *rest):
        raise retraining.VersionCheckError(f"{path}: the serving export and the model disagree")

    monkeypatch.setattr(retraining, "_check_version", broken)
    result = retraining.retrain(_config(tmp_path, raw_spans), until="2013-01", verbose=0)
    assert result.exit_code == retraining.EXIT_KEPT
    assert "failed its check, so it was removed" in result.record["reason"]
    models = os.path.join(str(tmp_path / "models"), "flights_retrain")
    assert registry.champion(models) is None and registry.versions(models) == []
    assert not os.path.exists(os.path.join(models, "candidate"))
    # decided: the same window is not trained again
    assert retraining.retrain(_config(tmp_path, raw_spans), until="2013-01", verbose=0).exit_code == 11


def test_a_champion_that_cannot_be_scored_is_never_replaced(tmp_path, raw_spans, monkeypatch):
    import tfstream.retraining as retraining
    from tfstream.training import registry

    config = _config(tmp_path, raw_spans, retrain={"window": 1})
    assert retraining.retrain(config, until="2013-01", verbose=0).exit_code == 0

    def failing(gate, champion):
        raise retraining.ChampionNotScored("ResourceExhaustedError: out of memory")

    monkeypatch.setattr(retraining, "_score_champion", failing)
    result = retraining.retrain(config, until="2013-02", verbose=0)
    assert result.exit_code == retraining.EXIT_KEPT
    assert "a failed evaluation never promotes" in result.record["reason"]
    assert registry.champion(os.path.join(str(tmp_path / "models"), "flights_retrain")).number == 1


def test_the_gate_split_is_train_eval_split_whatever_its_name(tmp_path, raw_spans):
    from tfstream.retraining import retrain

    config = _config(tmp_path, raw_spans, split={"key": ["year", "month", "day", "carrier", "flight", "origin"],
                                                 "fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}},
                     output={"num_shards": {"train": 1, "validation": 1, "test": 1}},
                     train={"epochs": 2, "eval_split": "test"})
    first = retrain(config, until="2013-01", verbose=0)
    assert first.exit_code == 0
    second = retrain(config, until="2013-02", verbose=0)
    gate = second.record["gate_split"]
    assert gate["span"] == "2013-02" and gate["split"] == "test"
    from tfstream.pipelines.manifest import load_manifest

    february = load_manifest(os.path.join(str(tmp_path / "datasets"), "flights_retrain", "span=2013-02"))
    assert gate["examples"] == february.num_examples("test")  # the newest span's alone
