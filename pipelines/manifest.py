"""The manifest: the contract between the write side and the read side.

``<dataset>/manifest.json`` is written last, atomically, by the run that wrote the
dataset: it publishes the run's snapshot (`pipelines.snapshots`). It holds the schema,
each split's shards (file, records, bytes, SHA-256), full-pass statistics per split, the
source fingerprint, the rows read, written, dropped and rejected, the options used, and
the snapshot (id, parent, time). Readers list shards from it and from nothing else, so a
half-written or stale output directory is never read, and the files a loaded manifest
names never change.

`load_manifest` gives a `Manifest`: a typed, read-only view of the file. Its parts are
frozen dataclasses (`Split`, `Shard`, `ShardSizing`, `NumericStatistics`,
`SequenceStatistics`, `CategoricalStatistics`, `LabelStatistics`, `SourceInfo`,
`DriftReport`), so the rest of tfstream reads
``manifest.split("train").statistics("dep_delay").mean`` instead of string keys. The
raw JSON stays available as `Manifest.data` (``tfstream inspect --json``). Fields that
older manifests (format 1) lack are None; format 2 (shards in ``<dataset>/<split>/``, no
snapshot) reads as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from typing import Any, Mapping, Optional, Union

from tfstream.pipelines import fs
from tfstream.pipelines.manifest_shape import shape_problem
from tfstream.transforms.label_scaling import LabelScaling
from tfstream.transforms.schema import Feature, Label, Schema

MANIFEST_NAME = "manifest.json"
# 2: quarantine and rejected rows in `source`, quantiles and missing counts in the
# statistics, vocabularies on the training split only. 3: immutable snapshots (shards
# under ``snapshots/<id>/``, a ``snapshot`` block). Versions 1 and 2 stay readable (the
# readers and trainers need nothing that changed).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_FIX_SHAPE = "restore the manifest.json that the run wrote, or re-run `tfstream preprocess`"


def encoding_json(schema_json: dict[str, Any], compression: str) -> dict[str, Any]:
    """The manifest's ``encoding``: how the shards store the records, for a reader that
    holds only the files (`Schema.encoding`, plus the framing and the compression).

    Example:
        >>> schema = {"features": [{"name": "x", "kind": "numeric", "dtype": "float32"}],
        ...           "label": {"name": "y", "task": "regression"}}
        >>> e = encoding_json(schema, "gzip")
        >>> e["file"], [k["key"] for k in e["keys"]], e["parse_spec"]["y"]
        ('TFRecord, gzip-compressed (tf.data.TFRecordDataset(files, compression_type="GZIP"))', ['x', 'y'], \
{'type': 'FixedLenFeature', 'shape': [], 'dtype': 'float32'})
    """
    file = ('TFRecord, gzip-compressed (tf.data.TFRecordDataset(files, compression_type="GZIP"))'
            if compression == "gzip" else "TFRecord, uncompressed (tf.data.TFRecordDataset(files))")
    return {"file": file, **Schema.from_json(schema_json).encoding()}


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


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard file of a split, as the run that wrote it described it.

    Attributes:
        file: the path relative to the dataset directory (``train/x-00000-of-00008.tfrecord``).
        records: the number of records.
        bytes: the file's size (compressed, for gzip shards).
        sha256: the file's SHA-256.
        record_bytes: the records' uncompressed size, framing excluded.
        max_record_bytes: the largest record (0 when the manifest does not say).
    """

    file: str
    records: int
    bytes: int
    sha256: str
    record_bytes: int
    max_record_bytes: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Shard":
        return cls(data["file"], int(data["records"]), int(data["bytes"]), data["sha256"],
                   int(data.get("record_bytes", 0)), int(data.get("max_record_bytes", 0)))


