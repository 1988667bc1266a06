"""The `tfstream` command: exit codes, messages, quiet start-up, Beam options passed through."""

import json
import re
import os
import subprocess
import sys

import pytest
import yaml

from tfstream.cli import main


def _write_config(path, data):
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_inspect(flights_dataset, capsys):
    assert main(["inspect", flights_dataset]) == 0
    out = capsys.readouterr().out
    assert "splits" in out and "shards" in out and "schema" in out and "parse spec" in out
    assert main(["inspect", flights_dataset, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "flights"


def test_inspect_without_manifest(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "tfstream inspect: error:" in capsys.readouterr().err


from tfstream.testing import CONFIGS  # noqa: E402


def _shipped(name):
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_unknown_config_key_exits_2_with_the_key(tmp_path, capsys):
    data = _shipped("flights_dense.yaml")
    data["reader"]["shufle_buffer"] = 10
    config = _write_config(tmp_path / "c.yaml", data)
    assert main(["preprocess", "--config", config, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "reader.shufle_buffer: unknown key; did you mean 'shuffle_buffer'?" in err


def test_bad_row_exits_2_naming_file_and_row(tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "d.npz", X=np.ones((5, 13), np.float32), lengths=np.array([2, 3]), y=np.array([1, 12]))
    data = _shipped("digits_lstm.yaml")
    data["source"]["path"] = str(tmp_path / "d.npz")
    config = _write_config(tmp_path / "c.yaml", data)
    assert main(["preprocess", "--config", config, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "d.npz: row 2: column 'y': label 12 is outside the declared classes 0..9" in err


def test_train_needs_a_dataset(tmp_path, capsys):
    config = _write_config(tmp_path / "c.yaml", _shipped("digits_lstm.yaml"))
    assert main(["train", "--config", config, "--dataset", str(tmp_path / "none")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_summary_needs_metrics(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_console_script_is_quiet_and_passes_beam_options(digits_npz, tmp_path):
    """The installed `tfstream` script: no TensorFlow start-up noise on stderr, and Beam
    options after `--` reach PipelineOptions (recorded in the manifest)."""
    data = _shipped("digits_lstm.yaml")
    data["source"]["path"] = digits_npz
    config = _write_config(tmp_path / "c.yaml", data)
    exe = os.path.join(os.path.dirname(sys.executable), "tfstream")
    out = str(tmp_path / "ds")
    proc = subprocess.run(
        [exe, "preprocess", "--config", config, "--output", out, "--",
         "--runner=DirectRunner", "--direct_num_workers=1", "--job_name=tfstream-test"],
        capture_output=True, text=True, timeout=600, env={k: v for k, v in os.environ.items()
                                                        if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert proc.returncode == 0, proc.stderr
    for noise in ("oneDNN", "cuda", "absl::InitializeLog", "apitools", "I0000"):
        assert noise not in proc.stderr, proc.stderr
    assert "tfstream: dataset:" in proc.stderr
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["options"]["beam"]["job_name"] == "tfstream-test"
    assert manifest["options"]["beam"]["runner"] == "DirectRunner"


def test_a_misspelt_option_is_refused(tmp_path, capsys):
    config = _write_config(tmp_path / "c.yaml", _shipped("digits_lstm.yaml"))
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", "--config", config, "--ouput", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: --ouput {tmp_path / 'x'} (neither a tfstream option nor an Apache Beam" in err


def test_unknown_beam_options_are_reported():
    from tfstream.pipelines.write.beam_options import BeamOptionError, unknown_beam_options

    assert unknown_beam_options(["--runner=DataflowRunner", "--project", "p", "--runer=x"]) == ["--runer=x"]
    assert unknown_beam_options(["--project", "p", "stray"]) == ["stray"]
    assert unknown_beam_options(["--direct_num_workers=2", "--flink_master=host:8081"]) == []
    with pytest.raises(BeamOptionError, match=r"bad Apache Beam option: argument --direct_num_workers: invalid int"):
        unknown_beam_options(["--direct_num_workers=two"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--", "--runer=DataflowRunner"], "unrecognized arguments: --runer=DataflowRunner (neither a tfstream"),
        (["--", "--direct_num_workers=two"], "bad Apache Beam option: argument --direct_num_workers: invalid int"),
        (["stray"], "unrecognized arguments: stray (neither a tfstream option nor an Apache Beam pipeline option)"),
    ],
)
def test_bad_beam_arguments_are_refused(tmp_path, capsys, extra, message):
    config = _write_config(tmp_path / "c.yaml", _shipped("digits_lstm.yaml"))
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", "--config", config, "--output", str(tmp_path / "x"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") < 10, err


def test_run_refuses_a_remote_workdir_before_preprocessing(tmp_path, capsys):
    config = _write_config(tmp_path / "c.yaml", _shipped("digits_lstm.yaml"))
    assert main(["run", "--config", config, "--workdir", "gs://bucket/run"]) == 2
    assert "train into a local directory and copy the model" in capsys.readouterr().err


@pytest.mark.slow
def test_run_the_seed_lstm_config_end_to_end(tmp_path, capsys, monkeypatch):
    """`tfstream run` as the README shows it for the seed's example 3 (no validation split)."""
    import numpy as np

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("series.npz", X=rng.random((300, 10, 1), dtype=np.float32), y=rng.integers(0, 2, 300))
    config = os.path.join(CONFIGS, "seed_lstm.yaml")
    assert main(["run", "--config", config, "--workdir", "runs/series", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^series\s+lstm\s+\d+\s+eval\s+\d+\s+1\s+log_loss\s+[\d.]+\s+0\.69\d*\s+(yes|no)\s+.*accuracy",
                     out, re.M), out  # the training prior's log-loss: about log 2 on random labels
    metrics = json.load(open("runs/series/model/metrics.json"))
    assert metrics["examples"]["train"] + metrics["examples"]["eval"] == 300
    assert main(["summary", "runs/series"]) == 0
    assert "series" in capsys.readouterr().out


def test_inspect_plot_writes_pngs_and_prints_their_paths(digits_dataset, tmp_path, capsys):
    out_dir = str(tmp_path / "plots")
    assert main(["inspect", digits_dataset, "--plot", out_dir]) == 0
    out = capsys.readouterr().out
    assert "sequence lengths in steps ('train' split)" in out
    path = os.path.join(out_dir, "train-mfcc-length-histogram.png")
    assert "plots (1 written)" in out and f"  {path}" in out.splitlines()
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_inspect_split_with_json_keeps_stdout_json(digits_dataset, tmp_path, capsys):
    assert main(["inspect", digits_dataset, "--json", "--split", "eval", "--plot", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["name"] == "digits"
    assert os.path.join(str(tmp_path), "eval-mfcc-length-histogram.png") in captured.err


def test_inspect_unknown_split(digits_dataset, capsys):
    assert main(["inspect", digits_dataset, "--split", "test"]) == 2
    assert "no split 'test'; the dataset has ['train', 'validation', 'eval']" in capsys.readouterr().err


def test_config_schema_describes_every_section(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["additionalProperties"] is False
    assert {"name", "source", "features", "label", "split", "output", "reader", "model", "train",
            "validation"} <= set(schema["properties"])
    reader = schema["$defs"]["ReadOptions"]["properties"]
    assert reader["batch_size"]["default"] == 256 and reader["batch_size"]["description"]


def test_config_check_prints_the_whole_config_or_the_first_problem(tmp_path, capsys):
    assert main(["config", "check", os.path.join(CONFIGS, "flights_dense.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ") and yaml.safe_load(out)["reader"]["prefetch"] == -1  # a default, filled in
    data = _shipped("flights_dense.yaml")
    data["model"]["type"] = "cnn"
    assert main(["config", "check", _write_config(tmp_path / "c.yaml", data)]) == 2
    assert "model.type: expected dense or lstm; got 'cnn'" in capsys.readouterr().err


def _toy(tmp_path, rows=2000):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", X=rng.random((rows, 10), dtype=np.float32), y=rng.integers(0, 2, rows))
    data = _shipped("seed_dense.yaml")
    data["source"]["path"] = str(tmp_path / "toy.npz")
    return _write_config(tmp_path / "toy.yaml", data)


def test_run_preprocesses_in_a_child_process_with_the_same_dataset(tmp_path, capsys):
    """`tfstream run` preprocesses in a process of its own (so the trainer does not hold the
    write side's memory): the same shards as `tfstream preprocess`, its pid and each phase's
    peak RSS in metrics.json and the log."""
    config = _toy(tmp_path)
    assert main(["preprocess", "--config", config, "--output", str(tmp_path / "alone")]) == 0
    assert main(["run", "--config", config, "--workdir", str(tmp_path / "run"), "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^toy\s+dense\s+[\d,]+\s+eval\s+[\d,]+\s+1\s+", captured.out, re.M), captured.out
    assert re.search(r"tfstream: peak RSS: preprocess \d+ MB, train \d+ MB", captured.err), captured.err

    def shards(root):
        manifest = json.load(open(os.path.join(root, "manifest.json")))
        return {s: [(sh["records"], sh["sha256"]) for sh in split["shards"]]
                for s, split in manifest["splits"].items()}

    assert shards(str(tmp_path / "alone")) == shards(str(tmp_path / "run" / "dataset"))
    metrics = json.load(open(tmp_path / "run" / "model" / "metrics.json"))
    assert metrics["preprocess_pid"] != os.getpid()
    assert metrics["peak_rss_mb"]["preprocess"] > 0 and metrics["peak_rss_mb"]["train"] > 0
    assert os.path.exists(tmp_path / "run" / "model" / "model.keras")


def test_run_reports_a_preprocessing_error_from_its_child(tmp_path, capfd):
    """The child prints the error as `tfstream preprocess` would (on the same stderr), and
    `run` exits with its status, before any training."""
    import numpy as np

    np.savez(tmp_path / "toy.npz", X=np.ones((4, 10), np.float32), y=np.array([0, 1, 2, 1]))
    data = _shipped("seed_dense.yaml")
    data["source"]["path"] = str(tmp_path / "toy.npz")
    data["validation"] = {"max_bad_fraction": 0}
    config = _write_config(tmp_path / "toy.yaml", data)
    assert main(["run", "--config", config, "--workdir", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err
    assert "tfstream run: error: " in err and "toy.npz" in err, err
    assert not os.path.exists(tmp_path / "run" / "model" / "metrics.json")


_PROBE = """
import sys
from tfstream.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("tensorflow", "apache_beam", "keras") if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["preprocess", "run"])
@pytest.mark.parametrize("problem", ["missing", "directory", "bad_npz"])
def test_a_bad_source_is_reported_before_tensorflow_or_beam_is_imported(tmp_path, command, problem):
    data = _shipped("seed_dense.yaml")
    path = tmp_path / "toy.npz"
    if problem == "directory":
        path.mkdir()
    elif problem == "bad_npz":
        path.write_bytes(b"not a zip file")
    data["source"]["path"] = str(path)
    config = _write_config(tmp_path / "c.yaml", data)
    where = ["--output", str(tmp_path / "out")] if command == "preprocess" else ["--workdir", str(tmp_path / "w")]
    proc = subprocess.run([sys.executable, "-c", _PROBE, command, "--config", config, *where],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"tfstream {command}: error: " in proc.stderr and str(path) in proc.stderr, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr  # neither TensorFlow nor Beam (nor Keras) was imported


_SEED_EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training", "seed_examples.md")


def test_doctor_on_the_seeds_examples(capsys):
    assert main(["doctor", _SEED_EXAMPLES]) == 1  # a finding at warning level
    out = capsys.readouterr().out
    assert out.startswith(f"{_SEED_EXAMPLES}: 5 findings (2 warnings, 3 infos)\n")
    assert re.search(r"seed_examples\.md:30 +warning +batch_size=1,000 is large for a Dense model", out)
    assert main(["doctor", _SEED_EXAMPLES, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["exit_status"] == 1 and report["counts"] == {"error": 0, "warning": 2, "info": 3}
    assert [(f["line"], f["code"]) for f in report["findings"]][:2] == [(30, "batch-size"), (30, "fit-arrays")]


def test_doctor_exit_statuses(tmp_path, capsys):
    clean = tmp_path / "train.py"
    clean.write_text("import tfstream as tfs\nmodel.fit(tfs.read('d', 'train', batch_size=64))\n", encoding="utf-8")
    assert main(["doctor", str(clean)]) == 0
    assert capsys.readouterr().out.startswith(f"{clean}: 0 findings")
    bad = tmp_path / "bad.py"
    bad.write_text("model.fit(\n", encoding="utf-8")
    assert main(["doctor", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfstream doctor: error: {bad}:1: not valid Python: syntax error:") and "Traceback" not in err
    for argv in (["doctor"], ["doctor", str(clean), "--config", "c.yaml"], ["doctor", "c.yaml"],
                 ["doctor", str(clean), "--dataset", "d"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "tfstream doctor --config c.yaml" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # no runs/digits/dataset here, even after `make demo` in the checkout
        assert main(["doctor", "--config", os.path.join(CONFIGS, "digits_lstm.yaml")]) == 0
    assert "the config is checked alone" in capsys.readouterr().out
    assert main(["doctor", "--config", str(tmp_path / "none.yaml")]) == 2


def test_doctor_imports_no_tensorflow():
    proc = subprocess.run([sys.executable, "-c", _PROBE, "doctor", _SEED_EXAMPLES], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "HEAVY=\n" in proc.stderr, proc.stderr


def test_a_config_without_a_model_checks_and_train_says_to_add_one(tmp_path, capsys):
    """A config only used to preprocess needs no `model:` section (the issue's third
    failure); `train` and `run` on it stop at once, in one line, saying to add one."""
    data = _shipped("seed_dense.yaml")
    del data["model"]
    data["source"]["path"] = str(tmp_path / "toy.npz")
    config = _write_config(tmp_path / "prep.yaml", data)
    assert main(["config", "check", config]) == 0
    assert yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])["model"] is None
    for command in (["train", "--config", config], ["run", "--config", config, "--workdir", str(tmp_path / "run")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == (f"tfstream {command[0]}: error: {config}: model: missing; training needs a `model:` section, "
                       f"e.g. `model: {{type: dense}}` (lstm for sequences); without one the config only "
                       f"preprocesses\n")
    assert not os.path.exists(tmp_path / "run")  # refused before preprocessing


@pytest.mark.slow
def test_given_splits_from_preprocess_to_summary(tmp_path, capsys):
    """The issue's job, end to end: a preprocessing config without a model gives train and
    test by a column, with validation carved out of train; training scores the split named
    test, metrics.json names it, and `summary` shows its count, named."""
    import numpy as np

    rng = np.random.default_rng(5)
    np.savez(tmp_path / "toy.npz", X=rng.random((1200, 10), dtype=np.float32), y=rng.integers(0, 2, 1200),
             fold=np.array(["train", "train", "train", "test"] * 300))
    data = _shipped("seed_dense.yaml")
    model = data.pop("model")
    data["source"]["path"] = str(tmp_path / "toy.npz")
    data["split"] = {"column": "fold", "values": ["train", "test"],
                     "carve": {"split": "train", "into": {"train": 0.9, "validation": 0.1}}}
    prep = _write_config(tmp_path / "prep.yaml", data)
    assert main(["preprocess", "--config", prep, "--output", str(tmp_path / "run" / "dataset")]) == 0
    data.update(model=model, train={"epochs": 1, "validation_split": "validation", "eval_split": "test"})
    job = _write_config(tmp_path / "job.yaml", data)
    assert main(["train", "--config", job, "--dataset", str(tmp_path / "run" / "dataset"),
                 "--model-dir", str(tmp_path / "run" / "model")]) == 0
    metrics = json.load(open(tmp_path / "run" / "model" / "metrics.json"))
    assert (metrics["eval_split"], metrics["validation_split"], metrics["train_split"]) == \
        ("test", "validation", "train")
    assert metrics["examples"]["test"] == 300 and set(metrics["examples"]) == {"train", "validation", "test"}
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "run")]) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[:6] == ["run", "model", "train", "eval", "split", "eval"]
    assert row.split()[:5] == ["run", "dense", f"{metrics['examples']['train']:,}", "test", "300"]


def test_verbose_shows_the_traceback_and_keeps_the_exit_status(capsys):
    from tfstream.cli import _error_exit
    from tfstream.pipelines.write.run import PreprocessError

    def raised(error):
        try:
            raise error
        except Exception as e:  # noqa: BLE001 - with its traceback
            return e

    assert _error_exit("preprocess", True, raised(PreprocessError("the run was refused"))) == 2
    assert _error_exit("preprocess", True, raised(RuntimeError("something else"))) == 1
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 2
    assert "PreprocessError: the run was refused" in err and "RuntimeError: something else" in err
