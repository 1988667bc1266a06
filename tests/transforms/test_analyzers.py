import numpy as np
import pytest

from tfstream.transforms.analyzers import DatasetStats, Moments, majority_baseline
from tfstream.transforms.schema import Feature, Label, Schema


def test_moments_match_numpy_in_any_merge_order():
    rng = np.random.default_rng(0)
    data = rng.normal(1000.0, 3.0, size=(1000, 2))  # a large mean: naive sums lose precision
    parts = [Moments(2) for _ in range(4)]
    for i, row in enumerate(data):
        parts[i % 4].add(row)
    merged = parts[3]
    for p in parts[:3]:
        merged.merge(p)
    out = merged.to_json(scalar=False)
    np.testing.assert_allclose(out["mean"], data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["variance"], data.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(out["min"], data.min(axis=0))
    assert out["count"] == 1000


def test_dataset_stats():
    schema = Schema(
        (Feature("x", "numeric", "float32"), Feature("c", "categorical", "string"),
         Feature("s", "sequence", "float32", (2,))),
        Label("y", "binary", ("no", "yes")),
    )
    rows = [
        {"x": 1.0, "c": "b", "s": np.ones((2, 2)), "y": 0},
        {"x": 2.0, "c": "a", "s": np.zeros((3, 2)), "y": 1},
        {"x": 6.0, "c": "b", "s": np.ones((3, 2)), "y": 1},
    ]
    stats = DatasetStats(schema)
    a = stats.add_inputs(stats.create_accumulator(), rows[:1])
    b = stats.add_inputs(stats.create_accumulator(), rows[1:])
    out = stats.extract_output(stats.merge_accumulators([a, b]))
    assert out["num_examples"] == 3
    assert out["features"]["x"]["mean"] == pytest.approx(3.0)
    assert out["features"]["x"]["variance"] == pytest.approx(np.var([1.0, 2.0, 6.0]))
    assert out["features"]["c"]["vocabulary"] == [["b", 2], ["a", 1]]
    seq = out["features"]["s"]
    assert seq["length"] == {"count": 3, "min": 2, "max": 3, "mean": pytest.approx(8 / 3), "histogram": {"2": 1, "3": 2}}
    assert seq["steps"] == 8
    np.testing.assert_allclose(seq["mean"], [5 / 8, 5 / 8])
    assert out["label"] == {"class_counts": {"no": 1, "yes": 2}}
    assert majority_baseline(out["label"]) == pytest.approx(2 / 3)


def test_empty_split_has_zero_counts():
    schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
    stats = DatasetStats(schema)
    out = stats.extract_output(stats.create_accumulator())
    assert out["num_examples"] == 0 and out["features"]["x"] == {"kind": "numeric", "count": 0}
