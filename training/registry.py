"""A model registry for scheduled retraining: numbered, checksummed versions of a model
directory, and one champion, promoted and rolled back atomically.

Layout of a registry (the directory the caller names, e.g. ``models/<name>/``)::

    CHAMPION              {"version", "record_sha256", "promoted_at", "previous"}: the
                          promoted version, the sha256 of its VERSION.json, and the one
                          promoted before it; replaced atomically (`fs.write_json`)
    versions/<n>/         n = 1, 2, ..., never reused; never changed once complete
      model.keras, export/, metrics.json, ...   the files copied from a model dir
      VERSION.json        {"version", "created_at", "files": {path: {"sha256", "bytes"}},
                          "info": {the caller's}}
    .retrain.lock         held by the run that changes the registry (`lock`)

A version is written into ``versions/.tmp-<n>-<random>/``, its files fsynced, its
VERSION.json last, and then renamed to ``versions/<n>/``; a version is removed by first
renaming it to ``versions/.tmp-deleting-<n>-<random>/``. So a ``versions/<n>/`` folder is
always complete, and a kill at any moment leaves the old champion or the new one: the
next run that changes the registry removes the ``.tmp-*`` leftovers.

Readers (`champion`, `versions`, `load_champion`) take no lock. The functions that change
the registry (`add_version`, `set_champion`, `promote`, `prune`, `rollback`) take `lock`
without waiting (it is re-entrant within a thread: a retraining run holds it from
start to end and calls them inside). `prune` never removes the champion nor the
version promoted before it.

Example:
    >>> import os
    >>> cand = tmp_path / "candidate"
    >>> os.makedirs(cand / "export")
    >>> _ = (cand / "metrics.json").write_text('{"eval": {"auc": 0.8}}')
    >>> _ = (cand / "export" / "saved_model.pb").write_bytes(b"...")
    >>> models = str(tmp_path / "models")
    >>> v = promote(models, str(cand), ["metrics.json", "export"], {"run": "a"}, keep=3)
    >>> v.number, v.is_champion, sorted(v.files), v.metrics()["eval"]
    (1, True, ['export/saved_model.pb', 'metrics.json'], {'auc': 0.8})
    >>> promote(models, str(cand), ["metrics.json", "export"], {"run": "b"}, keep=3).number
    2
    >>> rollback(models).number, [(v.number, v.is_champion) for v in versions(models)]
    (1, [(1, True), (2, False)])
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import threading
import uuid
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from tfstream.pipelines import fs
from tfstream.pipelines.lock import BusyError, locked

CHAMPION_NAME = "CHAMPION"
VERSIONS_DIR = "versions"
RECORD_NAME = "VERSION.json"
LOCK_NAME = ".retrain.lock"
MODEL_NAME = "model.keras"
EXPORT_DIR = "export"
_TMP_PREFIX = ".tmp-"
_BLOCK = 1 << 20  # files are copied and hashed in 1 MiB blocks

__all__ = ["BusyError", "ChecksumError", "RegistryError", "Version", "add_version", "champion", "load_champion", "lock",
           "promote", "prune", "rollback", "set_champion", "verify_version", "versions"]


class RegistryError(ValueError):
    """A registry request that cannot be met: no champion, an unknown or pruned version."""


class ChecksumError(RegistryError):
    """A registry file that does not match its record: changed, resized or missing (exit
    status 3, like a dataset shard that does not match its manifest)."""

    exit_code = 3


@dataclasses.dataclass(frozen=True)
class Version:
    """One complete version of the registry (``versions/<number>/``).

    Attributes:
        number: the version number (1, 2, ...).
        path: the version's folder.
        created_at: when it was added (ISO 8601, UTC).
        files: ``{relative path: {"sha256", "bytes"}}`` of every file it holds.
        info: the caller's dict, given to `add_version`.
        is_champion: whether CHAMPION names it.
    """

    number: int
    path: str
    created_at: str
    files: Mapping[str, Mapping[str, Any]]
    info: Mapping[str, Any]
    is_champion: bool = False

    @property
    def export_dir(self) -> str:
        """The serving export's folder (`training.export.load_serving` reads it)."""
        return os.path.join(self.path, EXPORT_DIR)

    def metrics(self) -> Optional[dict]:
        """The version's ``metrics.json``, or None when it has none."""
        return fs.read_json_object(os.path.join(self.path, "metrics.json"))


