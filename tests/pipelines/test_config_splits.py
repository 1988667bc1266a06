"""Given splits in the config: `source.splits` (per file), `split.column` (per row),
`split.carve`, and the rules between them, the train section and `output.num_shards`."""

import pytest

from tfstream.pipelines.config import ConfigError, config_from_dict, load_config, replace
from tfstream.pipelines.config_splits import SplitConfig, plan_splits


def _job(source=None, split=None, train=None, model=None, output=None, **more):
    data = {"name": "given", "source": source or {"format": "csv", "splits": {"train": "a/*_TRAIN.csv",
                                                                              "test": "a/*_TEST.csv"}},
            "features": [{"name": "x", "type": "float"}], "label": {"column": "y", "task": "regression"}, **more}
    for key, value in (("split", split), ("train", train), ("model", model), ("output", output)):
        if value is not None:
            data[key] = value
    return config_from_dict(data)


def test_per_file_splits_name_the_splits_and_need_no_model():
    """The issue's three failed attempts: a preprocessing config with given train and test
    files loads as it is (no split.fractions, no eval split, no model)."""
    job = _job()
    assert job.model is None and job.split.fractions is None
    assert job.split_names() == ("train", "test")
    assert job.source.split_patterns() == {"train": ("a/*_TRAIN.csv",), "test": ("a/*_TEST.csv",)}
    plan = job.split_plan()
    assert plan.origin == "source.splits" and plan.given == ("train", "test")
    assert plan.shares() == {"train": 0.5, "test": 0.5} and plan.nominal_fraction("test") is None
    with pytest.raises(ConfigError, match=r"^model: missing; training needs a `model:` section, e\.g\. "
                                          r"`model: \{type: dense\}` \(lstm for sequences\); without one the config "
                                          r"only preprocesses$"):
        job.require_model()


def test_a_hash_split_is_unchanged():
    seed = load_config("configs/seed_dense.yaml")
    assert dict(seed.split.fractions) == {"train": 0.8, "eval": 0.2}  # the default, written out
    assert seed.split_names() == ("train", "eval") and seed.split_plan().origin == "split.fractions"
    assert seed.require_model().type == "dense"
    again = config_from_dict(seed.to_json())  # what a manifest records reloads
    assert again == seed
    flights = load_config("configs/flights_dense.yaml")
    assert flights.split_names() == ("train", "validation", "eval")
    assert flights.split_plan().shares() == {"train": 0.8, "validation": 0.1, "eval": 0.1}


def test_carving_a_validation_split_out_of_a_given_train_split():
    job = _job(split={"carve": {"split": "train", "into": {"train": 0.9, "validation": 0.1}}},
               model={"type": "dense"}, train={"validation_split": "validation", "eval_split": "test"})
    plan = job.split_plan()
    assert plan.names == ("train", "validation", "test")
    assert plan.given_split("validation") == "train" and plan.given_split("test") == "test"
    assert plan.nominal_fraction("validation") == 0.1 and plan.nominal_fraction("test") is None
    assert plan.shares({"train": 0.8, "test": 0.2}) == pytest.approx({"train": 0.72, "validation": 0.08, "test": 0.2})
    router = plan.router({"a/1_TRAIN.csv": "train", "a/2_TEST.csv": "test"})
    assert router.names == plan.names
    assert router.file_split("a/2_TEST.csv") == "test" and router.file_split("a/1_TRAIN.csv!inner.csv") == "train"
    assert router.assign("test", ["2_TEST.csv", 1]) == "test"
    carved = [router.assign("train", ["1_TRAIN.csv", i]) for i in range(2000)]
    assert set(carved) == {"train", "validation"} and 0.07 < carved.count("validation") / 2000 < 0.13


def test_a_split_column_with_values():
    job = _job(source={"format": "csv", "path": "a.csv"},
               split={"column": "fold", "values": {1: "train", 2: "train", 3: "test"}})
    assert job.split_names() == ("train", "test") and job.split_plan().origin == "split.values"
    assert dict(job.split.values) == {"1": "train", "2": "train", "3": "test"}  # YAML's 1: read as text
    assert job.source_columns() == ["x", "y", "fold"]
    router = job.split_plan().router()
    assert [router.value_split(v) for v in ("1", 2, 3.0, "4", None)] == ["train", "train", "test", None, None]
    listed = _job(source={"format": "csv", "path": "a.csv"}, split={"column": "fold", "values": ["train", "test"]})
    assert listed.split.value_map() == {"train": "train", "test": "test"}
    assert listed.split_plan().router().value_split("test") == "test"


