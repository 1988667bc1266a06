"""How a dataset names its source files: ``source.record_paths``.

A dataset records where its rows came from in three places: the source fingerprint
(``source.fingerprint.files[].path``), the quarantine (each row's ``file`` and
``message``, and the manifest's ``rejected_examples``), and the job config it records
(``options.config``). With the writing machine's absolute paths there, a dataset shared
outside the team carries its author's directory layout (``/home/alice/...``). So every
such path goes through one `PathRecorder`:

* ``relative`` (the default): relative to ``source.root``; without one, to the source
  files' common directory (for a TFDS source, its ``data_dir``). ``pkg:`` paths in the
  config are kept: they name a package, not a directory.
* ``absolute``: the absolute path (a remote path as it is).
* ``none``: the file's name only, no directory.

The recorded config follows the same rule for the source's paths and patterns, and in
``relative`` and ``none`` mode keeps only the last name of the absolute or remote
directories it names besides (``output.dir``, ``train.dir``, ``retrain.datasets_dir``,
``retrain.models_dir``), so it still loads as a config. Reading the dataset never needs
any of them. What is not a path is
unchanged: the fingerprint's checksums and file names, so a dataset's identity (and a
span's "changed input" check) does not depend on the mode.
"""

from __future__ import annotations

import copy
import os
import posixpath
from typing import Any, Mapping, Optional, Sequence

from tfstream.pipelines.write.sources import PACKAGE_PREFIX, SourceError

MODES = ("relative", "absolute", "none")
# Directories of the writing machine that the recorded config names besides the source.
_OTHER_DIRECTORIES = (("output", "dir"), ("train", "dir"), ("retrain", "datasets_dir"), ("retrain", "models_dir"))


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _parent(path: str) -> str:
    return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


def _common_directory(directories: Sequence[str]) -> Optional[str]:
    """The deepest directory above all of ``directories`` (same scheme), or None."""
    if not directories:
        return None
    if any("://" in d for d in directories):
        schemes = {d.split("://", 1)[0] if "://" in d else "" for d in directories}
        if len(schemes) != 1 or "" in schemes:
            return None
        parts = [d.rstrip("/").split("/") for d in directories]
        common = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        return "/".join(common) if len(common) > 2 else None  # more than "gs:" + ""
    return os.path.commonpath(directories)


class PathRecorder:
    """Turns the writing machine's paths into what the dataset records (see the module
    docstring). Plain data, so Beam pickles it to its workers.

    Example:
        >>> recorder = PathRecorder("relative", "/home/alice/data")
        >>> recorder.file("/home/alice/data/2013/flights.csv.zip!flights.csv")
        '2013/flights.csv.zip!flights.csv'
        >>> PathRecorder("none", "/home/alice/data").file("/home/alice/data/2013/jan.csv")
        'jan.csv'
    """

    def __init__(self, mode: str, root: Optional[str]):
        if mode not in MODES:
            raise ValueError(f"record_paths: expected one of {MODES}, got {mode!r}")
        self.mode = mode
        self.root = root

    def file(self, name: str) -> str:
        """A source file's recorded name; ``archive.zip!member`` (a zip member, as the CSV
        reader names it) keeps its member."""
        path, bang, member = _split_member(name)
        return self._path(path) + bang + member

    def _path(self, path: str) -> str:
        if self.mode == "absolute":
            return _absolute(path)
        if self.mode == "none":
            return posixpath.basename(path) if "://" in path else os.path.basename(path)
        return self._relative(_absolute(path))

    def _relative(self, path: str) -> str:
        root = self.root
        if root is None:
            return os.path.basename(path)
        if "://" in path or "://" in root:
            prefix = root.rstrip("/") + "/"
            if path.rstrip("/") == root.rstrip("/"):
                return "."
            return path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path.rstrip("/"))
        relative = os.path.relpath(path, root)
        return relative.replace(os.sep, "/")

    def pattern(self, pattern: Optional[str]) -> Optional[str]:
        """A path or glob of the config, as the record names it (``pkg:`` kept)."""
        if pattern is None or pattern.startswith(PACKAGE_PREFIX) or self.mode == "absolute":
            return pattern
        return self._path(pattern)

    def config(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded job config (`JobConfig.to_json`): the source's paths as `pattern`
        names them, and in ``relative`` and ``none`` mode no other absolute directory."""
        out = copy.deepcopy(dict(data))
        if self.mode == "absolute":
            return out
        source = out.get("source") or {}
        if source.get("path") is not None:
            source["path"] = self.pattern(source["path"])
        if source.get("splits"):
            source["splits"] = {split: self.pattern(p) if isinstance(p, str) else [self.pattern(q) for q in p]
                                for split, p in source["splits"].items()}
        if source.get("data_dir") is not None:
            source["data_dir"] = self._path(source["data_dir"])
        if source.get("root") is not None:
            source["root"] = None  # the root itself is the layout the record leaves out
        for section, key in _OTHER_DIRECTORIES:
            block = out.get(section)
            value = block.get(key) if isinstance(block, dict) else None
            if isinstance(value, str) and ("://" in value or os.path.isabs(os.path.expanduser(value))):
                # its last name, relative: the recorded config still loads (retrain's are required)
                block[key] = posixpath.basename(value.rstrip("/")) or "."
        return out


def path_recorder(source, paths: Sequence[str]) -> PathRecorder:
    """The recorder of a job's ``source`` section for its resolved files ``paths``.

    Raises:
        SourceError: a file outside a declared ``source.root``.
    """
    mode = getattr(source, "record_paths", "relative")
    declared = getattr(source, "root", None)
    if declared is not None:
        root = _absolute(declared).rstrip("/") if "://" in declared else _absolute(declared)
        if mode == "relative":
            outside = [p for p in paths if _outside(_absolute(_split_member(p)[0]), root)]
            if outside:
                raise SourceError(
                    f"source.root {declared!r}: {len(outside)} source file(s) are not under it, e.g. {outside[0]!r}; "
                    f"set source.root to a directory above every source file, or remove it (default: the files' "
                    f"common directory)")
        return PathRecorder(mode, root)
    if getattr(source, "tfds", None):
        from tfstream.pipelines.write.tfds_source import tfds_data_dir

        return PathRecorder(mode, _absolute(tfds_data_dir(source)))
    files = [_absolute(_split_member(p)[0]) for p in paths]
    if not files:  # arrays: the config's own patterns, if any
        files = [_absolute(p) for p in _config_patterns(source)]
    return PathRecorder(mode, _common_directory([_parent(f) for f in files]))


def _config_patterns(source) -> list[str]:
    patterns = [source.path] if getattr(source, "path", None) else []
    for value in (getattr(source, "splits", None) or {}).values():
        patterns.extend([value] if isinstance(value, str) else value)
    return [p for p in patterns if not p.startswith(PACKAGE_PREFIX)]


def _split_member(name: str) -> tuple[str, str, str]:
    """``archive.zip!member`` → ``(archive.zip, "!", member)``; any other name (a "!" in
    a directory's name included) → ``(name, "", "")``."""
    zipped, bang, member = name.partition(".zip!")
    return (zipped + ".zip", "!", member) if bang and not os.path.exists(name) else (name, "", "")


def _outside(path: str, root: str) -> bool:
    if "://" in path or "://" in root:
        return not path.startswith(root.rstrip("/") + "/")
    return os.path.commonpath([path, root]) != root
