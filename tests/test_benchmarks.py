"""A smoke run of the benchmark suite: every benchmark runs on tiny data, through
`tfstream bench --scale smoke`, and produces its figures, results.json and plots.

Only that they are produced is checked, never their values or any wall time: timed tests
are not benchmarks (DESIGN.md), and a smoke run's numbers mean nothing.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks import BENCHMARKS  # importable: setup.cfg gives pytest the checkout (pythonpath = .)
from benchmarks.common import BenchmarkSkipped, alternate, figure


pytestmark = pytest.mark.slow  # end to end: training, or every benchmark on tiny data

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``tfstream bench --scale smoke``: its exit code and its results.json."""
    from tfstream.cli import main

    work = tmp_path_factory.mktemp("bench")
    out = work / "out"
    rc = main(["bench", "--scale", "smoke", "--workdir", str(work / "work"), "--out", str(out)])
    with open(out / "results.json", encoding="utf-8") as f:
        return rc, json.load(f), out


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_produces_its_figures(smoke, name):
    _, results, _ = smoke
    r = results["benchmarks"][name]
    if r["status"] == "skipped":
        pytest.skip(f"{name}: {r['reason']}")
    assert r["status"] == "ok", r.get("error")
    assert r["benchmark"] == name and r["scale"] == "smoke"
    assert r["figures"], f"{name} produced no figure"
    for f in r["figures"]:
        assert isinstance(f["value"], float) and math.isfinite(f["value"]), f
        assert isinstance(f["target"], float) and math.isfinite(f["target"]), f
        assert f["op"] in (">=", "<=", ">", "<"), f
        assert isinstance(f["met"], bool), f
    assert r["raw"], f"{name} kept no per-repetition numbers"


def test_bench_writes_results_and_plots(smoke):
    rc, results, out = smoke
    statuses = {name: r["status"] for name, r in results["benchmarks"].items()}
    assert list(statuses) == list(BENCHMARKS)
    assert "error" not in statuses.values(), statuses
    assert rc == 0
    expected = {"ratios"} | {plot for plot, bench in (("b4_rss_vs_rows", "B4"), ("b5_padding", "B5"))
                             if statuses[bench] == "ok"}
    assert set(results["plots"]) == expected
    for path in results["plots"].values():
        assert os.path.dirname(path) == str(out)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_a_table(smoke, capsys):
    from benchmarks.report import format_table

    _, results, _ = smoke
    table = format_table(results["benchmarks"]).splitlines()
    assert table[0].split() == ["bench", "figure", "value", "target", "met"]
    figures = sum(len(r.get("figures", [])) or 1 for r in results["benchmarks"].values())
    assert len(table) == 2 + figures


def test_alternate_rotates_the_order():
    calls = []
    out = alternate({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert out == {"a": [1, 1, 1], "b": [2, 2, 2]}


def test_figure_says_whether_the_target_is_met():
    assert figure("x", 1.3, 1.2, ">=")["met"] is True
    assert figure("x", 1.3, 1.1, "<=")["met"] is False
    assert figure("x", float("nan"), 1.0, "<=")["met"] is False
    with pytest.raises(ValueError, match="op: expected one of"):
        figure("x", 1.0, 1.0, "==")


def test_bench_refuses_an_unknown_benchmark(capfd):
    from tfstream.cli import main

    assert main(["bench", "--only", "B1,B99"]) == 2  # `tfstream bench` runs `python -m benchmarks`
    assert f"--only: unknown benchmark(s) B99; choose from {', '.join(BENCHMARKS)}" in capfd.readouterr().err


def test_a_skipped_benchmark_says_why(monkeypatch, tmp_path):
    from benchmarks import suite

    def missing(scale, workdir):
        raise BenchmarkSkipped("tfstream.pipelines.write.arrays.write_arrays is not in this checkout yet")

    monkeypatch.setattr("benchmarks.b7_first_batch.run", missing)
    r = suite.run_one("B7", "smoke", str(tmp_path))
    assert r["status"] == "skipped" and "write_arrays" in r["reason"]


def test_a_timed_write_calls_the_writer_once_per_repetition(monkeypatch, tmp_path):
    """B6 and B10 once timed ``sum(writer(...).num_examples(s) for s in splits)``: the
    writer ran once per split, understating them 3× and 2×."""
    import tfstream.pipelines.write.arrays as arrays
    from benchmarks import b10_write_arrays

    calls = []
    real = arrays.write_arrays
    monkeypatch.setattr(arrays, "write_arrays", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = b10_write_arrays.run("smoke", str(tmp_path))
    assert len(calls) == 1 + len(out["raw"]["rows_per_second"]["write_arrays"]) == 2  # a warm-up, then 1 rep
