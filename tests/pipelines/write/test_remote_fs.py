"""The remote-path branches (gs://, s3://, ...), on a Beam file system with object-store
rules: no directories, `exists` is true only for objects, a folder is a name prefix."""

import os
import shutil

import pytest
from apache_beam.io.filesystem import BeamIOError, FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

from tfstream.pipelines import fs
from tfstream.pipelines.write.beam_pipeline import PreprocessError, preprocess
from tfstream.pipelines.manifest import load_manifest

_ROOT = {"path": None}
_LOCAL = LocalFileSystem(None)


def _local(path):
    return os.path.join(_ROOT["path"], path[len("memstore://"):])


def _remote(path):
    return "memstore://" + os.path.relpath(path, _ROOT["path"])


class ObjectStore(LocalFileSystem):
    """Registered with Beam by subclassing: paths ``memstore://...``."""

    @classmethod
    def scheme(cls):
        return "memstore"

    def join(self, base, *paths):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        return tuple(path.rstrip("/").rsplit("/", 1))

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def match(self, patterns, limits=None):
        return [MatchResult(r.pattern, [FileMetadata(_remote(m.path), m.size_in_bytes, m.last_updated_in_seconds)
                                        for m in r.metadata_list if os.path.isfile(m.path)])
                for r in _LOCAL.match([_local(p) for p in patterns], limits)]

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(_local(path)), exist_ok=True)
        return _LOCAL.create(_local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return _LOCAL.open(_local(path), *args, **kwargs)

    def copy(self, src, dst):
        for d in dst:
            os.makedirs(os.path.dirname(_local(d)), exist_ok=True)
        return _LOCAL.copy([_local(s) for s in src], [_local(d) for d in dst])

    def rename(self, src, dst):
        for d in dst:
            os.makedirs(os.path.dirname(_local(d)), exist_ok=True)
        return _LOCAL.rename([_local(s) for s in src], [_local(d) for d in dst])

    def exists(self, path):
        return os.path.isfile(_local(path))

    def size(self, path):
        return _LOCAL.size(_local(path))

    def last_updated(self, path):
        return _LOCAL.last_updated(_local(path))

    def checksum(self, path):
        return _LOCAL.checksum(_local(path))

    def metadata(self, path):
        m = _LOCAL.metadata(_local(path))
        return FileMetadata(path, m.size_in_bytes, m.last_updated_in_seconds)

    def delete(self, paths):
        for p in paths:
            if p.endswith("/"):
                if not os.path.isdir(_local(p)):
                    raise BeamIOError("Delete operation failed", {p: FileNotFoundError(p)})
                shutil.rmtree(_local(p))
            else:
                _LOCAL.delete([_local(p)])


@pytest.fixture
def store(tmp_path):
    _ROOT["path"] = str(tmp_path / "bucket")
    os.makedirs(_ROOT["path"])
    yield _ROOT["path"]
    _ROOT["path"] = None


def _objects(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs_ in os.walk(root) for f in fs_)


def test_preprocess_to_an_object_store(store, digits_job, digits_npz, make_job):
    shutil.copy(digits_npz, os.path.join(store, "src.npz"))
    job = make_job("digits_lstm.yaml", source={"path": "memstore://src.npz"})
    m = preprocess(job, output_dir="memstore://ds")
    assert m.root == "memstore://ds"
    assert sum(m.num_examples(s) for s in m.split_names) == 600
    assert m.data["source"]["fingerprint"]["files"][0]["checksum"]  # from the store, not a full read
    objects = _objects(store)
    assert "ds/manifest.json" in objects
    snapshot = f"ds/snapshots/{m.snapshot['id']}/"
    assert all(o.startswith(snapshot) or o.count("/") == 1 for o in objects if o.startswith("ds/")), objects
    assert not [o for o in objects if "beam-temp" in o or o.endswith(".tmp")], objects
    for split in m.split_names:
        assert len(m.shard_paths(split)) == len(m.data["splits"][split]["shards"])  # sizes checked through the store

    again = preprocess(job, output_dir="memstore://ds")  # a rerun publishes a new snapshot beside the first
    assert again.snapshot["parent"] == m.snapshot["id"]
    assert f"ds/snapshots/{m.snapshot['id']}/manifest.json" in _objects(store)
    quick = make_job("digits_lstm.yaml", source={"path": "memstore://src.npz"},
                     output={"snapshot_retention_hours": 0})
    third = preprocess(quick, output_dir="memstore://ds")  # the first is two snapshots old: removed
    folders = {o.split("/")[2] for o in _objects(store) if o.startswith("ds/snapshots/")}
    assert folders == {again.snapshot["id"], third.snapshot["id"]}
    assert [s["records"] for s in again.data["splits"]["train"]["shards"]] == [s["records"] for s in m.data["splits"]["train"]["shards"]]


def test_remove_tree_deletes_a_prefix(store):
    with fs._beam_fs().create("memstore://x/a/b.txt") as f:
        f.write(b"1")
    fs.remove_tree("memstore://x/a")
    assert _objects(store) == []
    fs.remove_tree("memstore://x/none")  # absent: no error


def test_dataflow_refuses_local_paths(digits_job, tmp_path):
    with pytest.raises(PreprocessError, match=r"runs on remote workers, which cannot see local paths"):
        preprocess(digits_job, output_dir=str(tmp_path / "out"), beam_args=["--runner=DataflowRunner"])
    assert not os.path.exists(tmp_path / "out")


def test_a_failed_publish_leaves_the_previous_dataset_published(digits_job, tmp_path, monkeypatch):
    """Publishing renames nothing: the one step that can fail is the manifest's atomic
    replace, and until it succeeds the previous snapshot is the dataset."""
    from tfstream.pipelines.write import publish

    out = str(tmp_path / "ds")
    first = preprocess(digits_job, output_dir=out)
    real_write = publish.write_manifest

    def failing(dataset_dir, data):
        if dataset_dir == out:  # the snapshot's own copy is written; the commit fails
            raise OSError("disk went away")
        return real_write(dataset_dir, data)

    monkeypatch.setattr(publish, "write_manifest", failing)
    with pytest.raises(OSError, match="disk went away"):
        preprocess(digits_job, output_dir=out)
    monkeypatch.undo()
    after = load_manifest(out)
    assert after.data == first.data
    for split in after.split_names:
        after.shard_paths(split)  # present, right sizes
    assert os.listdir(os.path.join(out, "snapshots")) == [first.snapshot["id"]]  # the failed run's is gone


def test_tfds_metadata_follows_the_published_shards(digits_job, make_job, digits_npz, tmp_path, monkeypatch):
    """A rerun with other shard counts rewrites the TFDS metadata; a publish that fails
    puts the previous metadata back with the previous shards."""
    import json

    from tfstream.pipelines.write import publish

    out = str(tmp_path / "ds")

    def shard_lengths():
        info = json.load(open(os.path.join(out, "dataset_info.json")))
        return {s["name"]: [int(n) for n in s["shardLengths"]] for s in info["splits"]}

    first = preprocess(digits_job, output_dir=out)
    assert shard_lengths() == {s: [sh["records"] for sh in first.data["splits"][s]["shards"]] for s in first.split_names}
    fewer = make_job("digits_lstm.yaml", source={"path": digits_npz},
                     output={"num_shards": {"train": 2, "validation": 1, "eval": 1}})
    second = preprocess(fewer, output_dir=out)
    assert len(shard_lengths()["train"]) == 2
    assert shard_lengths() == {s: [sh["records"] for sh in second.data["splits"][s]["shards"]] for s in second.split_names}
    before = shard_lengths()

    def no_manifest(*_):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "write_manifest", no_manifest)
    with pytest.raises(OSError, match="disk full"):
        preprocess(digits_job, output_dir=out)  # 4 train shards again, but publishing fails
    assert shard_lengths() == before
    assert not [n for n in os.listdir(out) if n.startswith((".staging-", ".previous-"))]
