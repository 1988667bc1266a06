"""Datasets as immutable snapshots: kills at any moment, concurrent runs, republishing
during training, resumes, and the user's files (issue 10's defects 1-4)."""

import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tfstream.pipelines.inspect.verify import format_result, verify
from tfstream.pipelines.manifest import MANIFEST_NAME, load_manifest
from tfstream.pipelines.shards import read_records
from tfstream.pipelines.snapshots import SNAPSHOTS_DIR
from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.pipelines.write.lock import DatasetBusyError, locked
from tfstream.pipelines.write.run import PreprocessError
from tfstream.testing import ROOT, digits_slice

DRIVER = os.path.join(os.path.dirname(__file__), "kill_driver.py")


def _records(manifest) -> collections.Counter:
    """The multiset of the published dataset's records (by hash), over every split."""
    out = collections.Counter()
    for split in manifest.split_names:
        for path in manifest.shard_paths(split):
            with open(path, "rb") as f:
                out.update(hashlib.sha1(r).hexdigest() for r in read_records(f, path))
    return out


def _verify(manifest) -> None:
    """Every shard the manifest names is there, whole (`tfstream verify`: records,
    bytes, sha256, CRCs)."""
    result = verify(manifest)
    assert result.ok, format_result(result)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return digits_slice(str(root / "a.npz"), every=9), digits_slice(str(root / "b.npz"), every=11)


def _job(make_job, path, **output):
    return make_job("digits_lstm.yaml", source={"path": path}, output={"snapshot_retention_hours": 0, **output})


@pytest.mark.slow
def test_twenty_sigkills_never_lose_or_mix_a_dataset(sources, make_job, tmp_path):
    """20 SIGKILLs of a process that republishes the dataset in a loop: 10 at random
    times, 10 at chosen steps of publishing and garbage collection. After each, the
    published dataset verifies and holds exactly one clean run's records; then a rerun
    succeeds and leaves only the current and the previous snapshot."""
    clean = {}
    for name, path in zip("ab", sources):
        clean[name] = _records(preprocess(_job(make_job, path), output_dir=str(tmp_path / f"clean-{name}")))
    assert clean["a"] != clean["b"]
    out = str(tmp_path / "ds")
    user_file = tmp_path / "ds" / "train" / "digits-00000-of-00004.tfrecord"  # named like a run's shard
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"the user's")
    preprocess(_job(make_job, sources[0]), output_dir=out, force=True)  # a published dataset to lose
    rng = random.Random(0)
    # Publishing's steps, in order (each run: its own manifest once checked, the snapshot's
    # TFDS metadata and manifest, the root manifest (the commit), the root's TFDS
    # metadata; then old snapshots go).
    points = [f"{name}:{k}" for name, k in (("finish", 1), ("write_tfds_metadata", 1), ("write_manifest", 1),
                                            ("write_manifest", 2), ("write_tfds_metadata", 2), ("replace", 1),
                                            ("replace", 5), ("replace", 7), ("remove_tree", 1), ("remove_tree", 2))]
    kills = [None] * 10 + points
    rng.shuffle(kills)
    env = dict(os.environ, PYTHONPATH=ROOT)
    seen = collections.Counter()
    for point in kills:
        proc = subprocess.Popen([sys.executable, DRIVER, *sources, out, *([point] if point else [])], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if point is None:
            time.sleep(rng.uniform(1.5, 9.0))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        published = sum(1 for line in proc.stdout if line.startswith("published"))
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode)
        manifest = load_manifest(out)
        _verify(manifest)
        records = _records(manifest)
        which = [name for name, r in clean.items() if r == records]
        assert which, f"after a kill at {point or 'a random time'}: the records are neither run's"
        seen[which[0]] += 1
        seen["runs published"] += published
        assert os.path.exists(os.path.join(out, SNAPSHOTS_DIR, manifest.snapshot["id"], MANIFEST_NAME))
    final = preprocess(_job(make_job, sources[1]), output_dir=out)
    assert _records(final) == clean["b"]
    folders = sorted(os.listdir(os.path.join(out, SNAPSHOTS_DIR)))
    assert folders == sorted({final.snapshot["id"], final.snapshot["parent"]}), folders
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert user_file.read_bytes() == b"the user's"
    assert seen["runs published"] > 0, seen  # the loop published between kills, not only the first run


