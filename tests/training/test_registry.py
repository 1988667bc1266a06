"""The model registry (training/registry.py): versions, the champion, rollback, pruning,
checksums, the lock, and a promotion killed at random moments."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tfstream.pipelines.lock import BUSY_EXIT_CODE, BusyError
from tfstream.training import registry
from tfstream.training.registry import ChecksumError, RegistryError

FILES = ["model.keras", "export", "metrics.json"]


def _candidate(path, *, seed: int, width: int = 8) -> list[np.ndarray]:
    """A model dir with model.keras, export/ and metrics.json; returns its weights."""
    import keras

    from tfstream.training.export import export_serving

    os.makedirs(path, exist_ok=True)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(width)(inputs)
    if width > 8:  # a few MB of weights, so a promotion takes long enough to interrupt
        hidden = keras.layers.Dense(width)(hidden)
    model = keras.Model({"x": inputs}, keras.layers.Dense(1)(hidden))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    model.save(os.path.join(path, "model.keras"))
    export_serving(model, os.path.join(path, "export"))
    with open(os.path.join(path, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"eval": {"auc": 0.5 + seed / 100}}, f)
    return model.get_weights()


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """Two small candidate model dirs, ``(path, weights)`` each."""
    root = tmp_path_factory.mktemp("candidates")
    return [(str(root / name), _candidate(str(root / name), seed=seed)) for seed, name in enumerate(("a", "b"))]


def _plain_candidate(path, text: str) -> str:
    """A candidate without Keras: model.keras is only bytes (tests that load nothing)."""
    os.makedirs(os.path.join(path, "export", "variables"), exist_ok=True)
    for rel in ("model.keras", "export/saved_model.pb", "export/variables/v.data", "metrics.json"):
        with open(os.path.join(path, rel), "w", encoding="utf-8") as f:
            f.write(json.dumps({"text": text, "file": rel}))
    return str(path)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_promote_twice_load_and_roll_back(candidates, tmp_path):
    from tfstream.training import load_champion
    from tfstream.training.export import load_serving

    (a, wa), (b, wb) = candidates
    models = str(tmp_path / "models")
    assert registry.champion(models) is None
    v1 = registry.promote(models, a, FILES, {"run": 1}, keep=3)
    v2 = registry.promote(models, b, FILES, {"run": 2}, keep=3)
    assert (v1.number, v2.number, v2.is_champion, v2.info) == (1, 2, True, {"run": 2})
    champion = json.load(open(os.path.join(models, "CHAMPION"), encoding="utf-8"))
    assert (champion["version"], champion["previous"]) == (2, 1)
    assert sorted(v2.files) == ["export/fingerprint.pb", "export/saved_model.pb",
                                "export/variables/variables.data-00000-of-00001", "export/variables/variables.index",
                                "metrics.json", "model.keras"]
    model, version = load_champion(models)
    assert version.number == 2 and _same(model.get_weights(), wb) and version.metrics() == {"eval": {"auc": 0.51}}
    x = np.ones((3, 4), "float32")
    np.testing.assert_allclose(load_serving(version.export_dir)({"x": x}), model.predict({"x": x}, verbose=0),
                               rtol=1e-5)

    assert registry.rollback(models).number == 1
    model, version = registry.load_champion(models)
    assert version.number == 1 and _same(model.get_weights(), wa)
    assert [(v.number, v.is_champion) for v in registry.versions(models)] == [(1, True), (2, False)]
    with pytest.raises(RegistryError, match=r"no version 7 \(never added, or pruned\); the versions there are: 1, 2"):
        registry.rollback(models, to=7)


def test_rollback_with_nothing_to_roll_back_to_names_the_versions(tmp_path):
    models = str(tmp_path / "models")
    registry.promote(models, _plain_candidate(tmp_path / "c", "one"), FILES, {}, keep=2)
    with pytest.raises(RegistryError, match=r"no previous champion to roll back to; the versions there are: 1"):
        registry.rollback(models)
    with pytest.raises(RegistryError, match="no champion .*promote a model first"):
        registry.load_champion(str(tmp_path / "empty"))


@pytest.mark.parametrize("rel", ["model.keras", "export/variables/variables.data-00000-of-00001"])
def test_a_corrupt_file_is_named(candidates, tmp_path, rel):
    (a, _), (b, _) = candidates
    models = str(tmp_path / "models")
    registry.promote(models, a, FILES, {}, keep=3)
    version = registry.promote(models, b, FILES, {}, keep=3)
    path = os.path.join(version.path, rel)
    with open(path, "r+b") as f:  # flip one byte in the middle: same size, other content
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match=rf"{re.escape(path)}: sha256 .*roll back to an earlier version .*versions there "
                                            rf"are: 1\), or retrain") as e:
        registry.load_champion(models)
    assert e.value.exit_code == 3
    with pytest.raises(ChecksumError, match="sha256"):
        registry.rollback(models, to=2)
    os.remove(path)
    with pytest.raises(ChecksumError, match=rf"{re.escape(path)}: missing"):
        registry.verify_version(models, 2)


def test_a_champion_whose_record_changed_or_vanished_is_refused(tmp_path):
    models = str(tmp_path / "models")
    version = registry.promote(models, _plain_candidate(tmp_path / "c", "one"), FILES, {}, keep=2)
    record = os.path.join(version.path, "VERSION.json")
    data = json.load(open(record, encoding="utf-8"))
    data["info"] = {"edited": True}
    with open(record, "w", encoding="utf-8") as f:
        json.dump(data, f)
    with pytest.raises(ChecksumError, match=rf"{re.escape(record)}: sha256 .*but .*CHAMPION says"):
        registry.champion(models)
    os.rename(version.path, version.path + "-moved")
    with pytest.raises(ChecksumError, match=rf"{re.escape(record)}: missing, but .*CHAMPION names version 1"):
        registry.champion(models)


def test_a_failed_check_leaves_the_champion(tmp_path):
    models = str(tmp_path / "models")
    registry.promote(models, _plain_candidate(tmp_path / "a", "one"), FILES, {}, keep=3)
    seen = []

    def check(path):
        seen.append(path)
        raise RuntimeError("the candidate scores NaN")

    with pytest.raises(RuntimeError, match="scores NaN"):
        registry.promote(models, _plain_candidate(tmp_path / "b", "two"), FILES, {}, check=check, keep=3)
    assert seen == [os.path.join(models, "versions", "2")]
    assert registry.champion(models).number == 1
    # the failed version is gone: it never takes a place that pruning keeps for the newest
    assert [(v.number, v.is_champion) for v in registry.versions(models)] == [(1, True)]
    assert sorted(os.listdir(os.path.join(models, "versions"))) == ["1"]


def test_prune_keeps_the_champion_and_the_previous_one(tmp_path):
    models = str(tmp_path / "models")
    candidate = _plain_candidate(tmp_path / "c", "one")
    for _ in range(5):
        registry.promote(models, candidate, FILES, {}, keep=5)
    registry.rollback(models, to=2)  # champion 2, previous 5
    assert registry.prune(models, keep=1) == [1, 3, 4]
    assert [v.number for v in registry.versions(models)] == [2, 5]
    assert sorted(os.listdir(os.path.join(models, "versions"))) == ["2", "5"]
    assert registry.promote(models, candidate, FILES, {}, keep=1).number == 6  # numbers are never reused
    assert [v.number for v in registry.versions(models)] == [2, 6]  # 6 the champion, 2 the previous
    with pytest.raises(RegistryError, match="keep: expected a whole number >= 1"):
        registry.prune(models, keep=0)


def test_bad_file_lists_are_refused(tmp_path):
    models, candidate = str(tmp_path / "models"), _plain_candidate(tmp_path / "c", "one")
    with pytest.raises(RegistryError, match=r"no such file or folder in the candidate model dir"):
        registry.add_version(models, candidate, ["model.keras", "history.csv"], {})
    with pytest.raises(RegistryError, match=r"'\.\./x' is not a path inside"):
        registry.add_version(models, candidate, ["../x"], {})
    with pytest.raises(RegistryError, match="info: expected a JSON-serializable mapping"):
        registry.add_version(models, candidate, FILES, {"when": object()})
    assert registry.versions(models) == []


# -- the lock, across processes ---------------------------------------------------------

_HOLD = textwrap.dedent("""
    import sys, time
    from tfstream.training.registry import lock
    with lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(models: str, seconds: float) -> subprocess.Popen:
    """A process that holds the registry's lock for ``seconds``, once it says so."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD, models, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_fails_at_once_or_after_waiting(tmp_path):
    models = str(tmp_path / "models")
    holder = _hold(models, 60)
    try:
        start = time.monotonic()
        with pytest.raises(BusyError, match=rf"another retraining run is using this model registry "
                                            rf"\(process {holder.pid}\); wait for it to finish, or pass --wait"):
            with registry.lock(models):
                pass
        assert time.monotonic() - start < 1
        with pytest.raises(BusyError, match="another retraining run"):  # what changes the registry takes it too
            registry.prune(models, keep=1)
        start = time.monotonic()
        with pytest.raises(BusyError, match=r"waited 2 s for it to finish; try again later") as e:
            with registry.lock(models, wait=2):
                pass
        assert 1.9 <= time.monotonic() - start < 5 and e.value.exit_code == BUSY_EXIT_CODE == 75
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    start = time.monotonic()
    with registry.lock(models):  # a killed holder leaves no stale lock
        pass
    assert time.monotonic() - start < 1


def test_wait_blocks_until_the_holder_is_done(tmp_path):
    models = str(tmp_path / "models")
    holder = _hold(models, 1.5)
    start = time.monotonic()
    with registry.lock(models, wait=True):
        assert time.monotonic() - start > 1  # not before the holder let go
        with registry.lock(models):  # re-entrant within the thread
            pass
    assert holder.wait() == 0


# -- a promotion killed at random moments -----------------------------------------------

_PROMOTE = textwrap.dedent("""
    import sys, time
    from tfstream.training.registry import promote
    print("ready", flush=True)
    start = time.monotonic()
    promote(sys.argv[1], sys.argv[2], ["model.keras", "export", "metrics.json"], {"run": "new"}, keep=2)
    print(time.monotonic() - start, flush=True)
