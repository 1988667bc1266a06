import os

import pytest

from tfstream.pipelines.config import ConfigError, config_from_dict, load_config
from tfstream.pipelines.write.sources import resolve_source_paths

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


@pytest.mark.parametrize("name", ["flights_dense.yaml", "flights_distance.yaml", "digits_lstm.yaml"])
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
    with pytest.raises(ConfigError, match=r"features\[x\]: a sequence feature in a csv source needs `source.sequence: \{id: <column>, "
                                            r"order: <column>\}`"):
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



def test_label_transform_and_standardize(make_job):
    job = make_job("flights_distance.yaml")
    assert (job.label.transform, job.label.standardize, job.label.standardized) == ("log1p", True, True)
    assert job.schema().label.transform == "log1p" and job.schema().label.to_json()["transform"] == "log1p"
    plain = make_job("flights_distance.yaml", label={"transform": "none", "standardize": None})
    assert plain.label.standardized and "transform" not in plain.schema().label.to_json()  # as before: same manifest
    assert not make_job("flights_distance.yaml", label={"standardize": False}).label.standardized
    assert not make_job("flights_dense.yaml").label.standardized
    for label, message in [
        ({"transform": "log1p"}, r"label.transform: only a regression label is transformed; remove `transform: log1p`"),
        ({"standardize": True}, r"label.standardize: only a regression label is standardized; remove it"),
        ({"standardize": False}, r"label.standardize: only a regression label is standardized; remove it"),
    ]:
        with pytest.raises(ConfigError, match=f"^{message}$"):
            make_job("flights_dense.yaml", label=label)
    with pytest.raises(ConfigError, match=r"^label.transform: expected none or log1p; got 'log'$"):
        make_job("flights_distance.yaml", label={"transform": "log"})
    with pytest.raises(ConfigError, match=r"^label.standardize: expected true or false, got 'yes'$"):
        make_job("flights_distance.yaml", label={"standardize": "yes"})


def test_label_classes_may_be_integers(make_job):
    label = {"column": "hour", "task": "multiclass", "threshold": None, "classes": [5, 6, "7"]}
    job = make_job("flights_dense.yaml", label=label)
    assert job.label.classes == ("5", "6", "7") and job.schema().label.classes == ("5", "6", "7")
    assert job.label.to_rule().raw_classes == ("5", "6", "7")
    with pytest.raises(ConfigError, match=r"^label.classes: \['5'\] given twice \(integers are taken as their text\)$"):
        make_job("flights_dense.yaml", label={**label, "classes": [5, "5", 6]})
    with pytest.raises(ConfigError, match=r"^label.classes\[0\]: expected a string or an integer, got 1.5$"):
        make_job("flights_dense.yaml", label={**label, "classes": [1.5, 2]})
    with pytest.raises(ConfigError, match=r"^label.classes\[0\]: expected a string or an integer, got True$"):
        make_job("flights_dense.yaml", label={**label, "classes": [True, False]})


def test_min_improvement(make_job):
    assert make_job("flights_dense.yaml").train.min_improvement == 0.01
    assert make_job("flights_dense.yaml", train={"min_improvement": 0}).train.min_improvement == 0.0
    for value in (1.0, -0.1):
        with pytest.raises(ConfigError, match=rf"^train.min_improvement: expected a fraction 0 <= x < 1, got {value}$"):
            make_job("flights_dense.yaml", train={"min_improvement": value})