@dataclasses.dataclass(frozen=True)
class ShardSizing:
    """How a split's shard count was chosen (``splits.<split>.shard_sizing``; manifests
    written before shard counts followed the data have none).

    Attributes:
        source: ``config`` (``output.num_shards``), ``estimate`` (the source's size at
            ``output.target_shard_mb`` a shard), or ``default`` (``round(8 × fraction)``:
            the estimate asked for no more).
        target_shard_mb: the target shard size (None when nothing was estimated).
        estimated_rows: the split's rows, estimated (None when nothing was estimated).
        estimated_bytes: its records' uncompressed size with their framing, estimated
            (None when nothing was estimated, or no row of the sample was valid).
        rows_exact: whether the source's row count was exact, or estimated from its size.
    """

    source: str
    target_shard_mb: Optional[int] = None
    estimated_rows: Optional[int] = None
    estimated_bytes: Optional[int] = None
    rows_exact: Optional[bool] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ShardSizing":
        return cls(data["source"], data.get("target_shard_mb"), data.get("estimated_rows"),
                   data.get("estimated_bytes"), data.get("rows_exact"))


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Equal-width bins: ``len(edges) == len(counts) + 1``. ``count_error``: the most any
    count can be off (0: exact; None: not recorded, manifests before it was)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    count_error: Optional[int] = None


Number = Union[float, tuple[Optional[float], ...], None]  # a scalar's, or a vector's per component


def _number(value: Any) -> Number:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class NumericStatistics:
    """A numeric feature (scalar or fixed vector) over one split.

    ``mean``, ``variance``, ``min`` and ``max`` are numbers for a scalar and tuples (one
    per component) for a vector; ``quantiles`` the deciles 0%, 10%, ..., 100% (per
    component for a vector), each off in rank by at most ``quantiles_rank_error`` rows
    (0: exact; None: not recorded); ``histogram`` (scalars only) 20 equal-width bins. ``impute``
    is ``"mean"`` when preprocessing imputed missing or non-finite values with the
    training mean (training split only): the model does the same at serving time.
    """

    count: int
    missing: Optional[int] = None
    non_finite: Optional[int] = None
    mean: Number = None
    variance: Number = None
    min: Number = None
    max: Number = None
    quantiles: Optional[tuple] = None
    histogram: Optional[Histogram] = None
    impute: Optional[str] = None
    kind: str = "numeric"
    quantiles_rank_error: Optional[int] = None

    @property
    def is_vector(self) -> bool:
        return isinstance(self.mean, tuple)


@dataclasses.dataclass(frozen=True)
class LengthStatistics:
    """Sequence lengths over one split; ``histogram`` maps a length to its count."""

    count: int
    min: int
    max: int
    mean: float
    histogram: Mapping[int, int]
    quantiles: Optional[tuple[int, ...]] = None


@dataclasses.dataclass(frozen=True)
class SequenceStatistics:
    """A sequence feature over one split: its lengths, and the per-component moments of
    its steps (``mean``, ``variance``, ``min``, ``max``: one value per component)."""

    count: int
    length: LengthStatistics
    steps: Optional[int] = None
    missing: Optional[int] = None
    non_finite: Optional[int] = None
    truncated: Optional[int] = None
    mean: Number = None
    variance: Number = None
    min: Number = None
    max: Number = None
    impute: Optional[str] = None
    kind: str = "sequence"


@dataclasses.dataclass(frozen=True)
class CategoricalStatistics:
    """A categorical (string) feature over one split. Only the training split has a
    ``vocabulary`` (``(token, count)`` pairs, most frequent first, cut at ``vocab_size``),
    ``num_unique`` (distinct tokens seen) and ``oov_buckets`` (the out-of-vocabulary ids
    the model gives the other tokens); other splits, and older manifests, have None.
    ``vocabulary_exact`` is False for a training window's vocabulary merged from spans
    that cut theirs (`window_statistics`): its counts and ranks may be off, and
    ``num_unique`` is a lower bound; True otherwise."""

    count: int
    missing: Optional[int] = None
    vocabulary: Optional[tuple[tuple[str, int], ...]] = None
    num_unique: Optional[int] = None
    oov_buckets: Optional[int] = None
    kind: str = "categorical"
    vocabulary_exact: bool = True

    @property
    def tokens(self) -> list[str]:
        """The vocabulary's tokens, most frequent first ([] without one)."""
        return [token for token, _ in self.vocabulary or ()]


