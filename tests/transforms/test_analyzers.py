import numpy as np
import pytest

from tfstream.transforms.analyzers import DatasetStats, Moments, QuantileSketch, majority_baseline
from tfstream.transforms.validation import NOTES
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
    assert out["features"]["c"] == {"kind": "categorical", "count": 3, "missing": 0}  # vocabularies: in Beam
    seq = out["features"]["s"]
    assert seq["length"] == {"count": 3, "min": 2, "max": 3, "mean": pytest.approx(8 / 3), "histogram": {"2": 1, "3": 2},
                             "variance": pytest.approx(np.var([2, 3, 3])), "quantiles": [2] * 4 + [3] * 7}
    assert seq["steps"] == 8
    np.testing.assert_allclose(seq["mean"], [5 / 8, 5 / 8])
    assert out["label"] == {"class_counts": {"no": 1, "yes": 2}}
    assert majority_baseline(out["label"]) == pytest.approx(2 / 3)


def test_empty_split_has_zero_counts():
    schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
    stats = DatasetStats(schema)
    out = stats.extract_output(stats.create_accumulator())
    assert out["num_examples"] == 0
    assert out["features"]["x"] == {"kind": "numeric", "count": 0, "missing": 0, "non_finite": 0}


def test_quantile_sketch_merged_in_any_order_is_within_half_a_percent_in_rank():
    rng = np.random.default_rng(1)
    data = rng.lognormal(size=300_000)  # long-tailed, like delays
    parts = [QuantileSketch(k=512) for _ in range(5)]
    for i, chunk in enumerate(np.array_split(data, 97)):
        parts[i % 5].add(chunk)
    merged = parts[4]
    for p in parts[:4]:
        merged.merge(p)
    qs = np.linspace(0, 1, 21)
    ranks = np.searchsorted(np.sort(data), merged.quantiles(qs)) / data.size
    assert np.abs(ranks - qs).max() < 0.005
    assert merged.count == data.size
    edges, counts = merged.histogram(float(data.min()), float(data.max()))
    assert sum(counts) == data.size and len(edges) == 21
    exact, _ = np.histogram(data, bins=20, range=(data.min(), data.max()))
    assert np.abs(np.array(counts) - exact).max() < 0.01 * data.size


def test_missing_non_finite_and_truncated_values_are_counted_and_left_out_of_the_moments():
    schema = Schema((Feature("x", "numeric", "float32"), Feature("v", "numeric", "int64", (2,)),
                     Feature("s", "sequence", "float32", (1,))), Label("y", "regression"))
    rows = [
        {"x": 1.0, "v": [1, 10], "s": np.array([[1.0], [np.nan]]), "y": 0.0,
         NOTES: {"non_finite": ("s",), "truncated": ("s",)}},
        {"x": None, "v": [None, 20], "s": np.array([[3.0]]), "y": 1.0, NOTES: {"missing": ("x", "v")}},
        {"x": 3.0, "v": [3, 30], "s": np.array([[5.0]]), "y": 2.0},
    ]
    stats = DatasetStats(schema)
    out = stats.extract_output(stats.add_inputs(stats.create_accumulator(), rows))
    x, v, s = (out["features"][k] for k in "xvs")
    assert (x["count"], x["missing"], x["mean"], x["min"], x["max"]) == (3, 1, 2.0, 1.0, 3.0)
    assert x["quantiles"][0] == 1.0 and x["quantiles"][-1] == 3.0
    assert v["missing"] == 1 and v["mean"] == [2.0, 20.0]
    assert (s["non_finite"], s["truncated"], s["steps"]) == (1, 1, 4)
    assert s["mean"] == [3.0]  # the NaN step is left out until it is imputed
    assert out["label"]["mean"] == 1.0 and out["label"]["quantiles"][5] == 1.0


def test_regression_label_has_its_count_and_unseen_components_are_null():
    import json

    schema = Schema((Feature("v", "numeric", "float32", (2,)),), Label("y", "regression"))
    rows = [{"v": [1.0, None], "y": 2.0}, {"v": [3.0, None], "y": 4.0}]
    stats = DatasetStats(schema)
    out = stats.extract_output(stats.add_inputs(stats.create_accumulator(), rows))
    assert out["label"]["count"] == 2 and out["label"]["mean"] == 3.0
    v = out["features"]["v"]
    assert v["mean"] == [2.0, None] and v["min"] == [1.0, None] and v["quantiles"][1] is None
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN or Infinity