@pytest.mark.parametrize("overrides, message", [
    ({"reader": {"batch_size": "3"}}, r"reader.batch_size: expected an integer, got '3'"),
    ({"reader": {"batch_size": True}}, r"reader.batch_size: expected an integer, got True"),
    ({"reader": {"batch_size": 32.0}}, r"reader.batch_size: expected an integer, got 32.0"),
    ({"model": {"dropout": True}}, r"model.dropout: expected a number, got True"),
    ({"model": {"dropout": "0.1"}}, r"model.dropout: expected a number, got '0.1'"),
    ({"model": {"bidirectional": 1}}, r"model.bidirectional: expected true or false, got 1"),
    ({"model": {"hidden_units": "abc"}}, r"model.hidden_units: expected a list of an integer, got 'abc'"),
    ({"model": {"hidden_units": [8, "x"]}}, r"model.hidden_units\[1\]: expected an integer, got 'x'"),
    ({"split": {"key": {"year"}}}, r"split.key: expected a list of a string, got \{'year'\}"),
    ({"split": {"fractions": {"train": "a"}}}, r"split.fractions.train: expected a number, got 'a'"),
    ({"split": {"fractions": "half"}}, r"split.fractions: expected a mapping of a number, got 'half'"),
    ({"reader": 5}, r"reader: expected a mapping of keys to values, got 5"),
    ({"features": [5]}, r"features\[0\]: expected a mapping of keys to values, got 5"),
    ({"features": [{"name": "x", "type": "float", "shape": [True]}]},
     r"features\[0\].shape\[0\]: expected an integer, got True"),
    ({"features": [{"name": "x", "type": "float", "on_missing": "default", "default": True}]},
     r"features\[0\].default: expected an integer or a number or a string, got True"),
    ({"features": [{"name": "x", "type": "floaty"}]},
     r"^features\[x\].type: expected one of float, int, string, sequence; got 'floaty'"),
    ({"features": [{"name": "x", "type": 5}]}, r"features\[0\].type: expected a string, got 5"),
    ({"features": [{"type": "float"}]}, r"features\[0\].name: missing required key"),
    ({"source": {"format": "json"}}, r"source.format: expected one of csv, parquet, npz; got 'json'"),
    ({"label": {"on_missing": "skip"}}, r"label.on_missing: expected error or drop; got 'skip'"),
    ({"label": {"task": "ordinal"}}, r"label.task: expected one of binary, multiclass, regression; got 'ordinal'"),
    ({"output": {"compression": "zip"}}, r"output.compression: expected none or gzip; got 'zip'"),
    ({"model": {"type": "cnn"}}, r"model.type: expected dense or lstm; got 'cnn'"),
    ({"model": {"type": 5}}, r"model.type: expected a string, got 5"),
    ({"reader": {"zzzzzz": 1}}, r"reader.zzzzzz: unknown key; valid keys: batch_size, shuffle_buffer, cycle_length, "
                                r"cache, prefetch, seed, max_tokens_per_batch, num_buckets, memory_budget_mb, service"),
    ({"split": {"fractions": {1: 1.0}}}, r"split.fractions: split name '1' must be lower-case letters, digits and _"),
    # one error, the first in reading order: a section's unknown keys, then its keys in order, then its rules
    ({"reader": {"batch_size": 0, "seed": "x"}}, r"reader.seed: expected an integer, got 'x'"),
    ({"reader": {"batch_size": "x", "batch_sise": 1}}, r"reader.batch_sise: unknown key; did you mean 'batch_size'\?"),
    ({"modle": {}, "reader": {"batch_size": "x"}}, r"modle: unknown key; did you mean 'model'\?"),
    ({"reader": {"batch_size": 0}, "train": {"epochs": 0}}, r"reader.batch_size: expected 1..1000000, got 0"),
])
def test_strict_types_and_one_line_messages(make_job, overrides, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        make_job("flights_dense.yaml", **overrides)


def test_the_config_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"^the config: expected a mapping of keys to values, got \[1\]$"):
        config_from_dict([1])
    with pytest.raises(ConfigError, match=r"^the config: expected a mapping of keys to values, got None$"):
        config_from_dict(None)


def test_lists_become_tuples_and_ints_floats(make_job):
    job = make_job("flights_dense.yaml", validation={"max_bad_fraction": 1}, model={"dropout": 0},
                   label={"threshold": 15})
    assert job.validation.max_bad_fraction == 1.0 and isinstance(job.validation.max_bad_fraction, float)
    assert isinstance(make_job("digits_lstm.yaml", split={"fractions": {"train": 1}}, output={"num_shards": {}},
                               train={"validation_split": None, "eval_split": "train"}).split.fractions["train"], float)
    assert isinstance(job.model.dropout, float) and isinstance(job.label.threshold, float)
    assert isinstance(job.features, tuple) and isinstance(job.split.key, tuple)
    assert job.model.hidden_units == (64, 32) and isinstance(job.source.na_values, tuple)
    f = make_job("flights_dense.yaml", features=[{"name": "v", "type": "float", "columns": ["a", "b"],
                                                  "shape": [2]}]).features[0]
    assert f.columns == ("a", "b") and f.shape == (2,)


def test_configs_pickle_and_compare(make_job):
    import pickle

    job = make_job("digits_lstm.yaml")
    again = pickle.loads(pickle.dumps(job))
    assert again == job and again.split.fractions == job.split.fractions
    assert dict(job.split.fractions) == {"train": 0.8, "validation": 0.1, "eval": 0.1}
    assert config_from_dict(job.to_json()) == job  # the manifest's copy loads back


def test_to_json_is_plain_json(make_job):
    import json

    data = make_job("flights_dense.yaml").to_json()
    assert list(data) == ["name", "source", "features", "label", "model", "split", "output", "reader", "train",
                          "validation", "retrain"]
    assert json.loads(json.dumps(data)) == data
    assert data["model"]["hidden_units"] == [64, 32] and data["validation"]["drift"]["on_drift"] == "warn"


def test_replace_checks_again(make_job):
    from tfstream.pipelines.config import replace

    job = make_job("flights_dense.yaml")
    shorter = replace(job, train=replace(job.train, epochs=4))
    assert shorter.train.epochs == 4 and shorter.reader == job.reader
    assert replace(shorter, train=replace(shorter.train, epochs=7)).train.epochs == 7 and shorter.train.epochs == 4
    assert replace(job, reader={"batch_size": 32}).reader.batch_size == 32
    with pytest.raises(ConfigError, match=r"^train.epochs: expected 1..100000, got 0$"):
        replace(job.train, epochs=0)
    with pytest.raises(ConfigError, match=r"^reader.batch_sise: unknown key; did you mean 'batch_size'\?$"):
        replace(job.reader, batch_sise=32)
    with pytest.raises(ConfigError, match=r"^reader.batch_size: expected an integer, got '32'$"):
        replace(job.reader, batch_size="32")
    with pytest.raises(ConfigError, match=r"^train: split 'test' is not one of split.fractions"):
        replace(job, train=replace(job.train, eval_split="test"))