FeatureStatistics = Union[NumericStatistics, SequenceStatistics, CategoricalStatistics]


@dataclasses.dataclass(frozen=True)
class LabelStatistics:
    """The label over one split: ``class_counts`` (class name → count) for a class label,
    the moments (``count``, ``mean``, ``variance``, ...) for a regression target, and for
    a transformed one (``label.transform``) the moments of the transformed values
    (``transformed``), which standardize what the model learns."""

    class_counts: Optional[Mapping[str, int]] = None
    numbers: Optional[NumericStatistics] = None
    transformed: Optional[NumericStatistics] = None

    @property
    def count(self) -> int:
        if self.class_counts is not None:
            return sum(self.class_counts.values())
        return self.numbers.count if self.numbers is not None else 0

    def majority(self) -> Optional[str]:
        """The most frequent class (None for regression)."""
        if not self.class_counts:
            return None
        return max(self.class_counts, key=self.class_counts.get)


def _numeric(data: Mapping[str, Any]) -> NumericStatistics:
    hist = data.get("histogram")
    quantiles = data.get("quantiles")
    return NumericStatistics(
        count=int(data.get("count") or 0), missing=data.get("missing"), non_finite=data.get("non_finite"),
        mean=_number(data.get("mean")), variance=_number(data.get("variance")), min=_number(data.get("min")),
        max=_number(data.get("max")),
        quantiles=None if quantiles is None else tuple(tuple(q) if isinstance(q, list) else q for q in quantiles),
        histogram=Histogram(tuple(hist["edges"]), tuple(hist["counts"]), hist.get("count_error")) if hist else None,
        impute=data.get("impute"), quantiles_rank_error=data.get("quantiles_rank_error"))


def _length(data: Mapping[str, Any]) -> LengthStatistics:
    quantiles = data.get("quantiles")
    return LengthStatistics(
        count=int(data.get("count", 0)), min=int(data.get("min", 0)), max=int(data.get("max", 0)),
        mean=float(data.get("mean", 0.0)),
        histogram=types.MappingProxyType({int(k): int(v) for k, v in data.get("histogram", {}).items()}),
        quantiles=tuple(quantiles) if quantiles else None)


def _feature_statistics(kind: str, data: Mapping[str, Any]) -> FeatureStatistics:
    if kind == "categorical":
        vocabulary = data.get("vocabulary")
        return CategoricalStatistics(
            count=int(data.get("count") or 0), missing=data.get("missing"),
            vocabulary=None if vocabulary is None else tuple((t, int(n)) for t, n in vocabulary),
            num_unique=data.get("num_unique"), oov_buckets=data.get("oov_buckets"),
            vocabulary_exact=data.get("vocabulary_exact", True))
    if kind == "sequence":
        return SequenceStatistics(
            count=int(data.get("count") or 0), length=_length(data.get("length", {})), steps=data.get("steps"),
            missing=data.get("missing"), non_finite=data.get("non_finite"), truncated=data.get("truncated"),
            mean=_number(data.get("mean")), variance=_number(data.get("variance")), min=_number(data.get("min")),
            max=_number(data.get("max")), impute=data.get("impute"))
    return _numeric(data)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset: its shards, counts and full-pass statistics.

    Example:
        >>> m = load_manifest(dataset_dir)
        >>> train = m.split("train")
        >>> train.num_examples == sum(s.records for s in train.shards)
        True
        >>> train.statistics("dep_delay").kind
        'numeric'
    """

    name: str
    fraction: Optional[float]
    num_examples: int
    num_bytes: int
    shards: tuple[Shard, ...]
    features: Mapping[str, FeatureStatistics]
    label: LabelStatistics
    shard_sizing: Optional[ShardSizing] = None

    def statistics(self, feature: str) -> FeatureStatistics:
        """One feature's statistics over this split.

        Raises:
            ManifestError: the dataset has no such feature.
        """
        try:
            return self.features[feature]
        except KeyError:
            raise ManifestError(f"split {self.name!r}: no feature {feature!r}; the features are "
                                f"{sorted(self.features)}") from None

    @property
    def record_bytes(self) -> int:
        """Uncompressed size of the split's records."""
        return sum(s.record_bytes for s in self.shards)

    @property
    def digest(self) -> str:
        """SHA-256 over the split's shard checksums: changes whenever any shard does."""
        h = hashlib.sha256()
        for shard in self.shards:
            h.update(f"{shard.file}:{shard.sha256};".encode("utf-8"))
        return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Where the rows came from and what became of them: ``rows_read = rows_written +
    rows_dropped + rows_rejected``, with the dropped and rejected rows counted by
    ``"<reason>:<column>"`` and kept in the ``quarantine`` files (paths relative to the
    dataset directory)."""

    files: tuple[Mapping[str, Any], ...]
    sha256: str
    rows_read: int
    rows_written: int
    rows_dropped: int
    rows_rejected: Optional[int]
    dropped: Mapping[str, int]
    rejected: Mapping[str, int]
    rejected_examples: Mapping[str, str]
    quarantine: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DriftFinding:
    """One change against the previous run (see `pipelines.write.drift`)."""

    feature: str
    kind: str
    detail: str
    value: Optional[float]
    threshold: Optional[float]
    severity: str


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The comparison of this run's statistics with the previous run's."""

    against: Optional[str]
    created_at: Optional[str]
    findings: tuple[DriftFinding, ...]


