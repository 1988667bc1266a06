"""Progress on stderr: drawn on a terminal (a pseudo-terminal here), never when stderr is
piped or with --quiet, never on stdout; and its figures are the run's."""

import json
import os
import pty
import re
import subprocess
import sys

import pytest
import yaml

from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.progress import Progress, advance
from tfstream.testing import ROOT

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run(argv, *, terminal=True, env=None):
    """Run ``argv`` with stderr on a pseudo-terminal (or a pipe); stdout is always a pipe.
    Returns (stdout, stderr without its terminal escapes, exit status)."""
    env, extra = {**os.environ, "COLUMNS": "200"}, env or {}
    env.pop("TFSTREAM_QUIET", None)
    env.update(extra)
    if not terminal:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        return proc.stdout, proc.stderr, proc.returncode
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env,
                            cwd=ROOT)
    os.close(slave)
    err = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        err += data
    os.close(master)
    out = proc.stdout.read().decode()
    return out, _ANSI.sub("", err.decode(errors="replace")), proc.wait(timeout=600)


def _final(err, title):
    """The counters of the last frame drawn: {description: (count, total or None)}."""
    last = err.rsplit(f"{title} rows read" if title != "verify" else f"{title} bytes read", 1)
    frame = (f"{title} rows read" if title != "verify" else f"{title} bytes read") + last[1]
    out = {}
    for m in re.finditer(rf"{title} (.+?)\s+\S*\s*([\d,]+)(?: of ~?([\d,]+))? (?:rows|records|shards)\b", frame):
        out[m.group(1).strip(" \u2501")] = (int(m.group(2).replace(",", "")),
                                            int(m.group(3).replace(",", "")) if m.group(3) else None)
    return out


_COUNT = """
from tfstream.pipelines.progress import Progress, advance
with Progress("demo") as p:
    p.add("read", "rows read", total=1000)
    for _ in range(10):
        advance("read", 100)
print("done")
"""


def test_drawn_on_a_terminal_only():
    out, err, rc = _run([sys.executable, "-c", _COUNT])
    assert rc == 0 and out == "done\n"  # stdout untouched
    assert "demo rows read" in err and "1,000 of 1,000 rows" in err and "rows/s" in err
    out, err, rc = _run([sys.executable, "-c", _COUNT], terminal=False)
    assert (out, err, rc) == ("done\n", "", 0)  # piped: nothing
    out, err, rc = _run([sys.executable, "-c", _COUNT], env={"TFSTREAM_QUIET": "1"})
    assert rc == 0 and "rows read" not in err  # --quiet's variable


def test_counts_are_kept_and_only_the_open_progress_counts():
    advance("read", 5)  # none open: nothing happens
    with Progress("outer") as outer:
        outer.add("read", "rows read", total=10, estimated=True)
        advance("read", 4)
        with Progress("inner") as inner:  # inside another: counts its own, the outer stays current
            inner.advance("x", 2)
            advance("read", 3)
        assert inner.completed("x") == 2 and inner.completed("read") == 0
    advance("read", 100)
    assert outer.completed("read") == 7


def test_verify_draws_records_per_split_and_quiet_draws_nothing(flights_dataset):
    tfstream = os.path.join(os.path.dirname(sys.executable), "tfstream")
    m = load_manifest(flights_dataset)
    out, err, rc = _run([tfstream, "verify", flights_dataset, "--json"])
    assert rc == 0 and json.loads(out)["ok"] is True  # stdout stays one JSON document
    final = _final(err, "verify")
    for split in m.split_names:
        assert final[f"records[{split}]"] == (m.num_examples(split),) * 2
    size = sum(s.bytes for n in m.split_names for s in m.split(n).shards)
    assert re.search(rf"verify bytes read\s+\S*\s*{size / 2**20:,.1f} of {size / 2**20:,.1f} MiB", err)
    out, err, rc = _run([tfstream, "--quiet", "verify", flights_dataset])
    assert rc == 0 and "records[" not in err and err.strip() == ""


@pytest.mark.slow
def test_preprocess_progress_matches_the_manifest(flights_job, tmp_path):
    """The Beam path (DirectRunner, in this process): the last frame's figures are the
    manifest's; the CSV's rows were estimated from its size (``~``) before the run."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(flights_job.to_json()), encoding="utf-8")
    tfstream = os.path.join(os.path.dirname(sys.executable), "tfstream")
    out, err, rc = _run([tfstream, "preprocess", "--config", str(config), "--output", str(tmp_path / "ds")])
    assert rc == 0 and out == "", err
    m = load_manifest(str(tmp_path / "ds"))
    final = _final(err, "preprocess")
    assert final["rows read"] == (m.source.rows_read, m.source.rows_read)
    for split in m.split_names:
        assert final[f"rows written[{split}]"][0] == m.num_examples(split)
    assert final["shards written"] == (sum(len(m.split(s).shards) for s in m.split_names),) * 2
    assert re.search(r"rows read\s+\S*\s*[\d,]+ of ~[\d,]+ rows", err)  # an estimate while it ran


def test_write_arrays_progress(tmp_path):
    code = f"""
import numpy as np
from tfstream.pipelines.config import load_config
from tfstream.pipelines.write.arrays import write_arrays
rng = np.random.default_rng(0)
m = write_arrays(load_config("configs/seed_dense.yaml"), {{"X": rng.random((3000, 10)).astype("float32"),
                 "y": rng.integers(0, 2, 3000)}}, {str(tmp_path / "ds")!r}, chunk_rows=500)
print({{s: m.num_examples(s) for s in m.split_names}})
"""
    out, err, rc = _run([sys.executable, "-c", code])
    assert rc == 0, err
    counts = eval(out)  # noqa: S307 - the dict printed by the child
    final = _final(err, "write_arrays")
    assert final["rows read"] == (3000, 3000)
    assert {k[len("rows written["):-1]: v[0] for k, v in final.items() if k.startswith("rows written[")} == counts


def test_bench_draws_the_benchmarks_run(tmp_path):
    code = f"""
import benchmarks.suite as suite
from tfstream.pipelines import progress
seen = []
def run_one(name, scale, workdir):  # instead of a benchmark: what a benchmark's own steps would see
    seen.append(progress.shown())
    return {{"benchmark": name, "status": "skipped", "reason": "test", "seconds": 0.0}}
suite.run_one = run_one
suite.run_suite("smoke", {str(tmp_path / "w")!r}, {str(tmp_path / "o")!r}, only="B1,B5")
print(seen)
"""
    out, err, rc = _run([sys.executable, "-c", code])
    assert rc == 0, err
    assert out.strip() == "[False, False]"  # inside a benchmark, nothing more is drawn
    assert re.search(r"bench benchmarks run\s+\S*\s*2 of 2 benchmarks", err)


@pytest.mark.parametrize("beam_args, here", [
    ([], True),
    (["--direct_running_mode=multi_threading", "--direct_num_workers=2"], True),
    (["--direct_running_mode=multi_processing"], False),  # workers in other processes: not counted here
    (["--runner=PortableRunner"], False),
])
def test_rows_are_counted_only_where_the_steps_run(beam_args, here):
    from tfstream.pipelines.write.beam_options import pipeline_options
    from tfstream.pipelines.write.beam_options import runner_name, runs_in_this_process

    options = pipeline_options(beam_args)
    assert runs_in_this_process(options) is here
    assert runner_name(options) in ("DirectRunner (in_memory)", "DirectRunner (multi_threading)",
                                     "DirectRunner (multi_processing)", "PortableRunner")
