"""Scheduled retraining (`tfstream retrain`): new spans in, a better model out; safe to run
from cron at any time, any number of times, twice at once.

One run, holding the registry's lock (`registry.lock`; a second run exits at once with
status 75, or waits):

1. **Spans** (`spans`): find the spans of ``source.path`` (``{span}``), take the newest
   ``retrain.window``, and (re)write the dataset of each one that is new or changed.
2. **Window**: read the window's datasets as one (`pipelines.window.window_manifest`):
   training and validation splits of every span, statistics merged from their
   manifests; the eval split is the newest span's alone: the gate's held-out data.
3. **Nothing new?** When the window's records and the training settings are those of the
   last decided run (or of the champion), the run ends here, writing nothing but its
   line in ``runs.jsonl``.
4. **Candidate**: trained into ``<registry>/candidate/`` (`trainer.train`): warm-started
   from the champion when compatible (`warm_start`), resumed from its backup when an
   earlier run was killed while training it.
5. **Gate** (`gate.decide`): the candidate and the champion scored on the same data.
6. **Promotion** (`registry.promote`): copied into ``versions/<n>/`` with checksums,
   loaded back and checked on a batch of the gate data, then ``CHAMPION`` replaced
   atomically. Old versions are pruned to ``retrain.keep_versions``.
7. **Record**: one JSON line appended to ``<registry>/runs.jsonl``.

Exit statuses (`EXIT_CODES`): 0 promoted, 10 kept the champion, 11 nothing new, 75 the
lock is held, 2 a problem with the input (config, source, dataset), 3 a file that does
not match its checksum, 1 anything else.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from typing import Any, Optional, Union

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import Manifest
from tfstream.pipelines.snapshots import pins
from tfstream.training import registry
from tfstream.training.gate import decide, paired_improvement, z_for
from tfstream.exit_status import exit_status
from tfstream.spans import describe, ensure_dataset, find_spans

_log = logging.getLogger(__name__)

EXIT_PROMOTED, EXIT_KEPT, EXIT_NOTHING_NEW, EXIT_BUSY = 0, 10, 11, 75
EXIT_CODES = {EXIT_PROMOTED: "promoted", EXIT_KEPT: "kept champion", EXIT_NOTHING_NEW: "nothing new",
              EXIT_BUSY: "lock held", 2: "failed: input", 3: "failed: checksum", 1: "failed"}
RUNS_NAME = "runs.jsonl"
CANDIDATE_DIR = "candidate"
WINDOW_NAME = "window.json"
WARM_START_NAME = "warm_start.json"
VERSION_FILES = ("model.keras", "export", "metrics.json", "history.csv", WINDOW_NAME)


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """A run's outcome: its exit status and its record (the ``runs.jsonl`` line)."""

    exit_code: int
    record: dict[str, Any]

    @property
    def decision(self) -> str:
        return EXIT_CODES.get(self.exit_code, "failed")