def test_merging_leaves_the_other_accumulators_as_they_were():
    schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
    stats = DatasetStats(schema)
    a = stats.add_inputs(stats.create_accumulator(), [{"x": 1.0, "y": 0.0}])
    b = stats.add_inputs(stats.create_accumulator(), [{"x": 5.0, "y": 1.0}])
    pending_before = list(b.pending["x"])
    merged = stats.merge_accumulators([a, b])
    assert b.pending["x"] == pending_before and b.numeric["x"].n.sum() == 0
    assert stats.extract_output(merged)["features"]["x"]["mean"] == 3.0


def test_a_transformed_label_has_the_moments_of_its_transform_in_any_merge_order():
    """What the model learns of a log1p label is standardized with these moments: exact
    (full pass, mergeable), as the raw label's are."""
    schema = Schema((Feature("x", "numeric", "float32"),), Label("price", "regression", transform="log1p"))
    rng = np.random.default_rng(3)
    prices = np.round(np.exp(rng.normal(7, 1, size=10_000)), 2)
    stats = DatasetStats(schema)
    parts = [stats.add_inputs(stats.create_accumulator(), [{"x": 0.0, "price": p} for p in chunk])
             for chunk in np.array_split(prices, 7)]
    out = stats.extract_output(stats.merge_accumulators(parts[::-1]))["label"]
    t = out["transformed"]
    assert t["transform"] == "log1p" and t["count"] == 10_000
    assert t["mean"] == pytest.approx(np.log1p(prices).mean(), rel=1e-12)
    assert t["variance"] == pytest.approx(np.log1p(prices).var(), rel=1e-9)
    assert (t["min"], t["max"]) == (pytest.approx(np.log1p(prices.min())), pytest.approx(np.log1p(prices.max())))
    assert out["mean"] == pytest.approx(prices.mean(), rel=1e-12)  # the raw label's, as before
    plain = DatasetStats(Schema(schema.features, Label("price", "regression")))
    assert "transformed" not in plain.extract_output(plain.add_inputs(plain.create_accumulator(),
                                                                      [{"x": 0.0, "price": 1.0}]))["label"]


def test_histograms_are_exact_for_few_distinct_values_and_bounded_otherwise():
    """Issue 13, point 8: a month bin read 21,120 against an exact 21,099. Few distinct
    values are now counted exactly; otherwise every count lies within its stated bound."""
    import numpy as np

    from tfstream.transforms.analyzers import QuantileSketch

    rng = np.random.default_rng(3)
    months = rng.integers(1, 13, 300_000).astype(np.float64)
    parts = [QuantileSketch(), QuantileSketch()]
    for i, chunk in enumerate(np.array_split(months, 80)):
        parts[i % 2].add(chunk)
    parts[0].merge(parts[1])
    s = parts[0]
    assert s.exact and s.count == months.size
    edges, counts = s.histogram(1.0, 12.0)
    assert counts == np.histogram(months, bins=20, range=(1.0, 12.0))[0].tolist()
    ordered = np.sort(months)
    for q in (0.1, 0.5, 0.9):
        assert s.quantiles([q])[0] == ordered[min(int(np.ceil(q * months.size)) - 1, months.size - 1)]

    values = rng.normal(size=200_000) ** 3
    s = QuantileSketch()
    for chunk in np.array_split(values, 50):
        s.add(chunk)
    assert not s.exact and s.rank_error > 0
    lo, hi = float(values.min()), float(values.max())
    _, counts = s.histogram(lo, hi)
    true = np.histogram(values, bins=20, range=(lo, hi))[0]
    assert np.abs(np.asarray(counts) - true).max() <= 2 * s.rank_error
    ordered = np.sort(values)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        estimate = s.quantiles([q])[0]
        rank = np.searchsorted(ordered, estimate, side="right")
        assert abs(rank - q * values.size) <= s.rank_error + 1, q


def test_the_statistics_say_how_far_off_each_figure_can_be():
    import numpy as np

    from tfstream.transforms.analyzers import DatasetStats
    from tfstream.transforms.schema import Feature, Label, Schema

    schema = Schema((Feature("month", "numeric", "int64"), Feature("x", "numeric", "float32")),
                    Label("y", "regression"))
    stats = DatasetStats(schema)
    acc = stats.create_accumulator()
    rng = np.random.default_rng(0)
    stats.add_inputs(acc, [{"month": int(m), "x": float(x), "y": float(x)}
                           for m, x in zip(rng.integers(1, 13, 20_000), rng.random(20_000))])
    out = stats.extract_output(acc)
    month, x = out["features"]["month"], out["features"]["x"]
    assert month["histogram"]["count_error"] == 0 and month["quantiles_rank_error"] == 0
    assert x["histogram"]["count_error"] > 0 and x["quantiles_rank_error"] > 0
    assert x["histogram"]["count_error"] == 2 * x["quantiles_rank_error"]
