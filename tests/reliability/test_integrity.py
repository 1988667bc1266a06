"""Read-side integrity: shards that do not match their manifest are named, by file, by
`tfstream verify`, by `tfstream inspect`'s size check, and by training (before the first
epoch when it can be, else when the read fails); malformed manifests are `ManifestError`s
naming the key.

Faults are made on copies of the datasets the real pipeline wrote (the session fixtures
are shared): a flipped byte, a truncation, bytes appended, a miscounted manifest entry.
"""

import copy
import gzip
import hashlib
import io
import json
import os
import shutil

import keras
import pytest

from tfstream.cli import main
from tfstream.pipelines.config import replace
from tfstream.pipelines.inspect.verify import EXIT_MISMATCH, IntegrityError, check_sizes, verify, verify_shard
from tfstream.pipelines.manifest import Manifest, ManifestError, Shard, load_manifest
from tfstream.pipelines.shards import write_record


def _copy(dataset_dir, tmp_path, name="copy"):
    dst = str(tmp_path / name)
    shutil.copytree(dataset_dir, dst)
    return dst


def _shard(dataset_dir, split, index=0):
    return load_manifest(dataset_dir).shard_paths(split, check=False)[index]


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _damage(path, fault):
    if fault == "flip":
        _flip(path, os.path.getsize(path) // 2)
    elif fault == "truncate":
        os.truncate(path, os.path.getsize(path) - 7)
    else:
        with open(path, "ab") as f:
            f.write(b"garbage appended after the last record")


def _edit_manifest(dataset_dir, edit):
    path = os.path.join(dataset_dir, "manifest.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    edit(data)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


# --- verify_shard on hand-made shards (fast) ------------------------------------------

def _make_shard(tmp_path, compression="none", n=50, name="s.tfrecord"):
    buf = io.BytesIO()
    for i in range(n):
        write_record(buf, f"record {i} ".encode() * (i % 7 + 1))
    raw = buf.getvalue()
    data = gzip.compress(raw, mtime=0) if compression == "gzip" else raw
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), Shard(name, n, len(data), hashlib.sha256(data).hexdigest(), len(raw)), raw


def _kinds(result):
    return {p.kind for p in result.problems}


def test_a_whole_shard_verifies(tmp_path):
    for compression in ("none", "gzip"):
        path, shard, _ = _make_shard(tmp_path, compression, name=f"whole-{compression}")
        result = verify_shard(path, shard, compression, split="train")
        assert result.ok and result.records == 50 and result.sha256 == shard.sha256, result.describe()


def test_flipped_bytes_are_found_at_their_record(tmp_path):
    path, shard, raw = _make_shard(tmp_path)
    _flip(path, 12 + 3)  # in the data of record 0: framing intact, the next records still counted
    result = verify_shard(path, shard)
    assert _kinds(result) == {"crc", "sha256"} and result.records == 50
    assert "CRC mismatch in the data of record 0" in result.describe()
    path, shard, raw = _make_shard(tmp_path, name="len.tfrecord")
    second = 12 + len(b"record 0 ") + 4  # the length field of record 1
    _flip(path, second + 2)
    result = verify_shard(path, shard)
    assert _kinds(result) == {"crc", "records", "sha256"}
    assert f"CRC mismatch at record 1 (offset {second}): a record length that fails its CRC" in result.describe()
    assert "1+ records read, 50 in the manifest" in result.describe()


def test_truncation_and_trailing_garbage(tmp_path):
    path, shard, raw = _make_shard(tmp_path)
    os.truncate(path, len(raw) - 3)
    result = verify_shard(path, shard)
    assert _kinds(result) == {"truncated", "records", "bytes", "sha256"}
    assert "truncated at record 49 (offset" in result.describe()
    path, shard, raw = _make_shard(tmp_path, name="tail.tfrecord")
    with open(path, "ab") as f:
        f.write(b"x" * 20)
    result = verify_shard(path, shard)
    assert _kinds(result) == {"trailing", "bytes", "sha256"} and result.records == 50
    assert f"trailing garbage: 20 byte(s) after the last record (offset {len(raw)})" in result.describe()


def test_gzip_faults(tmp_path):
    path, shard, _ = _make_shard(tmp_path, "gzip", name="t.gz")
    os.truncate(path, shard.bytes - 30)
    assert "truncated" in _kinds(verify_shard(path, shard, "gzip"))
    path, shard, _ = _make_shard(tmp_path, "gzip", name="g.gz")
    with open(path, "ab") as f:
        f.write(b"not gzip at all")
    result = verify_shard(path, shard, "gzip")
    assert _kinds(result) == {"trailing", "bytes", "sha256"} and result.records == 50, result.describe()
    path, shard, _ = _make_shard(tmp_path, "gzip", name="f.gz")
    _flip(path, shard.bytes // 2)
    result = verify_shard(path, shard, "gzip")
    assert {"sha256"} < _kinds(result) <= {"gzip", "crc", "records", "sha256"}, result.describe()


def test_a_missing_shard(tmp_path):
    _, shard, _ = _make_shard(tmp_path)
    result = verify_shard(str(tmp_path / "gone.tfrecord"), shard)
    assert _kinds(result) == {"missing"} and result.records is None


# --- manifest shape (fast) --------------------------------------------------------------

def _toy_manifest():
    schema = {"features": [{"name": "x", "kind": "numeric", "dtype": "float32", "shape": []}],
              "label": {"name": "y", "task": "regression", "dtype": "float32"}}
    shard = {"file": "train/t-00000-of-00001.tfrecord", "records": 10, "bytes": 200, "sha256": "0" * 64}
    return {"format_version": 2, "name": "toy", "compression": "none", "schema": schema,
            "splits": {"train": {"num_examples": 10, "shards": [shard], "statistics": {"features": {}}}},
            "source": {"rows_read": 10, "rows_written": 10, "rows_dropped": 0}}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("schema"), r"manifest.json: no 'schema' key \(the dataset's features and label\); restore the "
                                r"manifest.json that the run wrote, or re-run `tfstream preprocess`"),
    (lambda d: d.pop("splits"), r"no 'splits' key"),
    (lambda d: d["splits"].__setitem__("train", []),
     r"splits.train: expected a mapping \(JSON object\), got a list \(JSON array\): \[\]"),
    (lambda d: d["splits"]["train"].__setitem__("num_examples", "10"),
     r"splits.train.num_examples: expected an integer, got a string: '10'"),
    (lambda d: d["splits"]["train"]["shards"][0].__setitem__("records", 10.5),
     r"splits.train.shards\[0\].records: expected an integer, got a number: 10.5"),
    (lambda d: d["splits"]["train"]["shards"][0].pop("sha256"), r"splits.train.shards\[0\]: no 'sha256' key"),
    (lambda d: d["splits"]["train"].__setitem__("num_examples", 15),
     r"splits.train.num_examples: 15, but its 1 shard\(s\) hold 10 records"),
    (lambda d: d["schema"].__setitem__("label", ["y"]), r"schema.label: expected a mapping"),
    (lambda d: d["source"].__setitem__("rows_read", None), r"source.rows_read: expected an integer, got null"),
    (lambda d: d["splits"]["train"]["statistics"]["features"].__setitem__("x", {"mean": "0.5"}),
     r"splits.train.statistics.features.x.mean: expected a number or a list of numbers, got '0.5'"),
    (lambda d: d["splits"]["train"]["shards"][0].__setitem__("file", "../elsewhere/t.tfrecord"),
     r"splits.train.shards\[0\].file: expected a path inside the dataset directory"),
    (lambda d: d.__setitem__("compression", 1), r"compression: expected a string, got an integer: 1"),
    (lambda d: d.__setitem__("format_version", "2"), r"manifest format version '2'"),
    (lambda d: d.__setitem__("schema", {"features": [], "label": {"name": "y", "task": "regression"}}),
     r"schema: a schema needs at least one feature"),
])
def test_malformed_manifests_name_the_key(tmp_path, edit, message):
    data = _toy_manifest()
    assert load_manifest_from(tmp_path, data).name == "toy"
    edit(data)
    with pytest.raises(ManifestError, match=message):
        load_manifest_from(tmp_path, data)


