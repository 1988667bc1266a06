"""Hostile configs: no YAML file and no setting crashes the process or exhausts its memory.
Each is refused on load with one short `ConfigError` that says what to do (issue 10).

A probe found: a 2 KB alias bomb ("billion laughs") ran 91 s into 5.5 GB and a
MemoryError, a smaller one made a 34 MB error message; a key given twice was silently
dropped; 20,000 nested lists raised RecursionError; ``shuffle_buffer: 1000000000000``
crashed TensorFlow (SIGSEGV), ``cycle_length: 100000`` aborted in pthread_create, and
``cycle_length: 1000000000`` started training into 16.5 GB.
"""

import re
import time
import tracemalloc

import pytest
import yaml

from tfstream.pipelines.config import ConfigError, config_from_dict, load_config
from tfstream.pipelines.config_yaml import MAX_VALUES
from tfstream.testing import job_dict

SHORT = 400  # characters: a message is one line, whatever it echoes


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": each anchor lists the previous one ``width`` times,
    so the last stands for ``width ** levels`` strings (9 ** 9: 387 million)."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [{', '.join(['*' + names[i - 1]] * width)}]")
    return "\n".join(lines) + "\n"


def _flights_yaml(tmp_path, text: str, name: str = "job.yaml"):
    """The flights config as YAML, followed by ``text``."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(job_dict("flights_dense.yaml"), sort_keys=False) + text, encoding="utf-8")
    return path


def _load_error(path_or_data) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path_or_data)
    message = str(e.value)
    assert len(message) < SHORT and "\n" not in message.split(": not valid YAML")[0], message
    return message


# --------------------------------------------------------------------------- YAML


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(), encoding="utf-8")
    assert path.stat().st_size < 2048
    load_config(_flights_yaml(tmp_path, ""))  # everything imported and warm: what follows is the bomb alone
    tracemalloc.start()
    try:
        start = time.perf_counter()
        message = _load_error(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.startswith(f"{path}: the YAML unfolds to more than {MAX_VALUES:,} values through its aliases")
    assert "write the values out" in message
    # 387 million strings unfolded would take gigabytes: refused from the node graph alone
    assert peak < 10 << 20, f"{peak / 2**20:.1f} MiB allocated"
    assert elapsed < 1, elapsed  # the bar (it used to take 91 s); it takes milliseconds


def test_a_recursive_alias_is_refused(tmp_path):
    assert "unfolds to more than" in _load_error(_flights_yaml(tmp_path, "loop: &loop [*loop]\n"))


def test_a_small_bomb_makes_a_short_message(tmp_path):
    """Under the cap (74,733 values), it reaches the config's checks: the value echoed is
    cut (it used to be written out whole: 34 MB for a bomb of this kind)."""
    anchors = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    anchors += [f"&{name} [" + ", ".join([f"*{prev}"] * 9) + "]" for prev, name in zip("abcd", "bcde")]
    data = job_dict("flights_dense.yaml")
    del data["reader"]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data) + "reader:\n  batch_size: [" + ", ".join(anchors) + "]\n", encoding="utf-8")
    message = _load_error(path)
    assert message.startswith(f"{path}: reader.batch_size: expected an integer, got [['lol', ") and \
        message.endswith("..."), message


def test_an_alias_bomb_in_a_value_makes_a_short_message():
    """A shared list from Python code (no YAML): the message is cut before it is written out."""
    row = ["lol"] * 9
    for _ in range(3):
        row = [row] * 9
    message = _load_error(job_dict("flights_dense.yaml", reader={"batch_size": row}))
    assert message.startswith("reader.batch_size: expected an integer, got [[[") and message.endswith("...")


def test_a_python_bomb_is_refused_before_validation():
    row = ["lol"] * 9
    for _ in range(8):
        row = [row] * 9
    message = _load_error(job_dict("flights_dense.yaml", reader={"batch_size": row}))
    assert message.startswith(f"the config: holds more than {MAX_VALUES:,} values")
    loop = job_dict("flights_dense.yaml")
    loop["features"].append(loop["features"])
    assert "refers to itself" in _load_error(loop)


def test_merge_keys_and_anchors_still_load(tmp_path):
    text = ("x-defaults: &int {type: int, on_missing: drop}\n"
            "features:\n  - {<<: *int, name: month}\n  - {<<: *int, name: day, on_missing: error}\n")
    data = yaml.safe_load(_flights_yaml(tmp_path, "").read_text())
    data.pop("features")
    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump(data) + text.replace("x-defaults", "_defaults"), encoding="utf-8")
    # the merge's own key `on_missing` overridden in the mapping is YAML, not a duplicate;
    # the unknown top-level key is the config's only complaint
    assert _load_error(path) == f"{path}: _defaults: unknown key; valid keys: " + ", ".join(
        ["name", "source", "features", "label", "model", "split", "output", "reader", "train", "validation",
         "retrain"])


@pytest.mark.parametrize("text, message", [
    ("reader:\n  batch_size: 32\n  seed: 1\n  batch_size: 64\n",
     r"line \d+: the key 'batch_size' is given twice in one mapping \(first on line \d+\); YAML would keep only the "
     r"last: remove one$"),
    ("reader: {batch_size: 32}\n", r"line \d+: the key 'reader' is given twice in one mapping"),
    ("split: {fractions: {train: 0.5, train: 0.5}}\n", r"line \d+: the key 'train' is given twice"),
])
def test_a_key_given_twice_is_refused(tmp_path, text, message):
    path = _flights_yaml(tmp_path, text)
    lines = path.read_text().splitlines()
    got = _load_error(path)
    assert got.startswith(f"{path}: ")
    assert re.search(message, got), got
    line = int(re.search(r"line (\d+)", got).group(1))
    key = re.search(r"the key '(\w+)'", got).group(1)
    assert lines[line - 1].strip().startswith(key) or f"{key}:" in lines[line - 1]


def test_twenty_thousand_nested_lists_are_refused(tmp_path):
    for text in ("features: " + "[" * 20_000 + "]" * 20_000 + "\n",
                 "deep:\n" + "".join(" " * i + "-\n" for i in range(1, 2_000)),  # (block style: 2 MB)
                 "deep: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n"):
        path = tmp_path / "deep.yaml"
        path.write_text(text, encoding="utf-8")
        message = _load_error(path)
        assert "nested more than 100 levels deep; a job config is a few levels deep" in message, message


def test_deep_python_data_is_refused():
    deep = 1
    for _ in range(20_000):
        deep = [deep]
    assert "nested more than 100 levels deep" in _load_error(job_dict("flights_dense.yaml", features=deep))


@pytest.mark.parametrize("text, message", [
    ("x: !!python/object/apply:os.system [echo hacked]\n", "could not determine a constructor"),
    ("x: !!python/name:os.system\n", "could not determine a constructor"),
    ("x: {batch_size: " + "1" * 5000 + "}\n", "an integer of 5,000 characters, more than any setting takes"),
    ("when: 2001-13-45\n", "cannot read this timestamp value: month must be in 1..12"),
])
def test_unsafe_or_unreadable_values_are_yaml_errors(tmp_path, text, message):
    got = _load_error(_flights_yaml(tmp_path, text))
    assert ": not valid YAML: " in got and message in got, got


def test_files_that_are_no_config(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (5 << 20) + "\n", encoding="utf-8")
    assert _load_error(big) == f"{big}: over 4 MiB, not a job config (a config is a few KB); check the path"
    binary = tmp_path / "model.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe" * 10)
    assert _load_error(binary).startswith(f"{binary}: not a YAML config: not UTF-8 text")
    assert _load_error(tmp_path).startswith(f"{tmp_path}: cannot read the config: ")


# --------------------------------------------------------------------------- values echoed


@pytest.mark.parametrize("overrides", [
    {"name": "bad name " * 10_000},
    {"reader": {"cache": 5, "batch_size": "x" * 100_000}},
    {"reader": {"y" * 100_000: 1}},
    {"split": {"fractions": {"t" * 100_000: 1.0}}},
    {"output": {"num_shards": {"train": 10**5000}}},
    {"features": [{"name": "n" * 100_000, "type": "float", "on_nan": "x" * 100_000}]},
    {"features": [{"name": "x", "type": "string", "on_missing": "default", "default": "d" * 100_000,
                   "vocab_size": 0}]},
])
def test_every_echoed_value_is_cut(overrides):
    _load_error(job_dict("flights_dense.yaml", **overrides))  # (shorter than SHORT)


# --------------------------------------------------------------------------- numeric bounds


@pytest.mark.parametrize("overrides, message", [
    ({"reader": {"shuffle_buffer": 1_000_000_000_000}},
     r"reader.shuffle_buffer: expected 0..100000000, got 1000000000000; every record held costs at least 128 bytes"),
    ({"reader": {"cycle_length": 100_000}},
     r"reader.cycle_length: expected 1..1024, got 100000; each shard read in parallel takes a thread"),
    ({"reader": {"cycle_length": 1_000_000_000}}, r"reader.cycle_length: expected 1..1024, got 1000000000; "),
    ({"reader": {"batch_size": 10**7}}, r"reader.batch_size: expected 1..1000000, got 10000000; "),
    ({"reader": {"prefetch": 10**9}}, r"reader.prefetch: expected -1..1024, got 1000000000; "),
    ({"reader": {"seed": 2**64}}, r"reader.seed: expected -9223372036854775808..9223372036854775807"),
    ({"reader": {"memory_budget_mb": 2**40}}, r"reader.memory_budget_mb: expected 16..16777216, got "),
    ({"reader": {"max_tokens_per_batch": 10**12}}, r"reader.max_tokens_per_batch: expected 1..100000000 "),
    ({"reader": {"max_tokens_per_batch": 512, "num_buckets": 10**6}}, r"reader.num_buckets: expected 1..1000, "),
    ({"train": {"epochs": 10**9}}, r"train.epochs: expected 1..100000, got 1000000000; "),
    ({"train": {"early_stopping_patience": 10**9}}, r"train.early_stopping_patience: expected 0..100000, "),
    ({"train": {"seed": -1}}, r"train.seed: expected 0..4294967295, got -1$"),
    ({"train": {"seed": 2**40}}, r"train.seed: expected 0..4294967295, got 1099511627776; Keras seeds NumPy"),
    ({"train": {"learning_rate": float("nan")}}, r"train.learning_rate: expected a finite number, got nan$"),
    ({"model": {"hidden_units": [64, 10**9]}}, r"model.hidden_units\[1\]: expected 1..65536, got 1000000000; "),
    ({"model": {"hidden_units": [8] * 101}}, r"model.hidden_units: expected at most 100 layers, got 101$"),
    ({"model": {"embedding_dim": 10**6}}, r"model.embedding_dim: expected 1..16384, got 1000000; "),
    ({"label": {"threshold": float("inf")}}, r"label.threshold: expected a finite number, got inf$"),
    ({"label": {"task": "multiclass", "threshold": None, "num_classes": 10**9}},
     r"label.num_classes: expected 2..100000, got 1000000000; "),
    ({"output": {"num_shards": {"train": 10**6}}}, r"output.num_shards.train: expected 1..10000, got 1000000; "),
    ({"validation": {"drift": {"max_mean_shift": float("inf")}}},
     r"validation.drift.max_mean_shift: expected a finite number, got inf$"),
    ({"features": [{"name": "c", "type": "string", "vocab_size": 10**9}]},
     r"features\[c\].vocab_size: expected 1..100000, got 1000000000; vocabularies keep at most 100000 tokens"),
    ({"features": [{"name": "v", "type": "float", "shape": [10**9]}]},
     r"features\[v\].shape\[0\]: expected 1..10000000, got 1000000000; "),
    ({"features": [{"name": "n", "type": "int", "on_missing": "default", "default": 2**63}]},
     r"features\[n\].default: expected -9223372036854775808..9223372036854775807, got 9223372036854775808; "),
    ({"features": [{"name": "x", "type": "float", "on_missing": "default", "default": 1e300}]},
     r"features\[x\].default: a float feature needs a finite float32 number, got 1e\+300$"),
    ({"features": [{"name": "n", "type": "int", "on_missing": "default", "default": float("inf")}]},
     r"features\[n\].default: an int feature needs an integer, got inf$"),
])
def test_every_number_has_an_upper_bound(overrides, message):
    got = _load_error(job_dict("flights_dense.yaml", **overrides))
    assert re.match(message, got), got


@pytest.mark.parametrize("feature, message", [
    ({"dim": 10**6}, r"features\[s\].dim: expected 1..100000, got 1000000; "),
    ({"max_length": 10**9}, r"features\[s\].max_length: expected 1..10000000, got 1000000000; "),
    ({"dim": 100_000, "max_length": 10**6},
     r"features\[s\].max_length: 1000000 steps of 100000 values are more than a record holds \(536870912 float32 "),
])
def test_sequence_bounds(feature, message):
    got = _load_error(job_dict("digits_lstm.yaml", features=[{"name": "s", "type": "sequence", "dim": 13,
                                                             "column": "X", **feature}]))
    assert re.match(message, got), got


def test_the_bounds_leave_real_configs_alone():
    for name in ("flights_dense.yaml", "digits_lstm.yaml", "seed_dense.yaml", "seed_lstm.yaml"):
        load_config(job_dict(name))
    edge = job_dict("flights_dense.yaml", reader={"shuffle_buffer": 100_000_000, "cycle_length": 1024,
                                                  "prefetch": 1024, "seed": -1, "memory_budget_mb": 1 << 24},
                    train={"early_stopping_patience": 100_000, "seed": 2**32 - 1})
    assert config_from_dict(edge).reader.cycle_length == 1024


# --------------------------------------------------------------------------- held to the split


def test_settings_larger_than_the_split_are_held_to_it_in_the_same_order(flights_dataset):
    """What `read` passes to tf.data for a setting larger than the split gives the order
    that setting gives, for the same seed, epoch after epoch; and the largest settings
    the config allows read a small split at once."""
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.memory import parallel_shards, shuffle_buffer_held
    from tfstream.pipelines.read.reader import read
    from tfstream.pipelines.read.stages import BLOCK_SIZE, interleave_blocks, list_shards, shuffle_blocks

    m = load_manifest(flights_dataset)
    n, shards = m.num_examples("train"), len(m.split("train").shards)
    held = shuffle_buffer_held(m, "train", 100_000_000, BLOCK_SIZE)
    assert n <= held // 2 < n + shards * BLOCK_SIZE and parallel_shards(m, "train", 1024) == shards

    def order(cycle_length, buffer_size):
        ds = (list_shards(m, "train", seed=5)
              .apply(interleave_blocks(compression=m.compression, cycle_length=cycle_length, deterministic=True))
              .apply(shuffle_blocks(buffer_size=buffer_size, block_size=BLOCK_SIZE, seed=5, deterministic=True))
              .repeat(2))
        return [w.numpy().tolist() for w in ds]

    # as large as TensorFlow is still safe with: the split's size a few times over
    assert order(shards + 7, 4 * held) == order(shards, held)
    assert order(shards, held) != order(shards, held - 2)  # the bound is tight: one less changes the order

    def labels(**settings):
        return [y.numpy().tolist() for _, y in read(m, "train", batch_size=512, seed=5, **settings)]

    assert labels(shuffle_buffer=100_000_000, cycle_length=1024, prefetch=1024) == labels(
        shuffle_buffer=held, cycle_length=shards, prefetch=1024)
