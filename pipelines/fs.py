"""The few file operations tfstream needs, on local paths and on remote file systems.

Local paths use plain Python (no heavy imports on the read side). Paths with a scheme
(``gs://``, ``s3://``, ...) go through Beam's `FileSystems`, the same layer the Beam
pipeline writes through, so a dataset on any Beam file system can be read back.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional


def is_remote(path: str) -> bool:
    return "://" in path


def _beam_fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def join(root: str, *parts: str) -> str:
    return _beam_fs().join(root, *parts) if is_remote(root) else os.path.join(root, *parts)


def exists(path: str) -> bool:
    return _beam_fs().exists(path) if is_remote(path) else os.path.exists(path)


def size(path: str) -> int:
    """File size in bytes; raises FileNotFoundError when there is no such file."""
    if is_remote(path):
        results = _beam_fs().match([path])[0].metadata_list
        if not results:
            raise FileNotFoundError(path)
        return results[0].size_in_bytes
    return os.path.getsize(path)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        with _beam_fs().open(path, compression_type="uncompressed") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def write_atomic(path: str, data: bytes) -> None:
    """Write a whole file so that readers see either the old content or all of the new.

    Local, and remote file systems with directories (HDFS): a temporary file, then a
    rename over ``path`` (`os.replace` locally, after an fsync). Object stores (GCS, S3,
    Azure: no directories): one object written whole, since an upload becomes visible
    only once complete and replaces the object atomically, so there is no moment
    without the file (a rename there is a copy and a delete).
    """
    if is_remote(path):
        filesystems = _beam_fs()
        if not filesystems.get_filesystem(path).has_dirs():
            with filesystems.create(path) as f:
                f.write(data)
            return
        parent, name = path.rsplit("/", 1)
        temp = join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
        with filesystems.create(temp) as f:
            f.write(data)
        if filesystems.exists(path):
            filesystems.delete([path])
        filesystems.rename([temp], [path])
        return
    parent, name = os.path.split(path)
    temp = join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)  # atomic on POSIX
    try:  # and durable: the rename itself reaches the disk
        fd = os.open(parent or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_object(path: str) -> Optional[dict]:
    """A JSON object file's content, or None when it is missing, unreadable, not JSON
    or not an object (a state file of tfstream's own: absent and damaged mean the same)."""
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str, data: Any) -> None:
    """`write_atomic` of ``data`` as indented JSON."""
    write_atomic(path, json.dumps(data, indent=1).encode("utf-8"))


def rename(src: str, dst: str) -> None:
    """Move a file, replacing ``dst``; the target folder is created when needed."""
    if is_remote(src):
        fs = _beam_fs()
        if fs.exists(dst):
            fs.delete([dst])
        fs.rename([src], [dst])
    else:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        os.replace(src, dst)


def makedirs(path: str) -> None:
    """Create a folder and its parents (object stores need none)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def glob(pattern: str) -> list[str]:
    if is_remote(pattern):
        return [m.path for r in _beam_fs().match([pattern]) for m in r.metadata_list]
    import glob as _glob

    return _glob.glob(pattern)


def remove_tree(path: str) -> None:
    """Delete a folder and everything in it; a missing folder is not an error.

    On object stores a folder is a name prefix: there is no object to test for, so the
    prefix is deleted directly.
    """
    if is_remote(path):
        from apache_beam.io.filesystem import BeamIOError

        try:
            _beam_fs().delete([path.rstrip("/") + "/"])
        except BeamIOError:
            pass
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def remove(path: str) -> None:
    """Delete one file; a missing file is not an error."""
    if is_remote(path):
        if _beam_fs().exists(path):
            _beam_fs().delete([path])
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def open_read(path: str):
    """A binary file object to stream a file from (local, or any Beam file system).

    Raises:
        FileNotFoundError: there is no such file (on any file system).
    """
    if is_remote(path):
        if not exists(path):  # Beam raises its own BeamIOError, or fails at the first read
            raise FileNotFoundError(path)
        return _beam_fs().open(path, compression_type="uncompressed")
    return open(path, "rb")
