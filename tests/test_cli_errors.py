"""The common mistakes, through the real `tfstream` command: each one is a short paragraph
on stderr that names the file, key or column and the fix, with a non-zero exit status and
no traceback; ``--debug`` shows the traceback."""

import os
import sys

import numpy as np
import pytest
import yaml

from tfstream.cli import EXIT_INTERRUPTED, main
from tfstream.testing import job_dict

TFSTREAM = os.path.join(os.path.dirname(sys.executable), "tfstream")


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
    """Configs and directories, each with one mistake."""
    d = tmp_path_factory.mktemp("mistakes")
    header = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight," \
             "tailnum,origin,dest,air_time,distance,hour,minute,time_hour"
    row = "2013,1,1,517,515,2.0,830,819,11.0,UA,1545,N14228,EWR,IAH,227.0,1400.0,5,15,2013-01-01 05:00:00"
    (d / "flights.csv").write_text("\n".join([header] + [row] * 40) + "\n", encoding="utf-8")
    bad = row.replace(",2.0,", ",abc,")
    (d / "letters.csv").write_text("\n".join([header] + [bad] * 40) + "\n", encoding="utf-8")
    np.savez(d / "wrong_dim.npz", X=np.ones((20, 7), np.float32), y=np.zeros(20, np.int64))

    def config(name, base="flights_dense.yaml", edit=None, **sections):
        data = job_dict(base, **sections)
        if edit:
            edit(data)
        (d / name).write_text(yaml.safe_dump(data), encoding="utf-8")
        return str(d / name)

    (d / "not_a_dataset").mkdir()
    (d / "not_a_dataset" / "notes.txt").write_text("hello", encoding="utf-8")
    return {
        "dir": str(d),
        "missing_config": str(d / "nope.yaml"),
        "missing_source": config("missing_source.yaml", source={"path": str(d / "missing.csv")}),
        "wrong_column": config("wrong_column.yaml", source={"path": str(d / "flights.csv")},
                               edit=lambda c: c["features"][0].update(name="no_such_column")),
        "bad_value": config("bad_value.yaml", source={"path": str(d / "flights.csv")},
                            edit=lambda c: c["train"].update(epochs="ten")),
        "wrong_dim": config("wrong_dim.yaml", base="seed_dense.yaml", source={"path": str(d / "wrong_dim.npz")}),
        "letters": config("letters.yaml", source={"path": str(d / "letters.csv")}),
        "ok": config("ok.yaml", source={"path": str(d / "flights.csv")}),
        "not_a_dataset": str(d / "not_a_dataset"),
        "no_model": str(d / "no_model"),
    }


def _run(argv):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TFSTREAM_QUIET"}
    proc = subprocess.run([TFSTREAM, *argv], capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stderr


# (argv with {placeholders} from `mistakes`, what the paragraph must say)
CASES = {
    "missing config file": (["preprocess", "--config", "{missing_config}"], "no such config file"),
    "missing source file": (["preprocess", "--config", "{missing_source}", "--output", "{dir}/o"], "no file matches"),
    "wrong column": (["preprocess", "--config", "{wrong_column}", "--output", "{dir}/o"],
                     "missing required column(s) ['no_such_column']"),
    "bad config value": (["config", "check", "{bad_value}"], "train.epochs: expected an integer, got 'ten'"),
    "wrong dim": (["preprocess", "--config", "{wrong_dim}", "--output", "{dir}/o"], "set `shape: [7]`"),
    "not a dataset (verify)": (["verify", "{not_a_dataset}"], "no manifest.json; write the dataset with"),
    "not a dataset (inspect)": (["inspect", "{not_a_dataset}"], "no manifest.json"),
    "model dir missing (summary)": (["summary", "{no_model}"], "no metrics.json"),
    "model dir missing (models)": (["models", "list", "{no_model}"], "no such registry directory"),
    "non-numeric values in a numeric column": pytest.param(
        ["preprocess", "--config", "{letters}", "--output", "{dir}/letters"],
        "column 'dep_delay': expected a number, got 'abc'", marks=pytest.mark.slow),  # runs the Beam pipeline
}


@pytest.mark.parametrize("argv, says", CASES.values(), ids=list(CASES))
def test_a_common_mistake_is_one_short_paragraph(mistakes, argv, says):
    code, err = _run([a.format(**mistakes) for a in argv])
    assert code != 0
    assert "Traceback" not in err
    paragraph = [line for line in err.splitlines() if not line.startswith("tfstream: ")]  # the run's own log lines
    assert 1 <= len(paragraph) <= 3, err
    assert paragraph[0].startswith(f"tfstream {argv[0]}: error: ") and says in err, err


@pytest.mark.parametrize("case", ["wrong column", "not a dataset (verify)"])
def test_debug_shows_the_traceback(mistakes, case):
    argv, says = CASES[case]
    code, err = _run(["--debug", *[a.format(**mistakes) for a in argv]])
    assert code == 2 and "Traceback (most recent call last)" in err and says in err


def test_ctrl_c_is_one_line_with_what_to_do(mistakes, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("tfstream.cli._preprocess", interrupted)
    argv = ["preprocess", "--config", mistakes["ok"], "--output", os.path.join(mistakes["dir"], "o")]
    assert main(argv) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.splitlines() == ["tfstream preprocess: interrupted; a run publishes its dataset only once it is "
                                "complete, so the dataset is as it was; run the same command again"]
    assert main(["--debug", *argv]) == EXIT_INTERRUPTED
    assert "Traceback (most recent call last)" in capsys.readouterr().err
