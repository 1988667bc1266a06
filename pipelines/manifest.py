"""The manifest: the contract between the write side and the read side.

``<dataset>/manifest.json`` is written last, atomically, by the Beam pipeline. It holds
the schema, each split's shards (file, records, bytes, SHA-256), full-pass statistics
per split, the source fingerprint, the rows read and dropped, and the options used.
Readers list shards from it and from nothing else, so a half-written or stale output
directory is never read: while a run is in progress there is no manifest.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from tfstream.pipelines import fs
from tfstream.transforms.schema import Schema

MANIFEST_NAME = "manifest.json"
PREVIOUS_MANIFEST_NAME = "manifest.previous.json"
# 2: quarantine and rejected rows in `source`, quantiles and missing counts in the
# statistics, vocabularies on the training split only. Version 1 datasets stay readable
# (the readers and trainers need nothing that changed).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ManifestError(ValueError):
    """A dataset directory that cannot be read; the message says how to fix it."""


def write_manifest(dataset_dir: str, data: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` atomically (a temporary file, then a rename).

    Returns:
        The manifest's path.
    """
    final = fs.join(dataset_dir, MANIFEST_NAME)
    fs.write_atomic(final, json.dumps(data, indent=1).encode("utf-8"))
    return final


def retire_manifest(dataset_dir: str) -> bool:
    """Move an existing manifest aside (to ``manifest.previous.json``) before a finished
    run replaces the shards, so that the directory has no manifest, and is not readable,
    until the new manifest is written. Returns whether there was one."""
    current = fs.join(dataset_dir, MANIFEST_NAME)
    if not fs.exists(current):
        return False
    fs.rename(current, fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME))
    return True


def restore_manifest(dataset_dir: str) -> None:
    """Undo `retire_manifest` (a run failed while replacing the shards)."""
    fs.rename(fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME), fs.join(dataset_dir, MANIFEST_NAME))


class Manifest:
    """A loaded manifest.

    Example:
        >>> m = load_manifest("runs/flights/dataset")            # doctest: +SKIP
        >>> m.num_examples("train"), len(m.shard_paths("train"))  # doctest: +SKIP
        (262084, 6)
    """

    def __init__(self, data: Mapping[str, Any], root: str):
        self.data = dict(data)
        self.root = root
        self.schema = Schema.from_json(data["schema"])

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def compression(self) -> str:
        return self.data["compression"]

    @property
    def split_names(self) -> list[str]:
        return list(self.data["splits"])

    def split(self, split: str) -> dict[str, Any]:
        try:
            return self.data["splits"][split]
        except KeyError:
            raise ManifestError(
                f"{self.root}: no split {split!r}; the dataset has {self.split_names}"
            ) from None

    def num_examples(self, split: str) -> int:
        return int(self.split(split)["num_examples"])

    def statistics(self, split: str) -> dict[str, Any]:
        return self.split(split)["statistics"]

    def shards(self, split: str) -> list[dict[str, Any]]:
        return list(self.split(split)["shards"])

    def shard_paths(self, split: str, *, check: bool = True) -> list[str]:
        """Absolute paths of the split's shards, in shard order.

        Args:
            check: verify that each file exists with the size the manifest records
                (cheap: one stat per shard), so stale or truncated shards are caught
                before training starts.

        Raises:
            ManifestError: a shard is missing or has the wrong size.
        """
        paths = []
        for shard in self.shards(split):
            path = fs.join(self.root, shard["file"])
            if check:
                try:
                    size = fs.size(path)
                except FileNotFoundError:
                    raise ManifestError(
                        f"{path}: listed in the manifest but missing; re-run `tfstream preprocess`"
                    ) from None
                if size != shard["bytes"]:
                    raise ManifestError(
                        f"{path}: {size} bytes on disk but {shard['bytes']} in the manifest; the shard "
                        f"was changed after it was written: re-run `tfstream preprocess`"
                    )
            paths.append(path)
        return paths

    def split_digest(self, split: str) -> str:
        """SHA-256 over the split's shard checksums: changes whenever any shard does."""
        import hashlib

        h = hashlib.sha256()
        for shard in self.shards(split):
            h.update(f"{shard['file']}:{shard['sha256']};".encode("utf-8"))
        return h.hexdigest()

    def split_bytes(self, split: str) -> int:
        """Uncompressed size of the split's records."""
        return sum(int(s["record_bytes"]) for s in self.shards(split))


def load_manifest(dataset_dir: str) -> Manifest:
    """Load ``<dataset_dir>/manifest.json``.

    Raises:
        ManifestError: no manifest (the dataset was never written, or its run did not
            finish), an unreadable one, or one of an unknown format version.
    """
    path = fs.join(dataset_dir, MANIFEST_NAME)
    if not fs.exists(path):
        raise ManifestError(
            f"{dataset_dir}: no {MANIFEST_NAME}; write the dataset with `tfstream preprocess` "
            f"(a run that did not finish leaves no manifest)"
        )
    try:
        data = json.loads(fs.read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid JSON ({e}); re-run `tfstream preprocess`") from e
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ManifestError(
            f"{path}: manifest format version {version!r}; this tfstream reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: re-run `tfstream preprocess` with this version"
        )
    return Manifest(data, dataset_dir)


def quarantine_records(dataset_dir: str, data: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """The quarantined rows of a run: one dict per row left out (file, row, action,
    reason, column, message, raw values).

    Args:
        dataset_dir: the dataset directory, or a refused run's ``rejected-run`` folder.
        data: the run's manifest content; default: ``<dataset_dir>/manifest.json``.

    Example:
        >>> rows = quarantine_records("runs/flights/dataset")            # doctest: +SKIP
        >>> rows[0]["reason"], rows[0]["column"]                          # doctest: +SKIP
        ('missing', 'dep_delay')
    """
    if data is None:
        data = json.loads(fs.read_bytes(fs.join(dataset_dir, MANIFEST_NAME)).decode("utf-8"))
    records = []
    for rel in data["source"].get("quarantine", []):
        text = fs.read_bytes(fs.join(dataset_dir, rel)).decode("utf-8")
        records += [json.loads(line) for line in text.splitlines() if line]
    return records