def test_user_files_survive_and_dangerous_outputs_are_refused(sources, make_job, tmp_path, monkeypatch):
    job = _job(make_job, sources[0])
    out = tmp_path / "mine"
    files = {"notes.labels.txt": b"my notes", "quarantine/my-audit-log.jsonl": b'{"me": 1}\n',
             "train/digits-00000-of-00002.tfrecord": b"not tfstream's"}
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    with pytest.raises(PreprocessError, match=r"is not empty and is not a tfstream dataset .*--force"):
        preprocess(job, output_dir=str(out))
    m = preprocess(job, output_dir=str(out), force=True)  # beside them, never over them
    assert {rel: (out / rel).read_bytes() for rel in files} == files
    assert m.shard_paths("train")[0].startswith(str(out / SNAPSHOTS_DIR))
    again = preprocess(job, output_dir=str(out))  # a tfstream dataset now: no --force needed
    assert {rel: (out / rel).read_bytes() for rel in files} == files
    assert again.snapshot["parent"] == m.snapshot["id"]

    with pytest.raises(PreprocessError, match="is the filesystem root"):
        preprocess(job, output_dir="/")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(PreprocessError, match="is your home directory"):
        preprocess(job, output_dir=str(home))
    with pytest.raises(PreprocessError, match="contains the source file"):
        preprocess(job, output_dir=os.path.dirname(sources[0]))
    assert not os.path.exists(os.path.join(os.path.dirname(sources[0]), SNAPSHOTS_DIR))


def test_a_second_run_fails_at_once_or_waits(sources, make_job, tmp_path):
    job = _job(make_job, sources[0])
    out = str(tmp_path / "ds")
    with locked(out):
        start = time.monotonic()
        with pytest.raises(DatasetBusyError, match=r"another tfstream run is writing this dataset .*--wait"):
            preprocess(job, output_dir=out)
        assert time.monotonic() - start < 60  # at once, not after a pipeline run
    assert not os.path.exists(os.path.join(out, SNAPSHOTS_DIR)) or not os.listdir(os.path.join(out, SNAPSHOTS_DIR))

    released = threading.Event()

    def hold():
        with locked(out):
            time.sleep(1.0)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    m = preprocess(job, output_dir=out, wait=True)
    holder.join()
    assert released.is_set() and m.num_examples("train") > 0


def test_the_cli_exits_75_when_the_dataset_is_busy(sources, tmp_path, capsys):
    from tfstream.cli import main
    from tfstream.testing import CONFIGS

    config = tmp_path / "job.yaml"
    text = open(os.path.join(CONFIGS, "digits_lstm.yaml"), encoding="utf-8").read()
    config.write_text(text.replace("path: ", f"path: {sources[0]}  # ", 1))
    out = str(tmp_path / "ds")
    with locked(out):
        assert main(["preprocess", "--config", str(config), "--output", out]) == 75
    assert "another tfstream run is writing this dataset" in capsys.readouterr().err


def test_a_format_2_dataset_stays_readable_and_is_adopted(sources, make_job, tmp_path):
    """A dataset written before snapshots (shards in <split>/, format 2) reads as before;
    the next run publishes a snapshot over it, and its files go with garbage collection."""
    job = _job(make_job, sources[0])
    out = tmp_path / "v2"
    m = preprocess(job, output_dir=str(tmp_path / "v3"))
    prefix = f"{SNAPSHOTS_DIR}/{m.snapshot['id']}/"
    data = json.loads(json.dumps(m.data))  # rewrite it as format 2 wrote it
    data["format_version"] = 2
    del data["snapshot"]
    for split in data["splits"].values():
        for shard in split["shards"]:
            shard["file"] = shard["file"][len(prefix):]
    data["source"]["quarantine"] = [q[len(prefix):] for q in data["source"]["quarantine"]]
    shutil.copytree(tmp_path / "v3" / prefix, out)
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    old = load_manifest(str(out))
    assert old.snapshot is None and old.digest == m.digest
    assert _records(old) == _records(m)
    first = preprocess(job, output_dir=str(out))  # adopts v2, keeps it as the previous snapshot
    assert first.snapshot["parent"].startswith("v2-")
    assert os.path.exists(out / "train" / "digits-00000-of-00004.tfrecord")
    second = preprocess(job, output_dir=str(out))  # now v2 is two snapshots old: removed
    assert not os.path.exists(out / "train")
    assert sorted(os.listdir(out / SNAPSHOTS_DIR)) == sorted([first.snapshot["id"], second.snapshot["id"]])
    assert _records(second) == _records(m)


def test_retention_and_pins_keep_old_snapshots(sources, make_job, tmp_path):
    from tfstream.pipelines import snapshots
    from tfstream.pipelines.write.publish import collect_garbage

    out = str(tmp_path / "ds")
    kept_job = _job(make_job, sources[0], snapshot_retention_hours=1)
    ids = [preprocess(kept_job, output_dir=out).snapshot["id"] for _ in range(3)]
    assert sorted(os.listdir(os.path.join(out, SNAPSHOTS_DIR))) == sorted(ids)  # within the retention
    pinned = load_manifest(out)  # a reader of the third
    with snapshots.pin(out, pinned.data):
        for _ in range(2):
            preprocess(_job(make_job, sources[0]), output_dir=out)  # retention 0
        assert ids[2] in os.listdir(os.path.join(out, SNAPSHOTS_DIR))  # pinned: kept
        assert ids[0] not in os.listdir(os.path.join(out, SNAPSHOTS_DIR))
        _verify(pinned)
    with locked(out):
        report = collect_garbage(out, 0)
    assert ids[2] in report.removed