@pytest.mark.parametrize("overrides, message", [
    ({"source": {"format": "csv", "path": "a.csv", "splits": {"train": "b.csv"}}},
     r"^source: give `path` \(every file, split by split.fractions\) or `splits` \(the files of each split\), "
     r"not both$"),
    ({"source": {"format": "csv", "splits": {"Train": "b.csv"}}},
     r"^source.splits: split name 'Train' must be lower-case letters, digits and _$"),
    ({"source": {"format": "csv", "splits": {"all": "b.csv"}}}, r"^source.splits: 'all' is a reserved name"),
    ({"source": {"format": "csv", "splits": {"train": []}}},
     r"^source.splits.train: expected a file, a glob or a list of them, got \[\]$"),
    ({"source": {"format": "csv", "splits": {"train": 3}}},
     r"^source.splits.train: expected a string or a list of a string, got 3$"),
    ({"source": {"tfds": "mnist", "splits": {"train": "b.csv"}}},
     r"^source.splits: a tfds source has its own splits; read one with `tfds_split`, or remove `splits`$"),
    ({"split": {"fractions": {"train": 0.9, "eval": 0.1}}},
     r"^split.fractions: the splits are given per file by source.splits; remove split.fractions \(to hash-split "
     r"one given split, write split.carve: \{split: train, into: \{train: 0.9, validation: 0.1\}\}\)$"),
    ({"split": {"column": "fold", "values": ["train"]}},
     r"^split.column: the splits are already given per file by source.splits; give them by one of the two"),
    ({"source": {"format": "csv", "path": "a.csv"}, "split": {"column": "fold"}},
     r"^split.values: missing; with split.column, list the splits the column holds \(values: \[train, test\]\) "
     r"or map its values to splits"),
    ({"source": {"format": "csv", "path": "a.csv"}, "split": {"values": ["train"]}},
     r"^split.values: maps the values of split.column, which is not set"),
    ({"source": {"format": "csv", "path": "a.csv"}, "split": {"column": "fold", "values": {"1": "Train"}}},
     r"^split.values: split name 'Train' must be lower-case letters, digits and _$"),
    ({"source": {"format": "csv", "path": "a.csv"},
      "split": {"column": "fold", "values": ["train"], "fractions": {"train": 1.0}}},
     r"^split.fractions: the splits are given by split.column; remove split.fractions"),
    ({"source": {"format": "csv", "path": "a.csv"}, "split": {"carve": {"split": "train", "into": {"train": 1.0}}}},
     r"^split.carve: carves a given split, but no split is given \(source.splits or split.column\); to hash-split "
     r"every row, write split.fractions: \{'train': 1.0\} instead$"),
    ({"split": {"carve": {"split": "eval", "into": {"train": 0.5, "validation": 0.5}}}},
     r"^split.carve.split: 'eval' is not a given split; the given splits are \['train', 'test'\] \(source.splits\)$"),
    ({"split": {"carve": {"split": "train", "into": {"train": 0.5, "test": 0.5}}}},
     r"^split.carve.into: \['test'\] is also given \(source.splits\); give the carved splits other names$"),
    ({"split": {"carve": {"split": "train", "into": {"train": 0.5, "validation": 0.6}}}},
     r"^split.carve.into: the fractions add up to 1.1, not 1$"),
    ({"split": {"carve": {"split": "train", "ratio": 0.1}}}, r"^split.carve.ratio: unknown key; valid keys: split, "
                                                             r"into$"),
    ({"split": {"carve": {"split": "train"}}}, r"^split.carve.into: missing required key$"),
    # the train section names final splits: eval is not one here (the first failure)
    ({"model": {"type": "dense"}},
     r"^train.eval_split: 'eval' is not one of the splits \['train', 'test'\] \(source.splits\); set "
     r"train.eval_split to one of them$"),
    ({"train": {"eval_split": "tst"}},  # set, so checked even without a model
     r"^train.eval_split: 'tst' is not one of the splits \['train', 'test'\]"),
    ({"split": {"carve": {"split": "train", "into": {"fit": 0.9, "validation": 0.1}}}},
     r"^train.train_split: 'train' is not one of the splits \['fit', 'validation', 'test'\] \(source.splits and "
     r"split.carve\); set train.train_split to one of them$"),
    ({"output": {"num_shards": {"eval": 2}}},
     r"^output.num_shards: \['eval'\] are not splits; the splits are \['test', 'train'\] \(source.splits\)$"),
])
def test_impossible_split_settings_say_what_to_write(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _job(**overrides)


def test_the_eval_split_cannot_be_the_early_stopping_split():
    """The issue: with `eval_split: validation` the early-stopping split was reported as the
    eval score, held out from nothing. Refused, saying what to set instead."""
    with pytest.raises(ConfigError, match=r"^train.eval_split: 'validation' is also train.validation_split, which "
                                          r"picks the best epoch and stops early, so its score would not be held out; "
                                          r"validate on another split \(carve one out of the training split: "
                                          r"split.carve: \{split: train, into: \{train: 0.9, validation: 0.1\}\}\), "
                                          r"or set train.validation_split: null"):
        _job(train={"validation_split": "validation", "eval_split": "validation"},
             split={"carve": {"split": "train", "into": {"train": 0.9, "validation": 0.1}}})
    job = load_config("configs/flights_dense.yaml")
    with pytest.raises(ConfigError, match=r"^train.eval_split: 'validation' is also train.validation_split"):
        replace(job, train=replace(job.train, eval_split="validation"))


def test_the_test_split_is_scored_when_named():
    job = _job(model={"type": "dense"}, train={"eval_split": "test"})
    assert job.train.eval_split == "test" and job.require_model().type == "dense"


def test_plan_splits_without_a_job():
    plan = plan_splits(None, SplitConfig(column="fold", values={"a": "train", "b": "eval", "c": "train"}))
    assert plan.names == ("train", "eval") and plan.values == {"a": "train", "b": "eval", "c": "train"}
    assert plan_splits(None, SplitConfig()).names == ("train", "eval")