_held = threading.local()  # the registries this thread holds the lock of


@contextlib.contextmanager
def lock(models_dir: str, *, wait: Union[bool, float] = False) -> Iterator[None]:
    """Hold the registry's lock (``.retrain.lock``) for the ``with`` block; re-entrant
    within a thread.

    Args:
        models_dir: the registry directory (created if needed).
        wait: False: fail at once when another run holds it; True: wait until it is
            released; a number: wait at most that many seconds.

    Raises:
        BusyError: another run holds the lock (exit status 75), and ``wait`` ran out.
    """
    _local(models_dir)
    key = os.path.realpath(models_dir)
    held = _held.__dict__.setdefault("dirs", set())
    if key in held:
        yield
        return
    with locked(models_dir, lock_name=LOCK_NAME, what="retraining run is using this model registry", wait=wait):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


def add_version(models_dir: str, candidate_dir: str, files: Sequence[str], info: Mapping[str, Any]) -> Version:
    """Copy ``files`` of a model dir into the registry as its next version.

    Args:
        models_dir: the registry directory.
        candidate_dir: the model dir the files are copied from (`trainer.train`'s).
        files: paths relative to ``candidate_dir``; a folder is copied whole.
        info: JSON-serializable facts to keep with the version (``VERSION.json``'s
            ``info``): the dataset snapshot, the gate's scores, ...

    Returns:
        The new version (not the champion: `set_champion` or `promote` makes it one).

    Raises:
        RegistryError: a file is missing or outside ``candidate_dir``, or ``info`` is not
            JSON.
        BusyError: another run holds the registry's lock.
    """
    sources = _sources(candidate_dir, files)
    try:
        info_json = json.loads(json.dumps(dict(info)))
    except (TypeError, ValueError) as e:
        raise RegistryError(f"info: expected a JSON-serializable mapping ({e})") from None
    with lock(models_dir):
        root = _versions_root(models_dir)
        _remove_leftovers(root)
        number = _next_number(models_dir)
        tmp = os.path.join(root, f"{_TMP_PREFIX}{number}-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            record = {rel: _copy(src, os.path.join(tmp, rel)) for rel, src in sources}
            data = {"version": number, "created_at": _now(), "files": record, "info": info_json}
            for folder in _folders(tmp, record):  # their entries reach the disk (tmp's own: below)
                _fsync_dir(folder)
            fs.write_json(os.path.join(tmp, RECORD_NAME), data)  # last: fsynced, and the folder with it
            os.rename(tmp, os.path.join(root, str(number)))  # the commit: the version is complete or absent
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk, say: leave nothing behind
            raise
        _fsync_dir(root)
    return _version(models_dir, number, data, is_champion=False)


def verify_version(models_dir: str, number: int) -> Version:
    """Check every file of a version against its VERSION.json: present, its size, its
    sha256 (read whole, in 1 MiB blocks).

    Raises:
        RegistryError: there is no such version (never added, or pruned).
        ChecksumError: a file is missing or differs; the message names it.
    """
    version = _read_version(models_dir, number)
    for rel, want in version.files.items():
        path = os.path.join(version.path, rel)
        try:
            size = os.path.getsize(path)
            digest = _sha256(path) if size == want.get("bytes") else None
        except OSError:
            raise ChecksumError(f"{path}: missing (VERSION.json lists it); {_advice(models_dir, number)}") from None
        if size != want.get("bytes"):
            raise ChecksumError(f"{path}: {size} bytes, but VERSION.json says {want.get('bytes')}; "
                                f"{_advice(models_dir, number)}")
        if digest != want.get("sha256"):
            raise ChecksumError(f"{path}: sha256 {digest[:16]}..., but VERSION.json says "
                                f"{str(want.get('sha256'))[:16]}...; {_advice(models_dir, number)}")
    return version


def set_champion(models_dir: str, number: int, *, check: Optional[Callable[[str], None]] = None) -> Version:
    """Make version ``number`` the champion, after verifying it and after ``check``.

    Args:
        check: called with the version's folder before anything changes (load the model
            back, score a batch); any exception it raises means no promotion, and
            propagates.

    Returns:
        The new champion. CHAMPION's ``previous`` is the champion before it (unchanged
        when ``number`` already is the champion).

    Raises:
        RegistryError, ChecksumError: as `verify_version`.
        BusyError: another run holds the registry's lock.
    """
    with lock(models_dir):
        version = verify_version(models_dir, number)
        if check is not None:
            check(version.path)
        current = _champion_record(models_dir)
        if current is not None and current.get("version") == number:
            return dataclasses.replace(version, is_champion=True)
        previous = current.get("version") if current is not None else None
        _write_champion(models_dir, version, previous)
    return dataclasses.replace(version, is_champion=True)


def promote(models_dir: str, candidate_dir: str, files: Sequence[str], info: Mapping[str, Any], *,
            check: Optional[Callable[[str], None]] = None, keep: int) -> Version:
    """`add_version`, then `set_champion` (with ``check``), then `prune` to ``keep``, under
    one hold of the lock. When ``check`` (or the verification) raises, the new version
    is removed again (renamed first, so it never looks complete), CHAMPION is unchanged,
    and the error propagates: a version that failed its check never takes a place that
    `prune` keeps for the newest.

    Returns:
        The new champion.
    """
    with lock(models_dir):
        version = add_version(models_dir, candidate_dir, files, info)
        try:
            version = set_champion(models_dir, version.number, check=check)
        except BaseException:
            root = _versions_root(models_dir)
            _remove(root, version.path, f"{_TMP_PREFIX}deleting-{version.number}-")
            raise
        prune(models_dir, keep)
    return version


def prune(models_dir: str, keep: int) -> list[int]:
    """Remove the oldest versions, keeping the newest ``keep`` (>= 1), the champion and
    the version promoted before it. Returns the numbers removed."""
    if not (isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1):
        raise RegistryError(f"keep: expected a whole number >= 1, got {keep!r}")
    with lock(models_dir):
        root = _versions_root(models_dir)
        _remove_leftovers(root)
        current = _champion_record(models_dir) or {}
        protected = {current.get("version"), current.get("previous")}
        numbers = _numbers(root)
        removed = [n for n in numbers[:-keep] if n not in protected]
        for n in removed:
            _remove(root, os.path.join(root, str(n)), f"{_TMP_PREFIX}deleting-{n}-")
    return removed


def champion(models_dir: str) -> Optional[Version]:
    """The champion, or None when nothing was promoted yet. Its VERSION.json is checked
    against CHAMPION's ``record_sha256``; its files are not read (`verify_version`).

    Raises:
        ChecksumError: CHAMPION is unreadable, or names a missing or changed version.
    """
    path = os.path.join(models_dir, CHAMPION_NAME)
    if not os.path.exists(path):
        return None
    current = _champion_record(models_dir)
    if current is None or not isinstance(current.get("version"), int):
        raise ChecksumError(f"{path}: unreadable, or not a registry's CHAMPION; {_advice(models_dir, None)}")
    number = current["version"]
    record = os.path.join(models_dir, VERSIONS_DIR, str(number), RECORD_NAME)
    try:
        digest = _sha256(record)
    except OSError:
        raise ChecksumError(f"{record}: missing, but {path} names version {number}; "
                            f"{_advice(models_dir, number)}") from None
    if digest != current.get("record_sha256"):
        raise ChecksumError(f"{record}: sha256 {digest[:16]}..., but {path} says "
                            f"{str(current.get('record_sha256'))[:16]}...; {_advice(models_dir, number)}")
    return dataclasses.replace(_read_version(models_dir, number), is_champion=True)


def versions(models_dir: str) -> list[Version]:
    """The registry's complete versions, oldest first."""
    current = (_champion_record(models_dir) or {}).get("version")
    out = []
    for n in _numbers(os.path.join(models_dir, VERSIONS_DIR)):
        with contextlib.suppress(RegistryError):
            out.append(dataclasses.replace(_read_version(models_dir, n), is_champion=n == current))
    return out


def load_champion(models_dir: str):
    """The champion's Keras model, after checking every file of the champion.

    Returns:
        ``(keras.Model, Version)``; the serving export is at ``Version.export_dir``.

    Raises:
        RegistryError: nothing was promoted yet, or the champion has no model.keras.
        ChecksumError: a file of the champion is missing or differs (the message names
            it and the versions to roll back to).

    Example:
        >>> import keras
        >>> import numpy as np
        >>> os.makedirs(tmp_path / "run")
        >>> keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(str(tmp_path / "run" / "model.keras"))
        >>> _ = promote(str(tmp_path / "m"), str(tmp_path / "run"), ["model.keras"], {}, keep=2)
        >>> model, version = load_champion(str(tmp_path / "m"))
        >>> model.predict(np.zeros((3, 2)), verbose=0).shape, version.number
        ((3, 1), 1)
    """
    current = champion(models_dir)
    if current is None:
        raise RegistryError(f"{models_dir}: no champion (no {CHAMPION_NAME} file); promote a model first")
    if MODEL_NAME not in current.files:
        raise RegistryError(f"{current.path}: version {current.number} holds no {MODEL_NAME}; "
                            f"{_advice(models_dir, current.number)}")
    verify_version(models_dir, current.number)
    import keras

    import tfstream.training.models  # noqa: F401  (registers tfstream's layers with Keras)

    return keras.models.load_model(os.path.join(current.path, MODEL_NAME)), current


def rollback(models_dir: str, to: Optional[int] = None) -> Version:
    """Make an earlier version the champion again: `set_champion` (verified first, atomic),
    so CHAMPION's ``previous`` becomes the champion rolled back from.

    Args:
        to: the version; default: CHAMPION's ``previous``.

    Raises:
        RegistryError: nothing to roll back to, or no such version (the message names
            the versions there are).
        ChecksumError: the target's files do not match its record.
    """
    with lock(models_dir):
        if to is None:
            to = (_champion_record(models_dir) or {}).get("previous")
            if to is None:
                raise RegistryError(f"{os.path.join(models_dir, CHAMPION_NAME)}: no previous champion to roll "
                                    f"back to; {_available(models_dir)}: pass one (rollback(models_dir, to=N))")
        return set_champion(models_dir, to)


def _local(models_dir: str) -> None:
    if fs.is_remote(models_dir):
        raise RegistryError(f"models dir {models_dir!r}: the registry must be a local directory (it relies on "
                            f"file locks and atomic renames)")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _sources(candidate_dir: str, files: Sequence[str]) -> list[tuple[str, str]]:
    """``(relative path, source path)`` of every file to copy, folders walked."""
    if isinstance(files, str) or not files:
        raise RegistryError(f"files: expected a list of paths relative to {candidate_dir}, got {files!r}")
    out = []
    for rel in files:
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm == os.curdir or norm.split(os.sep)[0] == os.pardir:
            raise RegistryError(f"files: {rel!r} is not a path inside {candidate_dir}; give paths relative to it")
        src = os.path.join(candidate_dir, norm)
        if os.path.isdir(src):
            for folder, dirs, names in os.walk(src):
                dirs.sort()
                out.extend((os.path.relpath(os.path.join(folder, n), candidate_dir), os.path.join(folder, n))
                           for n in sorted(names))
        elif os.path.isfile(src):
            out.append((norm, src))
        else:
            raise RegistryError(f"{src}: no such file or folder in the candidate model dir {candidate_dir}")
    rels = [rel.replace(os.sep, "/") for rel, _ in out]
    if RECORD_NAME in rels:
        raise RegistryError(f"files: {RECORD_NAME} is the registry's own record; rename the candidate's file")
    return sorted(dict(zip(rels, (src for _, src in out))).items())


def _copy(src: str, dst: str) -> dict[str, Any]:
    """Copy one file (fsynced) and return its ``{"sha256", "bytes"}``."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    h, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(_BLOCK), b""):
            h.update(block)
            fout.write(block)
            size += len(block)
        fout.flush()
        os.fsync(fout.fileno())
    return {"sha256": h.hexdigest(), "bytes": size}


def _folders(root: str, rels) -> list[str]:
    """The folders below ``root`` that hold the files ``rels``, deepest first."""
    out = set()
    for rel in rels:
        parent = os.path.dirname(rel)
        while parent:
            out.add(parent)
            parent = os.path.dirname(parent)
    return [os.path.join(root, f) for f in sorted(out, key=lambda f: (-f.count("/"), f))]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _versions_root(models_dir: str) -> str:
    root = os.path.join(models_dir, VERSIONS_DIR)
    os.makedirs(root, exist_ok=True)
    return root


def _numbers(root: str) -> list[int]:
    """The version numbers of ``root``'s folders, ascending (leftovers not included)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(root, n)))


def _next_number(models_dir: str) -> int:
    """One more than any number a version folder or CHAMPION names, so that a number is
    never given twice (the newest version is never pruned)."""
    current = _champion_record(models_dir) or {}
    named = [n for n in (current.get("version"), current.get("previous")) if isinstance(n, int)]
    return 1 + max(_numbers(os.path.join(models_dir, VERSIONS_DIR)) + named, default=0)


def _remove_leftovers(root: str) -> None:
    """Remove what killed runs left: half-written and half-deleted versions."""
    for name in os.listdir(root):
        if name.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _remove(root: str, path: str, prefix: str) -> None:
    """Remove a version folder: renamed first, so a half-deleted one is never complete."""
    doomed = os.path.join(root, f"{prefix}{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    _fsync_dir(root)
    shutil.rmtree(doomed, ignore_errors=True)


def _champion_record(models_dir: str) -> Optional[dict]:
    return fs.read_json_object(os.path.join(models_dir, CHAMPION_NAME))


def _write_champion(models_dir: str, version: Version, previous: Optional[int]) -> None:
    record = os.path.join(version.path, RECORD_NAME)
    fs.write_json(os.path.join(models_dir, CHAMPION_NAME),
                  {"version": version.number, "record_sha256": _sha256(record), "promoted_at": _now(),
                   "previous": previous})


def _read_version(models_dir: str, number: int) -> Version:
    if not (isinstance(number, int) and not isinstance(number, bool)):
        raise RegistryError(f"version: expected a whole number, got {number!r}")
    path = os.path.join(models_dir, VERSIONS_DIR, str(number))
    if not os.path.isdir(path):
        raise RegistryError(f"{models_dir}: no version {number} (never added, or pruned); "
                            f"{_available(models_dir)}")
    data = fs.read_json_object(os.path.join(path, RECORD_NAME))
    if data is None or data.get("version") != number or not isinstance(data.get("files"), dict):
        raise ChecksumError(f"{os.path.join(path, RECORD_NAME)}: missing or damaged; "
                            f"{_advice(models_dir, number)}")
    return _version(models_dir, number, data, is_champion=False)


def _version(models_dir: str, number: int, data: Mapping[str, Any], *, is_champion: bool) -> Version:
    return Version(number=number, path=os.path.join(models_dir, VERSIONS_DIR, str(number)),
                   created_at=str(data.get("created_at")), files=data["files"], info=data.get("info") or {},
                   is_champion=is_champion)


def _available(models_dir: str) -> str:
    numbers = _numbers(os.path.join(models_dir, VERSIONS_DIR))
    return f"the versions there are: {', '.join(map(str, numbers))}" if numbers else "there are no versions"


def _advice(models_dir: str, broken: Optional[int]) -> str:
    """What to do about a broken version: roll back to another one, or retrain."""
    others = [n for n in _numbers(os.path.join(models_dir, VERSIONS_DIR)) if n != broken]
    if not others:
        return "retrain and promote a new model (no other version to roll back to)"
    return (f"roll back to an earlier version (registry.rollback({models_dir!r}, to=N); versions there are: "
            f"{', '.join(map(str, others))}), or retrain")