def test_load_config_takes_a_path_or_a_mapping(tmp_path):
    import yaml

    path = os.path.join(CONFIGS, "flights_dense.yaml")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert load_config(data) == load_config(path)
    data["reader"] = {"batch_size": "big"}
    with pytest.raises(ConfigError, match=r"^reader.batch_size: expected an integer, got 'big'$"):
        load_config(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^.*bad.yaml: reader.batch_size: expected an integer, got 'big'$"):
        load_config(bad)


def test_huge_values_make_short_messages(make_job):
    with pytest.raises(ConfigError) as e:
        make_job("flights_dense.yaml", reader={"batch_size": "x" * 10_000})
    assert len(str(e.value)) < 300 and str(e.value).endswith("...")
    with pytest.raises(ConfigError) as e:
        config_from_dict({**make_job("flights_dense.yaml").to_json(), "name": "bad name " * 1000})
    assert len(str(e.value)) < 300 and str(e.value).startswith("name: use letters")


def test_reader_section_is_read_options(make_job):
    from tfstream.pipelines import config

    assert isinstance(make_job("flights_dense.yaml").reader, config.ReadOptions)
    assert not hasattr(config, "ReaderConfig")
    assert config.ReadOptions().max_tokens_per_batch is None and config.ReadOptions().batch_size == 256


def test_json_schema_describes_every_key():
    from tfstream.pipelines.config import json_schema

    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["title"]
    assert schema["required"] == ["name", "source", "features", "label"]  # no model: a config that only preprocesses
    for model in [schema, *schema["$defs"].values()]:
        assert model["additionalProperties"] is False
        for key, prop in model["properties"].items():
            assert prop.get("description"), f"{model.get('title')}.{key} has no description"
    assert schema["$defs"]["FeatureConfig"]["properties"]["on_nan"]["enum"] == ["error", "drop", "impute"]
    assert schema["$defs"]["ReadOptions"]["properties"]["batch_size"] == {
        "default": 256, "description": "Records per batch (1..1000000); with bucketing, the most per batch; under "
                                       "train.strategy mirrored or multi_worker, the global batch, split across the "
                                       "devices or processes.",
        "title": "Batch Size", "type": "integer"}


def test_config_mappings_are_frozen_too_and_still_pickle(make_job):
    import pickle

    job = make_job("flights_dense.yaml")
    with pytest.raises(TypeError, match=r"a config is frozen; make a changed copy with .*replace"):
        job.split.fractions["train"] = 0.99
    with pytest.raises(TypeError, match="a config is frozen"):
        job.output.num_shards["bogus"] = 0
    again = pickle.loads(pickle.dumps(job))
    assert again == job and dict(again.split.fractions) == {"train": 0.8, "validation": 0.1, "eval": 0.1}
    assert job.to_json()["split"]["fractions"] == {"train": 0.8, "validation": 0.1, "eval": 0.1}


def test_read_options_built_directly_give_config_errors():
    import numpy as np

    from tfstream.pipelines.config import ReadOptions

    with pytest.raises(ConfigError, match=r"^reader.batch_size: expected 1..1000000, got 0$"):
        ReadOptions(batch_size=0)
    with pytest.raises(ConfigError, match=r"^reader.batch_sise: unknown key; did you mean 'batch_size'\?$"):
        ReadOptions(batch_sise=3)
    with pytest.raises(ConfigError, match=r"^reader.batch_size: expected an integer, got '32'$"):
        ReadOptions(batch_size="32")
    # Python callers' numbers: NumPy integers are integers; None and "" have always meant no cache
    options = ReadOptions(batch_size=np.int64(32), seed=np.int32(1), cache=None)
    assert (options.batch_size, options.seed, options.cache) == (32, 1, "none") and type(options.batch_size) is int
    assert ReadOptions(cache="").cache == "none"


def test_read_option_overrides():
    from tfstream.pipelines.config import ReadOptions

    bucketed = ReadOptions(max_tokens_per_batch=512, num_buckets=4, cache="memory")
    assert bucketed.with_overrides(max_tokens_per_batch=None).num_buckets is None  # bucketing off: all of it
    assert bucketed.for_evaluation() == ReadOptions()
    assert ReadOptions.resolve({"batch_size": 8}, seed=3) == ReadOptions(batch_size=8, seed=3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'shufle_buffer': not a ReadOptions field; "
                                        r"did you mean 'shuffle_buffer'\?"):
        ReadOptions().with_overrides(shufle_buffer=5)
    with pytest.raises(TypeError, match=r"options: expected a ReadOptions .* got int"):
        ReadOptions.resolve(32)
    with pytest.raises(ConfigError, match=r"^reader.num_buckets: buckets are made only with max_tokens_per_batch"):
        ReadOptions().with_overrides(num_buckets=4)