""")


def _promote_in_child(models: str, candidate: str, kill_after=None) -> str:
    """Run `promote` in a child process, SIGKILLed ``kill_after`` seconds after it starts
    promoting (None: let it finish); returns its output after "ready"."""
    p = subprocess.Popen([sys.executable, "-c", _PROMOTE, models, candidate], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    if kill_after is not None:
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
    out = p.stdout.read()
    p.wait()
    assert kill_after is not None or p.returncode == 0, out
    return out


def test_a_promotion_killed_at_20_random_moments_leaves_the_old_or_the_new_champion(candidates, tmp_path):
    """The issue's fault test: CHAMPION always loads, passes its checksum, and is either
    the old model or the new one; the next promotion then works."""
    (old, old_weights), _ = candidates
    new = str(tmp_path / "big")
    new_weights = _candidate(new, seed=7, width=1024)  # ~13 MB: model.keras and export/
    models = str(tmp_path / "models")
    registry.promote(models, old, FILES, {"run": "old"}, keep=2)
    seconds = float(_promote_in_child(models, new))  # one undisturbed promotion, timed
    registry.rollback(models, to=1)
    outcomes = []
    rng = random.Random(20)
    for delay in sorted(rng.uniform(0, seconds) for _ in range(20)):
        _promote_in_child(models, new, kill_after=delay)
        model, champion = registry.load_champion(models)  # verifies every file's checksum
        newest = max(v.number for v in registry.versions(models))
        assert champion.number in (1, newest), (delay, champion.number, newest)
        assert _same(model.get_weights(), old_weights if champion.number == 1 else new_weights)
        outcomes.append(champion.number != 1)
        if champion.number != 1:
            registry.rollback(models, to=1)
    assert not all(outcomes), f"no kill landed before the commit (promotion took {seconds:.2f} s)"
    version = registry.promote(models, new, FILES, {"run": "after"}, keep=2)
    assert [n for n in os.listdir(os.path.join(models, "versions")) if not n.isdigit()] == []  # leftovers removed
    model, champion = registry.load_champion(models)
    assert champion.number == version.number and _same(model.get_weights(), new_weights)


def test_the_cli_exit_status_of_registry_errors(capsys):
    from tfstream.cli import _error_exit

    assert _error_exit("retrain", False, ChecksumError("versions/2/model.keras: sha256 ...")) == 3
    assert _error_exit("retrain", False, RegistryError("models: no version 7")) == 2
    assert _error_exit("retrain", False, BusyError("models: another retraining run")) == BUSY_EXIT_CODE
    assert capsys.readouterr().err.splitlines()[0] == "tfstream retrain: error: versions/2/model.keras: sha256 ..."