def registry_dir(config: JobConfig) -> str:
    """``<retrain.models_dir>/<name>``."""
    return os.path.join(config.require_retrain().models_dir, config.name)


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for dist in ("tfstream", "tensorflow", "keras", "apache-beam"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def append_record(directory: str, record: dict[str, Any]) -> None:
    """Append one line to ``runs.jsonl`` with a single ``write`` on a file opened for
    appending (O_APPEND: concurrent runs' lines never interleave on a local disk)."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, RUNS_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        line = json.dumps(record, separators=(",", ":"), default=str)
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(directory: str) -> list[dict[str, Any]]:
    """Every run's record, oldest first (a line cut short by a kill is skipped)."""
    path = os.path.join(directory, RUNS_NAME)
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _training_key(config: JobConfig, window: Manifest) -> str:
    """What a decision is about: the window's records and the settings that make the
    candidate (features, for their vocabulary sizes and out-of-vocabulary buckets;
    model, train, reader, label, retrain). The same key twice: nothing new."""
    data = config.to_json()
    settings = {k: data[k] for k in ("features", "model", "train", "reader", "label", "retrain")}
    content = json.dumps({"window": window.digest, "settings": settings}, sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _decided_before(directory: str, key: str, champion: Optional[registry.Version]) -> Optional[str]:
    if champion is not None and champion.info.get("key") == key:
        return f"the champion (version {champion.number}) was trained on this window with these settings"
    for record in reversed(read_records(directory)):
        if record.get("exit_code") in (EXIT_PROMOTED, EXIT_KEPT):
            if record.get("key") == key:
                return f"run {record.get('run_id')} already decided on this window ({record.get('decision')})"
            return None
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def retrain(config: JobConfig, *, until: Optional[str] = None, wait: Union[bool, float] = False,
            verbose: int = 2) -> RetrainResult:
    """One scheduled retraining run (see the module docstring).

    Args:
        config: a job config with a ``retrain:`` section.
        until: ignore spans whose name sorts after this one (a backfill, or a
            scheduler's logical date).
        wait: when another run holds the lock, wait for it (True), or for at most this
            many seconds, instead of exiting at once with status 75.
        verbose: Keras verbosity while the candidate trains.

    Returns:
        The exit status and the run's record (also appended to ``runs.jsonl``).

    Raises:
        Exception: whatever failed, after its record (with the exit status
            `exit_status` gives it) was appended.
        TrainError: Keras runs on a backend other than TensorFlow (refused before
            anything is read or written).
    """
    config.require_retrain()
    if config.train.strategy == "multi_worker":  # every process would retrain, gate and promote
        from tfstream.training.multi_worker import refuse

        refuse("retrain")
    import keras

    if keras.backend.backend() != "tensorflow":
        from tfstream.training.trainer import TrainError

        # The gate scores the champion and the candidate on the stream the reader gives
        # the TensorFlow models (raw strings); off TensorFlow each model takes ids from its
        # own training window's vocabularies (`pipelines.read.lookups`), not yet threaded here.
        raise TrainError(f"tfstream retrain runs on the TensorFlow backend only; KERAS_BACKEND is "
                         f"{keras.backend.backend()!r}. Unset KERAS_BACKEND (or set it to tensorflow) for "
                         f"retraining; `tfstream train` runs on {keras.backend.backend()}")
    directory = registry_dir(config)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "run_id": f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}",
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "until": until, "pid": os.getpid(), "durations": {}, "versions": _versions(),
    }
    def finish(code: int, error: Optional[BaseException] = None) -> None:
        if error is not None:
            record.update(decision=EXIT_CODES.get(code, "failed"), reason=f"{type(error).__name__}: {error}"[:2000])
        record["exit_code"] = code
        record.setdefault("decision", EXIT_CODES.get(code, "failed"))
        record["durations"]["total"] = round(time.perf_counter() - started, 2)
        record["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        append_record(directory, record)

    try:
        hold = registry.lock(directory, wait=wait)
        hold.__enter__()
    except Exception as e:  # noqa: BLE001 - the lock is held (75): recorded, then raised again
        finish(exit_status(e), e)
        raise
    try:
        # The record is written while the lock is held: a run that waited for this one
        # sees its decision.
        try:
            code = _run(config, directory, until, wait, verbose, record)
        except Exception as e:  # noqa: BLE001 - recorded, then raised again for the caller
            finish(exit_status(e), e)
            raise
        finish(code)
    finally:
        hold.__exit__(None, None, None)
    return RetrainResult(code, record)


def _timed(record: dict[str, Any], name: str, since: float) -> float:
    now = time.perf_counter()
    record["durations"][name] = round(now - since, 2)
    return now


def _run(config: JobConfig, directory: str, until: Optional[str], wait: Union[bool, float], verbose: int,
         record: dict[str, Any]) -> int:
    from tfstream.pipelines.window import window_manifest

    r = config.retrain
    t0 = time.perf_counter()
    spans = find_spans(config.source.path, until=until)
    if not spans:
        raise FileNotFoundError(f"no span matches source.path {config.source.path!r}"
                                + (f" up to {until!r}" if until else "") + "; put each span's files in a folder "
                                "of its own (e.g. raw/span=2024-06-01/part-0.csv)")
    record["spans_seen"] = [s.name for s in spans]
    window_spans = spans[-r.window:]
    datasets = [ensure_dataset(config, span, wait=wait) for span in window_spans]
    record["window"] = [s.name for s in window_spans]
    record["datasets"] = describe(datasets)
    t0 = _timed(record, "preprocess", t0)

    # The gate's data: the newest span's eval split alone (train.eval_split, whatever its name).
    window = window_manifest([d.dataset_dir for d in datasets],
                             held_out={config.train.eval_split: datasets[-1].dataset_dir})
    champion = registry.champion(directory)
    if champion is not None:  # every file against its checksum, before it is used (exit status 3)
        champion = registry.verify_version(directory, champion.number)
    key = record["key"] = _training_key(config, window)
    record["champion_version"] = champion.number if champion else None
    why = _decided_before(directory, key, champion)
    if why is not None:
        record["reason"] = f"nothing new: {why}"
        _log.info("nothing new: %s", why)
        return EXIT_NOTHING_NEW

    with pins(window):  # every span's snapshot, until the candidate is promoted or not
        return _candidate(config, directory, window, datasets, champion, key, verbose, record)


def _candidate(config: JobConfig, directory: str, window: Manifest, datasets, champion: Optional[registry.Version],
               key: str, verbose: int, record: dict[str, Any]) -> int:
    """Train the candidate, gate it, promote it or not."""
    r = config.retrain
    t0 = time.perf_counter()
    candidate_dir = os.path.join(directory, CANDIDATE_DIR)
    window, warm = _warm_start(config, window, champion)
    metrics = _train_candidate(config, window, candidate_dir, key, warm, verbose)
    record["warm_start"] = {"used": warm["used"], "reason": warm["reason"]}  # as training left it
    record["resumed_at_epoch"] = metrics.get("resumed_at_epoch")
    record["epochs_run"] = metrics.get("epochs_run")
    t0 = _timed(record, "train", t0)

    metric = r.gate_metric(config.label.task)
    record["metric"] = metric
    record["gate_split"] = {"span": datasets[-1].span, "split": config.train.eval_split,
                            "examples": window.num_examples(config.train.eval_split)}
    gate = _Gate(config, window)
    _, labels, candidate_losses = gate.score(_load(os.path.join(candidate_dir, "model.keras")),
                                             metrics.get("label_scaling"))
    vs_baseline = paired_improvement(gate.baseline(labels), candidate_losses)
    record["candidate"] = {"scores": metrics["eval"], "beats_baseline": metrics["beats"],
                           "vs_baseline": vs_baseline.to_json() if vs_baseline else None}
    champion_scores, problem, vs_champion = None, None, None
    champion_failed = None
    if champion is not None:
        try:
            champion_scores, problem, champion_losses = _score_champion(gate, champion)
        except ChampionNotScored as e:
            champion_failed = problem = f"its evaluation failed: {e}"
            champion_losses = None
        if champion_losses is not None:
            vs_champion = paired_improvement(champion_losses, candidate_losses)
    record["champion"] = None if champion is None else {
        "version": champion.number, "scores": champion_scores, "problem": problem,
        "vs_champion": vs_champion.to_json() if vs_champion else None}
    drift = _drift(config, champion, datasets[-1].dataset_dir)
    record["drift"] = drift
    t0 = _timed(record, "evaluate", t0)

    decision = decide(metric, candidate=metrics["eval"], champion=champion_scores,
                      beats_baseline=bool(metrics["beats"]["beats"]), min_improvement=r.min_improvement,
                      drift_errors=[d["detail"] for d in drift if d["severity"] == "error"],
                      champion_problem=problem, vs_baseline=vs_baseline, vs_champion=vs_champion,
                      z_needed=z_for(r.significance), champion_failed=champion_failed is not None)
    record["reason"] = decision.reason
    if not decision.promote:
        _log.info("kept the champion: %s", decision.reason)
        shutil.rmtree(candidate_dir, ignore_errors=True)
        return EXIT_KEPT
    info = {"key": key, "run_id": record["run_id"], "window": record["window"], "metric": metric,
            "value": metrics["eval"].get(metric), "window_digest": window.digest, "warm_start": warm["used"],
            "model": config.to_json()["model"]}
    try:
        version = registry.promote(directory, candidate_dir, VERSION_FILES, info,
                                   check=lambda path: _check_version(path, gate), keep=r.keep_versions)
    except (VersionCheckError, OSError, ValueError) as e:  # loaded back, it failed: never the champion
        record["reason"] = f"{decision.reason}; but the promoted copy failed its check, so it was removed: {e}"
        _log.warning("not promoted: %s", record["reason"])
        shutil.rmtree(candidate_dir, ignore_errors=True)
        return EXIT_KEPT
    record["promoted_version"] = version.number
    record["export_dir"] = version.export_dir
    _timed(record, "promote", t0)
    _log.info("promoted version %d: %s", version.number, decision.reason)
    shutil.rmtree(candidate_dir, ignore_errors=True)
    return EXIT_PROMOTED


def _warm_start(config: JobConfig, window: Manifest, champion: Optional[registry.Version]):
    """The window (with the champion's vocabularies extended, when warm-starting) and the
    warm start decision ``{used, reason, model_path, champion}``."""
    from tfstream.training.warm_start import compatibility, extend_vocabularies

    number = champion.number if champion is not None else None
    if not config.retrain.warm_start:
        return window, {"used": False, "reason": "retrain.warm_start is false", "model_path": None, "champion": number}
    if champion is None:
        return window, {"used": False, "reason": "no champion yet", "model_path": None, "champion": None}
    champion_data = fs.read_json_object(os.path.join(champion.path, WINDOW_NAME))
    if champion_data is None:
        return window, {"used": False, "reason": f"version {champion.number} has no {WINDOW_NAME}",
                        "model_path": None, "champion": number}
    problem = compatibility(champion_data, window.data, config.train.train_split,
                            champion_model=champion.info.get("model"), model=config.to_json()["model"])
    if problem is not None:
        return window, {"used": False, "reason": problem, "model_path": None, "champion": number}
    data = extend_vocabularies(window.data, champion_data, config.train.train_split, config.vocabulary_sizes())
    warm = {"used": True, "reason": f"from version {champion.number}: same schema and model; vocabularies extended",
            "model_path": os.path.join(champion.path, "model.keras"), "champion": number}
    return Manifest(data, window.root), warm


def _train_candidate(config: JobConfig, window: Manifest, candidate_dir: str, key: str, warm: dict,
                     verbose: int) -> dict[str, Any]:
    """Train (or resume, or reuse) the candidate in ``candidate_dir``; its metrics.

    An interrupted run's candidate is resumed (or, when it finished training, reused)
    only when it was started on the same window, settings and champion (its
    ``warm_start.json``); otherwise it is discarded. A resumed candidate keeps the warm
    start decision its first run recorded.
    """
    from tfstream.training.trainer import train

    state = fs.read_json_object(os.path.join(candidate_dir, WARM_START_NAME)) or {}
    same = state.get("key") == key and state.get("champion") == warm.get("champion")
    done = fs.read_json_object(os.path.join(candidate_dir, "metrics.json"))
    if same:
        warm.update(used=state.get("used", warm["used"]), reason=state.get("reason", warm["reason"]))
        if done is not None and os.path.exists(os.path.join(candidate_dir, "model.keras")):
            _log.info("the candidate of this window was trained by an interrupted run: reusing it")
            return done
    elif os.path.isdir(candidate_dir):  # another window's, or another champion's: start afresh
        shutil.rmtree(candidate_dir)
    os.makedirs(candidate_dir, exist_ok=True)
    fs.write_json(os.path.join(candidate_dir, WINDOW_NAME), dict(window.data))

    def remember() -> None:
        fs.write_json(os.path.join(candidate_dir, WARM_START_NAME), {"key": key, "champion": warm.get("champion"),
                                                                     "used": warm["used"], "reason": warm["reason"]})

    if not same:
        remember()

    def start_from_champion(model) -> None:
        from tfstream.training.warm_start import IncompatibleModel, transfer_weights

        try:
            copied = transfer_weights(model, _load(warm["model_path"]))
        except (IncompatibleModel, OSError, ValueError) as e:
            warm.update(used=False, reason=f"the champion's weights do not fit: {e}; trained from scratch")
        else:
            _log.info("warm start: %d weight tensors copied from the champion", copied)
        remember()

    return train(config, dataset=window, model_dir=candidate_dir, verbose=verbose,
                 warm_start=start_from_champion if warm["used"] else None)


class ChampionNotScored(RuntimeError):
    """The champion could not be scored on the gate data (it did not load, or its
    evaluation raised): the gate then promotes nothing."""


class VersionCheckError(RuntimeError):
    """A promoted copy that does not load back or score as the candidate did."""


class _Gate:
    """The gate data (the window's eval split: the newest span's) and its scoring."""

    def __init__(self, config: JobConfig, window: Manifest):
        self.config, self.window = config, window

    def dataset(self):
        from tfstream.pipelines.read.reader import read

        return read(self.window, self.config.train.eval_split, self.config.reader.for_evaluation(), shuffle=False,
                    raw_labels=True)

    def score(self, model, scaling: Optional[dict]):
        """A model's scores on the gate data (`evaluation.evaluate`), its labels and its
        per-example losses (`evaluation.example_losses`), in the stored order."""
        import numpy as np

        from tfstream.training.evaluation import evaluate
        from tfstream.transforms.label_scaling import LabelScaling

        batches: list = []
        scores = evaluate(model, self.dataset(), self.window, self.config.train.train_split,
                          LabelScaling(**scaling) if scaling else None, losses=batches)[0]
        labels = np.concatenate([b[0].reshape(-1) for b in batches]) if batches else np.zeros(0)
        losses = np.concatenate([b[1].reshape(-1) for b in batches]) if batches else np.zeros(0)
        return scores, labels, losses

    def baseline(self, labels):
        """The trivial baseline's per-example losses on ``labels``."""
        from tfstream.training.evaluation import baseline_losses

        return baseline_losses(labels, self.window, self.config.train.train_split)


def _load(model_path: str):
    """A saved `model.keras` (tfstream's layers registered)."""
    import keras

    import tfstream.training.models  # noqa: F401 - registers tfstream's layers

    return keras.models.load_model(model_path)


def _score_champion(gate: _Gate, champion: registry.Version):
    """``(scores, None, per-example losses)`` of the champion on the gate data, or
    ``(None, why, None)`` when it cannot be scored on it (its schema differs, or its
    evaluation failed)."""
    trained_on = fs.read_json_object(os.path.join(champion.path, WINDOW_NAME)) or {}
    if trained_on.get("schema") != gate.window.data["schema"]:
        return None, "its schema differs from the dataset's", None
    try:  # (its files were verified against their checksums when the run began)
        scores, _, losses = gate.score(_load(os.path.join(champion.path, "model.keras")),
                                       (champion.metrics() or {}).get("label_scaling"))
    except Exception as e:  # noqa: BLE001 - recorded; the gate then promotes nothing
        raise ChampionNotScored(f"{type(e).__name__}: {str(e)[:300]}") from e
    return scores, None, losses


def _drift(config: JobConfig, champion: Optional[registry.Version], newest_dir: str) -> list[dict[str, Any]]:
    """Drift of the newest span's training split from the champion's training window."""
    if champion is None or config.validation.drift.on_drift == "ignore":
        return []
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.write.drift import compare_manifests

    trained_on = fs.read_json_object(os.path.join(champion.path, WINDOW_NAME))
    if trained_on is None:
        return []
    findings = compare_manifests(Manifest(trained_on, champion.path), load_manifest(newest_dir),
                                 config.train.train_split, config.validation.drift)
    return [dataclasses.asdict(f) for f in findings]


def _check_version(version_dir: str, gate: _Gate) -> None:
    """A version loads back, and its model and its serving export agree on a batch of
    the gate data with finite outputs; otherwise it is not made the champion."""
    import numpy as np

    from tfstream.training.export import load_serving
    from tfstream.transforms.label_scaling import LabelScaling

    try:
        model = _load(os.path.join(version_dir, "model.keras"))
        serve = load_serving(os.path.join(version_dir, "export"))
        features, _ = next(iter(gate.dataset()))
        out = np.asarray(model.predict_on_batch(features), dtype=np.float64)
        scaling = (fs.read_json_object(os.path.join(version_dir, "metrics.json")) or {}).get("label_scaling")
        if scaling:
            out = LabelScaling(**scaling).invert(out)
        served = np.asarray(serve({k: v.numpy() for k, v in features.items()}), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - whatever breaks loading it back, it is not promoted
        raise VersionCheckError(f"{version_dir}: does not load back and predict: {type(e).__name__}: "
                                f"{str(e)[:300]}") from e
    if not (np.all(np.isfinite(out)) and np.all(np.isfinite(served))):
        raise VersionCheckError(f"{version_dir}: the model gives non-finite outputs on the gate data")
    if not np.allclose(served.reshape(out.shape), out, rtol=1e-4, atol=1e-5):
        raise VersionCheckError(f"{version_dir}: the serving export and the model disagree on the gate data (largest "
                                f"difference {float(np.max(np.abs(served.reshape(out.shape) - out))):.3g})")