def load_manifest_from(tmp_path, data):
    (tmp_path / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return load_manifest(str(tmp_path))


def test_format_3_and_unknown_keys_are_read(tmp_path):
    data = _toy_manifest()
    data.update(format_version=3, snapshot={"id": "20240101T000000-ab12"}, extra={"anything": [1]})
    data["splits"]["train"]["shards"][0]["file"] = "snapshots/20240101T000000-ab12/train/t-00000-of-00001.tfrecord"
    m = load_manifest_from(tmp_path, data)
    assert m.shard_paths("train", check=False) == [
        os.path.join(str(tmp_path), "snapshots/20240101T000000-ab12/train/t-00000-of-00001.tfrecord")]


def test_a_manifest_built_by_hand_is_checked_too():
    data = _toy_manifest()
    data["splits"]["train"]["shards"] = "none"
    with pytest.raises(ManifestError, match=r"/toy: manifest splits.train.shards: expected a list"):
        Manifest(data, "/toy")


# --- on datasets the pipeline wrote (slow) ----------------------------------------------

FAULTS = {"flip": {"crc", "gzip"}, "truncate": {"truncated"}, "garbage": {"trailing"}}


@pytest.mark.slow  # (the datasets come through request, which the conftest's marking does not see)
@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("which", ["digits_dataset", "flights_dataset"])  # uncompressed, gzip
def test_verify_names_the_damaged_shard(which, fault, request, tmp_path, capsys):
    dataset = _copy(request.getfixturevalue(which), tmp_path)
    assert verify(dataset).ok and main(["verify", dataset]) == 0
    capsys.readouterr()
    target = _shard(dataset, "train", 1)
    _damage(target, fault)
    result = verify(dataset)
    assert [s.path for s in result.failed] == [target]
    kinds = {p.kind for p in result.failed[0].problems}
    assert kinds & FAULTS[fault] and "sha256" in kinds, result.failed[0].describe()
    with pytest.raises(IntegrityError, match=rf"1 of \d+ shard\(s\) do not match the manifest of .*\n  {target}: "):
        result.check()
    assert main(["verify", dataset, "--split", "train"]) == EXIT_MISMATCH
    out, err = capsys.readouterr()
    assert os.path.relpath(target, dataset) in out and target in err and "re-run `tfstream preprocess`" in err
    assert main(["verify", dataset, "--split", "eval", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_inspect_runs_the_size_check(digits_dataset, tmp_path, capsys):
    dataset = _copy(digits_dataset, tmp_path)
    assert main(["inspect", dataset]) == 0
    capsys.readouterr()
    target = _shard(dataset, "validation")
    _damage(target, "garbage")
    assert main(["inspect", dataset]) == EXIT_MISMATCH
    err = capsys.readouterr().err
    assert f"{target}: {os.path.getsize(target)} bytes on disk" in err
    assert f"run `tfstream verify {dataset}` to check every shard's records and checksums" in err
    os.remove(target)
    assert main(["inspect", dataset, "--json"]) == EXIT_MISMATCH
    out, err = capsys.readouterr()
    assert json.loads(out)["name"] == "digits" and f"{target}: missing" in err
    assert not check_sizes(dataset).ok


def test_malformed_manifest_on_the_command_line(digits_dataset, tmp_path, capsys):
    dataset = _copy(digits_dataset, tmp_path)
    _edit_manifest(dataset, lambda d: d["splits"]["train"].__setitem__("num_examples", d["splits"]["train"]
                                                                       ["num_examples"] + 5))
    assert main(["inspect", dataset]) == 2
    assert "splits.train.num_examples: " in capsys.readouterr().err
    _edit_manifest(dataset, lambda d: d.pop("schema"))
    assert main(["verify", dataset]) == 2
    assert "no 'schema' key" in capsys.readouterr().err


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begun = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


def _train(job, dataset, model_dir):
    from tfstream.training.trainer import train

    epochs = _Epochs()
    with pytest.raises(IntegrityError) as caught:
        train(replace(job, train=replace(job.train, epochs=2)), dataset=dataset, model_dir=model_dir, verbose=0,
              callbacks=[epochs])
    return str(caught.value), epochs.begun


@pytest.mark.parametrize("split", ["eval", "validation"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_held_out_shard_stops_training_before_the_first_epoch(flights_job, flights_dataset, tmp_path, split,
                                                                       fault):
    dataset = _copy(flights_dataset, tmp_path)
    target = _shard(dataset, split)
    _damage(target, fault)
    model_dir = str(tmp_path / "model")
    message, begun = _train(flights_job, dataset, model_dir)
    assert target in message and "re-run `tfstream preprocess`" in message
    assert begun == [] and not os.path.exists(os.path.join(model_dir, "history.csv"))


def test_a_corrupt_training_shard_is_named_when_its_read_fails(flights_job, flights_dataset, tmp_path):
    dataset = _copy(flights_dataset, tmp_path)
    target = _shard(dataset, "train", 2)
    _damage(target, "flip")  # same size: only reading it finds it
    message, begun = _train(flights_job, dataset, str(tmp_path / "model"))
    assert begun == [0]
    assert message.startswith("reading split(s) 'train', 'validation' failed (DataLossError: ")
    assert "Graph execution" not in message
    assert f"1 of 4 shard(s) do not match the manifest of {dataset}:\n  {target}: " in message


@pytest.mark.parametrize("fault", ["truncate", "garbage"])
def test_a_resized_training_shard_stops_training_before_the_first_epoch(flights_job, flights_dataset, tmp_path,
                                                                        fault):
    dataset = _copy(flights_dataset, tmp_path)
    target = _shard(dataset, "train", 0)
    _damage(target, fault)
    message, begun = _train(flights_job, dataset, str(tmp_path / "model"))
    assert begun == [] and f"{target}: {os.path.getsize(target)} bytes on disk" in message
    assert "run `tfstream verify" in message


def test_a_shard_a_few_records_off_its_manifest_entry_is_named(flights_job, flights_dataset, tmp_path):
    """The manifest says 5 records fewer for one shard (and its split): less than a
    batch, so the batch count cannot see it; the reader counts each shard's records."""
    from tfstream.pipelines.read.reader import read
    import tensorflow as tf

    dataset = _copy(flights_dataset, tmp_path)

    def fewer(data):
        train = data["splits"]["train"]
        train["shards"][1]["records"] -= 5
        train["num_examples"] -= 5

    _edit_manifest(dataset, fewer)
    target = _shard(dataset, "train", 1)
    batches = read(dataset, "train", batch_size=256, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"tfstream: the records of the shard\] \[{target}\]"):
        for _ in batches:
            pass
    message, begun = _train(flights_job, dataset, str(tmp_path / "model"))
    assert message.startswith(f"{target}: the shard's records differ from its manifest entry: it lists ")
    assert result_names(verify(dataset, ["train"])) == {target: {"records"}}


def result_names(result):
    return {s.path: {p.kind for p in s.problems} for s in result.failed}


def test_verify_python_api_on_a_manifest_edit(digits_dataset, tmp_path):
    dataset = _copy(digits_dataset, tmp_path)
    data = json.load(open(os.path.join(dataset, "manifest.json")))
    edited = copy.deepcopy(data)
    edited["splits"]["eval"]["shards"][0]["sha256"] = "f" * 64
    result = verify(Manifest(edited, dataset), ["eval"])
    assert result_names(result) == {_shard(dataset, "eval"): {"sha256"}}
    assert result.to_json()["shards"][0]["problems"][0]["kind"] == "sha256"