def _frozen(mapping: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(mapping or {}))


class Manifest:
    """A loaded manifest: a typed, read-only view of ``manifest.json``.

    Args:
        data: the manifest's JSON content.
        root: the dataset directory (shard paths are relative to it).

    Example:
        >>> m = load_manifest(dataset_dir)
        >>> m.name, m.split_names
        ('flights', ['train', 'validation', 'eval'])
        >>> m.num_examples("train") == m.split("train").num_examples
        True
        >>> [f.name for f in m.features][:2]
        ['month', 'day']
    """

    def __init__(self, data: Mapping[str, Any], root: str):
        # Every key's JSON type, checked once here: a malformed manifest is a ManifestError
        # naming the key, never a KeyError or TypeError later (see `manifest_shape`).
        problem = shape_problem(data, written=False)
        if problem:
            raise ManifestError(f"{root}: manifest {problem}; {_FIX_SHAPE}")
        self.data = dict(data)
        self.root = root
        try:
            self.schema = Schema.from_json(data["schema"])
        except ValueError as e:
            raise ManifestError(f"{root}: manifest schema: {e}; {_FIX_SHAPE}") from None
        self._splits: dict[str, Split] = {}

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def format_version(self) -> Optional[int]:
        return self.data.get("format_version")

    @property
    def created_at(self) -> Optional[str]:
        return self.data.get("created_at")

    @property
    def snapshot(self) -> Optional[Mapping[str, Any]]:
        """The published snapshot (``id``, ``parent``, ``published_at``); None for a
        dataset written before snapshots (format 2)."""
        info = self.data.get("snapshot")
        return _frozen(info) if isinstance(info, Mapping) else None

    @property
    def window(self) -> Optional[tuple[Mapping[str, Any], ...]]:
        """The datasets of a training window (`pipelines.window.window_manifest`), oldest
        first: each one's ``dir``, ``snapshot`` id (None before snapshots) and
        ``digest``; None for a dataset's own manifest."""
        window = self.data.get("window")
        return tuple(_frozen(d) for d in window["datasets"]) if isinstance(window, Mapping) else None

    @property
    def digest(self) -> str:
        """SHA-256 of what a model trained on this dataset saw: the schema and every
        split's shard checksums and record counts (not paths or times). Two snapshots
        with the same records have the same digest; any changed record changes it.

        Example:
            >>> m = load_manifest(dataset_dir)
            >>> len(m.digest), m.digest == load_manifest(dataset_dir).digest
            (64, True)
        """
        content = {"schema": self.data["schema"],
                   "splits": {name: [[s.sha256, s.records] for s in self.split(name).shards]
                              for name in self.split_names}}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()

    @property
    def compression(self) -> str:
        return self.data["compression"]

    @property
    def encoding(self) -> dict[str, Any]:
        """How the shards store the records (`encoding_json`): every key
        of a record with its list type, dtype and shape, and the parse spec as data.
        Derived from the schema for manifests written before it was recorded."""
        return self.data.get("encoding") or encoding_json(self.data["schema"], self.compression)

    @property
    def features(self) -> tuple[Feature, ...]:
        """The stored input features (`Schema.features`)."""
        return self.schema.features

    @property
    def label(self) -> Label:
        return self.schema.label

    @property
    def split_names(self) -> list[str]:
        return list(self.data["splits"])

    @property
    def config(self) -> Mapping[str, Any]:
        """The job config that wrote the dataset, as plain data ({} when not recorded)."""
        return self.data.get("options", {}).get("config") or {}

    @property
    def train_split(self) -> str:
        """The split the statistics of a model come from: the training split of the job
        that wrote the dataset (only it carries vocabularies), else ``train``, else the
        first split."""
        configured = self.config.get("train", {}).get("train_split")
        for split in (configured, "train"):
            if split in self.data["splits"]:
                return split
        return self.split_names[0]

    def split(self, name: str) -> Split:
        """One split, typed.

        Raises:
            ManifestError: the dataset has no such split.
        """
        if name not in self._splits:
            try:
                data = self.data["splits"][name]
            except KeyError:
                raise ManifestError(f"{self.root}: no split {name!r}; the dataset has {self.split_names}") from None
            self._splits[name] = self._split(name, data)
        return self._splits[name]

    def _split(self, name: str, data: Mapping[str, Any]) -> Split:
        stats = data.get("statistics") or {}
        features = stats.get("features", {})
        kinds = {f.name: f.kind for f in self.schema.features}
        label = stats.get("label", {})
        return Split(
            name=name, fraction=data.get("fraction"), num_examples=int(data.get("num_examples", 0)),
            num_bytes=int(data.get("num_bytes", 0)),
            shards=tuple(Shard.from_json(s) for s in data.get("shards", ())),
            features=types.MappingProxyType(
                {f: _feature_statistics(kinds.get(f, st.get("kind", "numeric")), st) for f, st in features.items()}),
            label=LabelStatistics(class_counts=_frozen(label["class_counts"])) if "class_counts" in label
            else LabelStatistics(numbers=_numeric(label) if label else None,
                                 transformed=_numeric(label["transformed"]) if label.get("transformed") else None),
            shard_sizing=ShardSizing.from_json(data["shard_sizing"]) if data.get("shard_sizing") else None)

    def label_scaling(self, standardize: Optional[bool] = None) -> LabelScaling:
        """What the model learns of a regression label: ``label.transform``, then
        standardized with the training split's moments (`train_split`) of the
        transformed label. Identity for a class label.

        Args:
            standardize: standardize the label; default: as the config that wrote the
                dataset says (``label.standardize``), else true for regression.

        Raises:
            ManifestError: the training split has no label statistics to standardize with.

        Example:
            >>> load_manifest(dataset_dir).label_scaling().is_identity  # a binary label
            True
        """
        label = self.label
        if label.task != "regression":
            return LabelScaling()
        if standardize is None:
            recorded = (self.config.get("label") or {}).get("standardize")
            standardize = recorded if isinstance(recorded, bool) else True
        stats = self.split(self.train_split).label
        numbers = stats.transformed if label.transform != "none" else stats.numbers
        if standardize and (numbers is None or not numbers.count):
            what = "transformed " if label.transform != "none" else ""
            raise ManifestError(f"{self.root}: split {self.train_split!r} has no statistics of the {what}label to "
                                f"standardize it with; re-run `tfstream preprocess` (or set label.standardize: false; "
                                f"read(..., raw_labels=True) gives the stored values)")
        return LabelScaling.from_moments(label.transform, standardize, getattr(numbers, "mean", None),
                                         getattr(numbers, "variance", None))

    @property
    def splits(self) -> dict[str, Split]:
        """Split name → `Split`, in the manifest's order."""
        return {name: self.split(name) for name in self.split_names}

    def num_examples(self, split: str) -> int:
        return self.split(split).num_examples

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
        for shard in self.split(split).shards:
            path = fs.join(self.root, shard.file)
            if check:
                try:
                    size = fs.size(path)
                except FileNotFoundError:
                    raise ManifestError(
                        f"{path}: listed in the manifest but missing; re-run `tfstream preprocess`"
                    ) from None
                if size != shard.bytes:
                    raise ManifestError(
                        f"{path}: {size} bytes on disk but {shard.bytes} in the manifest; the shard "
                        f"was changed after it was written: re-run `tfstream preprocess`"
                    )
            paths.append(path)
        return paths

    @property
    def source(self) -> SourceInfo:
        src = self.data["source"]
        fingerprint = src.get("fingerprint", {})
        return SourceInfo(
            files=tuple(_frozen(f) for f in fingerprint.get("files", ())), sha256=fingerprint.get("sha256", ""),
            rows_read=int(src["rows_read"]), rows_written=int(src["rows_written"]),
            rows_dropped=int(src["rows_dropped"]), rows_rejected=src.get("rows_rejected"),
            dropped=_frozen(src.get("dropped")), rejected=_frozen(src.get("rejected")),
            rejected_examples=_frozen(src.get("rejected_examples")), quarantine=tuple(src.get("quarantine", ())))

    @property
    def drift(self) -> Optional[DriftReport]:
        """The drift check against the previous run (None when there was none)."""
        drift = self.data.get("drift")
        if not drift:
            return None
        findings = tuple(DriftFinding(f["feature"], f["kind"], f.get("detail", ""), f.get("value"),
                                      f.get("threshold"), f.get("severity", "warning"))
                         for f in drift.get("findings") or ())
        return DriftReport(drift.get("against"), drift.get("created_at"), findings)