def test_an_error_after_the_publish_keeps_the_published_snapshot(sources, make_job, tmp_path, monkeypatch):
    """Ctrl-C (or any error) after the manifest's replace: the new snapshot is the
    dataset, and its files stay."""
    from tfstream.pipelines.write import publish

    out = str(tmp_path / "ds")
    job = _job(make_job, sources[0])
    first = preprocess(job, output_dir=out)
    real, calls = publish.write_tfds_metadata, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the root's TFDS metadata: just after the commit
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(publish, "write_tfds_metadata", interrupted)
    with pytest.raises(KeyboardInterrupt):
        preprocess(job, output_dir=out)
    monkeypatch.undo()
    now = load_manifest(out)
    assert now.snapshot["parent"] == first.snapshot["id"]
    _verify(now)


def _killed_run_folder(out, manifest, name="20000101T000000Z-dead00"):
    """A snapshot folder as a run killed before publishing leaves it: its manifest names
    files relative to the folder, with no snapshot block."""
    prefix = f"{SNAPSHOTS_DIR}/{manifest.snapshot['id']}/"
    data = json.loads(json.dumps(manifest.data))
    del data["snapshot"]
    for split in data["splits"].values():
        for shard in split["shards"]:
            shard["file"] = shard["file"][len(prefix):]
    folder = os.path.join(out, SNAPSHOTS_DIR, name)
    os.makedirs(folder)
    with open(os.path.join(folder, MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump(data, f)
    return folder


def test_garbage_collection_touches_only_its_own_files(sources, make_job, tmp_path, capsys):
    """A killed run's folder names files like a user's beside the dataset (--force):
    only the folder goes. User names that look like tfstream's are not tfstream's."""
    from tfstream.cli import main

    out = tmp_path / "ds"
    user = {"train/digits-00000-of-00004.tfrecord": b"mine", ".previous-versions/notes.txt": b"old notes",
            ".manifest.json.tmp": b"an editor's", "quarantine/rows-00000-of-00001.jsonl": b"{}\n"}
    for rel, data in user.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    with pytest.raises(PreprocessError, match="is not empty and is not a tfstream dataset"):
        preprocess(_job(make_job, sources[0]), output_dir=str(out))  # .previous-versions is the user's
    m = preprocess(_job(make_job, sources[0]), output_dir=str(out), force=True)
    folder = _killed_run_folder(str(out), m)
    assert main(["gc", str(out)]) == 0
    assert "removed 1 snapshot(s)" in capsys.readouterr().out
    assert not os.path.exists(folder)
    assert {rel: (out / rel).read_bytes() for rel in user} == user
    preprocess(_job(make_job, sources[0]), output_dir=str(out))
    assert {rel: (out / rel).read_bytes() for rel in user} == user


def test_the_current_snapshot_is_kept_whatever_its_folder_holds(sources, make_job, tmp_path):
    from tfstream.pipelines.write.publish import collect_garbage

    out = str(tmp_path / "ds")
    m = preprocess(_job(make_job, sources[0]), output_dir=out)
    os.remove(os.path.join(out, SNAPSHOTS_DIR, m.snapshot["id"], MANIFEST_NAME))  # its own copy lost
    with locked(out):
        report = collect_garbage(out, 0)
    assert report.removed == ()
    _verify(load_manifest(out))


def test_foreign_or_broken_manifests(sources, make_job, tmp_path, caplog):
    """A foreign manifest.json is not a dataset (nor taken over with --force); a legacy
    manifest naming files outside the dataset is not adopted; our own dataset with a
    broken manifest is republished."""
    job = _job(make_job, sources[0])
    extension = tmp_path / "extension"
    extension.mkdir()
    (extension / "manifest.json").write_text('{"manifest_version": 3, "name": "my extension"}')
    (extension / "popup.js").write_text("alert(1)")
    for force in (False, True):
        with pytest.raises(PreprocessError, match="manifest.json"):
            preprocess(job, output_dir=str(extension), force=force)
    assert (extension / "manifest.json").read_text() == '{"manifest_version": 3, "name": "my extension"}'

    out = tmp_path / "ds"
    m = preprocess(job, output_dir=str(out))
    victim = tmp_path / "victim.txt"
    victim.write_text("not tfstream's")
    data = json.loads(json.dumps(m.data))
    data["format_version"] = 2
    del data["snapshot"]
    data["source"]["quarantine"] = ["../victim.txt"]
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    again = preprocess(job, output_dir=str(out))  # the broken manifest is not compared, not adopted
    preprocess(job, output_dir=str(out))
    assert victim.read_text() == "not tfstream's"
    assert again.snapshot["parent"] is None
    assert "not a manifest this tfstream reads" in caplog.text