def load_manifest(dataset_dir: str) -> Manifest:
    """Load ``<dataset_dir>/manifest.json``.

    Raises:
        ManifestError: no manifest (the dataset was never written, or its run did not
            finish), an unreadable one, one of an unknown format version, or one of the
            wrong shape (a key missing or of the wrong JSON type, a split's
            ``num_examples`` other than its shards' records; see `manifest_shape`).
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
    version = data.get("format_version") if isinstance(data, dict) else None
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ManifestError(
            f"{path}: manifest format version {version!r}; this tfstream reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: re-run `tfstream preprocess` with this version"
        )
    problem = shape_problem(data, written=True)
    if problem:
        raise ManifestError(f"{path}: {problem}; {_FIX_SHAPE}")
    return Manifest(data, dataset_dir)


def quarantine_records(dataset_dir: str, data: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """The quarantined rows of a run: one dict per row left out (file, row, action,
    reason, column, message, raw values).

    Args:
        dataset_dir: the dataset directory, or a refused run's ``rejected-run`` folder.
        data: the run's manifest content; default: ``<dataset_dir>/manifest.json``.

    Example:
        >>> rows = quarantine_records(dataset_dir)
        >>> sorted({(r["action"], r["reason"], r["column"]) for r in rows})
        [('dropped', 'missing', 'dep_delay'), ('dropped', 'missing_label', 'arr_delay')]
    """
    if data is None:
        data = json.loads(fs.read_bytes(fs.join(dataset_dir, MANIFEST_NAME)).decode("utf-8"))
    records = []
    for rel in data["source"].get("quarantine", []):
        text = fs.read_bytes(fs.join(dataset_dir, rel)).decode("utf-8")
        records += [json.loads(line) for line in text.splitlines() if line]
    return records
