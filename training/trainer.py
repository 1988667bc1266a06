"""Train a reference model on a tfstream dataset, streaming: Keras `fit` on tf.data.

`train` reads the manifest, builds the model from the training split's statistics,
fits on the streamed training split with the validation split driving early stopping
and the best checkpoint, evaluates on the eval split, and writes into the model dir:

    model.keras          the trained model (Keras format; reload with keras.models.load_model
                         after importing tfstream.training)
    export/              SavedModel serving raw features (see training.export), on every
                         Keras backend
    checkpoints/         best weights, and a backup that lets an interrupted run resume
                         (with the dataset it trained on: dataset.json)
    learning_curves.png  loss and metrics per epoch, training and validation (from history.csv)
    logs/                TensorBoard logs of the same (train.tensorboard; `tensorboard --logdir`)
    history.csv          per-epoch metrics (with padding_efficiency for sequence jobs:
                         real ÷ padded steps of the training batches fed); a regression
                         model's loss is in the units it learns (standardized)
    metrics.json         eval metrics (in the label's units), the trivial baselines and
                         whether the model beats them (`metrics.beats`), counts, timings,
                         the dataset snapshot and digest the model was trained on, the
                         train.strategy and its replica count (``strategy``), and the
                         Keras backend it was trained on (``backend``)

The Keras backend is Keras's own choice (``KERAS_BACKEND``: tensorflow, jax, torch). The
reader is tf.data on every backend; on one other than TensorFlow it also looks the
categorical features up (`pipelines.read.lookups`), as the model cannot.

Example:
    >>> job = replace(load_config("configs/flights_dense.yaml"), train=TrainConfig(epochs=1, eval_split="eval"))
    >>> result = train(job, dataset=dataset_dir, model_dir=str(tmp_path / "model"), verbose=0)
    >>> result["epochs_run"], sorted(result["eval"]), sorted(result["baseline"])
    (1, ['accuracy', 'auc', 'log_loss', 'macro_f1'], ['eval_majority', 'train_prior'])
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence, Union

import keras

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import Manifest, ManifestError, load_manifest
from tfstream.pipelines.read.memory import MemoryBudgetError, MemoryEstimate, MiB, check_budget, estimate_input_memory
from tfstream.pipelines.read.processes import ProcessShard
from tfstream.pipelines.read.reader import read
from tfstream.pipelines.read.stages import PaddingCounter
from tfstream.pipelines.snapshots import pins
from tfstream.pipelines.window import window_manifest
from tfstream.pipelines.inspect.plots import write_learning_curves
from tfstream.training import multi_worker
from tfstream.training.callbacks import (AtomicBackupAndRestore, AtomicModelCheckpoint, EpochScalars,
                                        ResumedEarlyStopping)
from tfstream.pipelines.read.lookups import string_lookup
from tfstream.training.export import export_saved, export_serving
from tfstream.training.integrity import check_before_training, shard_errors_named
from tfstream.training.evaluation import evaluate
from tfstream.training.metrics import beats
from tfstream.training.strategy import check_strategy, model_scope
from tfstream.training.models import build_model, lookups_in_model
from tfstream.transforms.label_scaling import LabelScaling

_log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
CURVES_NAME = "learning_curves.png"


class TrainError(ValueError):
    """A dataset or model directory that training cannot use; the message says why."""


def check_model_dir(model_dir: str) -> None:
    """The model directory must be local: Keras checkpoints, logs and the export are
    written with local file APIs."""
    if "://" in model_dir:
        raise TrainError(f"model dir {model_dir!r}: train into a local directory and copy the model and its "
                         f"export afterwards (the dataset itself may be remote)")


class PaddingEfficiency(keras.callbacks.Callback):
    """Adds ``padding_efficiency`` to each epoch's logs (so to ``history.csv`` and
    ``metrics.json``): the real ÷ padded sequence steps of the training batches fed
    that epoch, from the reader's `PaddingCounter`.

    Exact for a finite training dataset (tfstream's): an epoch consumes every batch its
    iterator makes, and Keras makes the next epoch's iterator after ``on_epoch_end``.
    Put it before `keras.callbacks.CSVLogger`, which logs the keys it sees.

    Example:
        >>> counter = PaddingCounter()
        >>> ds = read(sequence_dataset_dir, "train", batch_size=64, padding_counter=counter)
        >>> model = build_model(load_manifest(sequence_dataset_dir), load_config("configs/digits_lstm.yaml"))
        >>> history = model.fit(ds, callbacks=[PaddingEfficiency(counter)], verbose=0)
        >>> 0 < history.history["padding_efficiency"][0] < 1
        True
    """

    def __init__(self, counter: PaddingCounter):
        super().__init__()
        self.counter = counter

    def on_epoch_begin(self, epoch, logs=None):
        self.counter.reset()

    def on_epoch_end(self, epoch, logs=None):
        efficiency = self.counter.efficiency()
        if logs is not None and efficiency is not None:
            logs["padding_efficiency"] = efficiency


def _plan_memory(config: JobConfig, manifest: Manifest) -> MemoryEstimate:
    """Estimate the training input pipeline's memory, log it, and hold it to
    ``reader.memory_budget_mb`` (see `pipelines.read.memory`)."""
    estimate = estimate_input_memory(manifest, config.train.train_split, config.reader)
    _log.info("input pipeline memory, estimated from the manifest:\n%s", estimate.format(terminal=sys.stderr.isatty()))
    try:
        warning = check_budget(estimate, config.reader.shuffle_buffer)
    except MemoryBudgetError as e:
        raise TrainError(str(e)) from None
    if warning:
        _log.warning("%s", warning)
    return estimate


def _datasets(config: JobConfig, manifest: Manifest, scaling: LabelScaling, process: Optional[ProcessShard] = None):
    """The training, validation and evaluation datasets, and the training set's
    `PaddingCounter` (None without sequence features).

    With ``process`` (multi_worker), the training split is this process's part, in
    batches of its share of ``reader.batch_size`` (`multi_worker`).

    Only the training split is bucketed, cached and read through ``reader.service``
    when one is set (`ReadOptions.for_evaluation`: the others are read here, in order). The
    training and validation labels are scaled as the model learns them (``scaling``);
    the evaluation's are read as stored (`evaluation.evaluate` scores in their units).
    """
    t = config.train
    counter = PaddingCounter() if manifest.schema.sequence_features else None
    share = {} if process is None else {"process": process,
                                        "batch_size": multi_worker.per_process_batch(config.reader.batch_size,
                                                                                     process.count)}
    ids = None if lookups_in_model() else t.train_split  # the model's vocabularies, looked up in the reader
    train_ds = read(manifest, t.train_split, config.reader, shuffle=True, padding_counter=counter,
                    label_scaling=scaling, categorical_ids=ids, **share)
    evaluation = config.reader.for_evaluation()

    def plain(split: str, **kwargs):
        return read(manifest, split, evaluation, shuffle=False, categorical_ids=ids, **kwargs)

    val_ds = plain(t.validation_split, label_scaling=scaling) if t.validation_split else None
    return train_ds, val_ds, plain(t.eval_split, raw_labels=True), counter


@contextlib.contextmanager
def _service_errors(service):
    """An epoch through ``reader.service`` that does not hold the split's batches (a
    worker lost or restarted mid-epoch: tf.data's service then does not promise each
    record once) is a `TrainError` that says so, not a shard to look for."""
    if service is None:
        yield
        return
    import tensorflow as tf

    try:
        yield
    except tf.errors.FailedPreconditionError as e:
        if "expected to contain" not in str(e):
            raise
        raise TrainError(f"reader.service: an epoch from the tf.data service at {service.dispatcher} did not hold the "
                         f"training split's batches (a worker lost or restarted during the epoch?); run the same "
                         f"command again (training resumes after its last finished epoch), and keep the workers up "
                         f"for the run") from e


def _read_history(path: str) -> dict[str, list[float]]:
    """The per-epoch metrics CSVLogger wrote, as columns.

    An epoch written twice (a run killed after logging it but before backing it up runs
    it again) keeps its last row; a line cut short is skipped; columns without numbers (CSVLogger writes ``NA`` for
    ``val_*`` when there is no validation split) are left out.
    """
    import csv

    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8", newline="") as f:
        # A line cut short by a kill has missing fields (None): skipped. Its epoch was not
        # backed up yet (the backup comes after the logger), so the rerun logs it again.
        by_epoch = {row["epoch"]: row for row in csv.DictReader(f)
                    if None not in row.values() and str(row.get("epoch", "")).isdigit()}
    rows = [by_epoch[e] for e in sorted(by_epoch, key=int)]
    out: dict[str, list[float]] = {}
    for key in rows[0] if rows else {}:
        try:
            out[key] = [float(row[key]) for row in rows]
        except ValueError:
            continue
    return out


def _check_dataset_identity(checkpoints: str, manifest: Manifest, dataset_dir: str, restart: bool) -> bool:
    """Whether an interrupted run in ``checkpoints`` may be resumed on ``manifest``.

    A run records the dataset it trains on (`Manifest.digest`, the snapshot id) in
    ``checkpoints/dataset.json``. Resuming on other data would continue a model on a
    mixed history: refused, unless ``restart``, which discards the interrupted run.

    Returns:
        True when there is an interrupted run to resume.

    Raises:
        TrainError: the interrupted run trained on another dataset (or did not record
            which), and ``restart`` is false.
    """
    state = [os.path.join(checkpoints, n) for n in (_BACKUP, _FITTED, _LAST)]
    for path, partner in ((state[2], state[1]), (state[1], state[2])):
        if os.path.exists(path) and not os.path.exists(partner):
            os.remove(path)  # a finished fit has both the final weights and fitted.json
    if not any(os.path.exists(p) for p in state):
        return False
    recorded = fs.read_json_object(os.path.join(checkpoints, _DATASET))
    same = recorded is not None and recorded.get("digest") == manifest.digest
    if same and not restart:
        return True
    if not restart:
        was = (f"snapshot {recorded.get('snapshot')} (digest {str(recorded.get('digest'))[:12]})"
               if recorded else "a dataset it did not record")
        now = (manifest.snapshot["id"] if manifest.snapshot else
               f"a window of {len(manifest.window)} datasets" if manifest.window else "a format-2 dataset")
        raise TrainError(
            f"{dataset_dir}: the interrupted run in {os.path.dirname(checkpoints)} trained on {was}, but the dataset "
            f"is now {now} (digest {manifest.digest[:12]}): it was republished. Resuming would mix two datasets. "
            f"Run with --restart (train(..., restart=True)) to start a fresh run on the new dataset, or train into "
            f"another --model-dir")
    import shutil

    for path in state + [os.path.join(checkpoints, n) for n in (_DATASET, _BEST)]:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    history = os.path.join(os.path.dirname(checkpoints), "history.csv")
    if os.path.exists(history):
        os.remove(history)
    _log.info("--restart: the interrupted run's checkpoints and history were removed; training from scratch")
    return False


_BACKUP, _BEST, _LAST, _FITTED, _DATASET = "backup", "best.weights.h5", "last.weights.h5", "fitted.json", "dataset.json"


def train(config: JobConfig, *, dataset: Union[str, Manifest, Sequence[Union[str, Manifest]], None] = None,
          model_dir: Optional[str] = None, verbose: int = 2, callbacks: Sequence[keras.callbacks.Callback] = (),
          restart: bool = False, warm_start: Optional[Callable[[keras.Model], Any]] = None) -> dict[str, Any]:
    """Fit, evaluate, save and export the reference model of ``config``.

    Args:
        config: the job config (the same one that wrote the dataset).
        dataset: the dataset directory, or its loaded `Manifest` (the run reads exactly
            the shards it names), or a list of them, trained on as one training window
            (`window.window_manifest`; or pass a window's manifest, to hold out the
            newest span's eval split); defaults to ``output.dir``, then
            ``runs/<name>/dataset``.
        model_dir: defaults to ``train.dir``, then ``runs/<name>/model``.
        verbose: Keras verbosity (0 silent, 2 one line per epoch).
        callbacks: more Keras callbacks (TensorBoard, ...), run after tfstream's own.
        restart: discard an interrupted run in ``model_dir`` instead of resuming it.
        warm_start: called with the new, compiled model before the first epoch of a
            fresh run (not of a resumed one, whose weights come from its backup), e.g.
            to copy a champion's weights (`training.warm_start`).

    The run reads one snapshot of the dataset, the one whose manifest it loaded, to the
    end: republishing the dataset meanwhile does not change what it reads, and the
    snapshot is pinned (`snapshots.pins`: each span's, for a window) so that no run
    removes it.

    An interrupted run resumes: run the same command again, and training continues after
    the last finished epoch (Keras `BackupAndRestore`), with the best validation loss so
    far still the one to beat, and ``history.csv`` continued; a run killed after its last
    epoch goes straight to evaluation. A resume on a dataset that was republished with
    other records is refused (``restart=True`` starts afresh).

    With ``train.strategy: multi_worker``, each process of the job calls it (see
    `multi_worker`): process 0 returns the content of ``metrics.json``, the others
    ``{"process_index", "num_processes", "epochs_run"}``; such a run does not resume.

    Returns:
        The content of ``metrics.json``; ``eval_split`` names the split scored.

    Raises:
        ConfigError: the config has no ``model:`` section.
        IntegrityError: a shard does not match the manifest (`training.integrity`): found
            before the first epoch for the validation and eval splits, named by its file
            when it breaks a read during training.
    """
    config.require_model()
    if isinstance(dataset, (list, tuple)):
        dataset = window_manifest(dataset)
    if isinstance(dataset, Manifest):
        dataset_dir = dataset.root
    else:
        dataset_dir = dataset or config.output.dir or os.path.join("runs", config.name, "dataset")
    model_dir = model_dir or config.train.dir or os.path.join("runs", config.name, "model")
    check_model_dir(model_dir)
    model_dir = os.path.abspath(model_dir)
    t = config.train
    manifest = dataset if isinstance(dataset, Manifest) else load_manifest(dataset_dir)
    origin = config.split_plan().origin
    for role, split in (("train on", t.train_split), ("validate on", t.validation_split), ("evaluate on", t.eval_split)):
        if split is not None and manifest.num_examples(split) == 0:
            more = "a larger share in split.fractions" if origin == "split.fractions" else f"rows ({origin})"
            raise TrainError(f"{dataset_dir}: the {split!r} split is empty, nothing to {role}; give it {more} (or "
                             f"more data) and re-run `tfstream preprocess`")
    if t.eval_split == t.train_split:
        _log.warning("train.eval_split is the training split %r: its score is not held out; name a split the model "
                     "does not train on", t.eval_split)
    check_strategy(t.strategy)  # e.g. mirrored on another backend: refused before anything is written
    if manifest.schema != config.schema():
        raise TrainError(
            f"{dataset_dir}: the dataset's schema differs from the config's; re-run `tfstream preprocess` "
            f"with this config"
        )
    process, processes = None, None
    if t.strategy == "multi_worker":  # training/multi_worker.py: what each process reads and writes
        process = multi_worker.start()
        processes = multi_worker.check_job(config, manifest, process)
    with pins(manifest), multi_worker.own_dir(process, model_dir) as model_dir:
        return _train(config, manifest, dataset_dir, model_dir, verbose, callbacks, restart or process is not None,
                      warm_start, process, processes)


def _export(model: keras.Model, manifest: Manifest, config: JobConfig, model_dir: str,
            scaling: LabelScaling) -> str:
    """The serving export (raw features) of the trained model, saved in ``model_dir``."""
    path = os.path.join(model_dir, "export")
    if lookups_in_model():
        return export_serving(model, path, scaling)
    statistics = manifest.split(config.train.train_split).features
    lookups = {f.name: string_lookup(f.name, statistics[f.name]).get_config()
               for f in manifest.schema.features if f.kind == "categorical"}
    _log.info("exporting on the TensorFlow backend (the model trained on %s; see training.export)",
              keras.backend.backend())
    try:
        return export_saved(os.path.join(model_dir, "model.keras"), path, scaling, lookups)
    except RuntimeError as e:
        raise TrainError(str(e)) from None


def _train(config: JobConfig, manifest: Manifest, dataset_dir: str, model_dir: str, verbose: int,
           callbacks: Sequence[keras.callbacks.Callback], restart: bool,
           warm_start: Optional[Callable[[keras.Model], Any]] = None,
           process: Optional[ProcessShard] = None, processes: Optional[dict] = None) -> dict[str, Any]:
    t = config.train
    checkpoints = os.path.join(model_dir, "checkpoints")
    resuming = _check_dataset_identity(checkpoints, manifest, dataset_dir, restart)  # cheap: first
    check_before_training(manifest, config)  # a broken shard fails now, not after the last epoch
    memory = _plan_memory(config, manifest)
    try:  # what the model learns of a regression label, and the export inverts
        scaling = manifest.label_scaling(config.label.standardized)
    except ManifestError as e:
        raise TrainError(str(e)) from None
    os.makedirs(checkpoints, exist_ok=True)  # refused runs write nothing
    identity = {"digest": manifest.digest, "snapshot": manifest.snapshot["id"] if manifest.snapshot else None,
                "dataset_dir": os.path.abspath(dataset_dir)}
    if manifest.window is not None:  # each span's snapshot and digest
        identity["window"] = [dict(d) for d in manifest.window]
    if not resuming:
        fs.write_json(os.path.join(checkpoints, _DATASET), identity)
    keras.utils.set_random_seed(t.seed)

    with model_scope(t.strategy) as distribution:  # mirrored: the model's variables on every device
        model = build_model(manifest, config)
        if warm_start is not None and not resuming:
            warm_start(model)
    train_ds, val_ds, eval_ds, padding = _datasets(config, manifest, scaling, process)
    train_ds, val_ds = distribution.prepare(model, train_ds, val_ds)  # mirrored: no replica without examples
    monitor = "val_loss" if val_ds is not None else "loss"
    best = os.path.join(checkpoints, _BEST)
    backup = os.path.join(checkpoints, _BACKUP)
    last = os.path.join(checkpoints, _LAST)
    history_csv = os.path.join(model_dir, "history.csv")
    if not resuming and os.path.exists(best):
        os.remove(best)  # a finished earlier run's: this run must earn its own
    fitted = fs.read_json_object(os.path.join(checkpoints, _FITTED)) if resuming else None
    if fitted is not None and os.path.exists(last):
        # Killed after its last epoch (Keras had removed its backup): the weights are kept.
        model.load_weights(last)
        fit_seconds, epochs_now, resumed_at = fitted["fit_seconds"], fitted["epochs_now"], fitted["resumed_at_epoch"]
        _log.info("the interrupted run had finished training; evaluating it")
    else:
        earlier = _read_history(history_csv).get(monitor) if resuming else None
        own = [
            # First: the loggers after it see padding_efficiency.
            *([PaddingEfficiency(padding)] if padding is not None else []),
            # Before the history and the backup, not between them: a kill there repeats the epoch.
            *([EpochScalars(os.path.join(model_dir, "logs"))] if t.tensorboard else []),
            # After a resume, the best epoch before the interruption is still the one to beat.
            AtomicModelCheckpoint(best, monitor=monitor, save_best_only=True, save_weights_only=True,
                                  initial_value_threshold=min(earlier) if earlier else None),
            keras.callbacks.CSVLogger(history_csv, append=resuming),
            # After a resume, its count goes on from the history.
            *([ResumedEarlyStopping(earlier or (), monitor=monitor, patience=t.early_stopping_patience)]
              if t.early_stopping_patience else []),
            # Last: an epoch is backed up only once it is checkpointed and logged, so a resume
            # never skips an epoch that the history and the best checkpoint have not seen.
            # (Not multi_worker's: every process would have to restore the same state.)
            *([AtomicBackupAndRestore(backup)] if process is None else []),
        ]

        start = time.perf_counter()
        # A shard that breaks a read is named by its file; through a service (its workers
        # read the training split), a lost worker's epoch is named instead.
        checked = (t.validation_split,) if config.reader.service else (t.train_split, t.validation_split)
        with _service_errors(config.reader.service), shard_errors_named(manifest, checked):
            history = model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, callbacks=[*own, *callbacks],
                                shuffle=False, verbose=verbose)
        fit_seconds = time.perf_counter() - start
        epochs_now = len(history.epoch)
        resumed_at = int(history.epoch[0]) + 1 if resuming and history.epoch else None
        # Keras has removed its backup: keep the final weights until the run is complete
        # (written whole, then named; fitted.json, written last, says they are final).
        model.save_weights(f"{last[:-len('.weights.h5')]}.tmp.weights.h5")
        os.replace(f"{last[:-len('.weights.h5')]}.tmp.weights.h5", last)
        fs.write_json(os.path.join(checkpoints, _FITTED), {"fit_seconds": fit_seconds, "epochs_now": epochs_now,
                                                         "resumed_at_epoch": resumed_at})
    if process is not None:  # process 0 goes on alone, with a model of its own; the others are done
        model = multi_worker.local_model(model, manifest, config)
        if process.index:
            multi_worker.finished(process)  # until process 0 has written the model, its metrics and export
            return {"process_index": process.index, "num_processes": process.count, "epochs_run": epochs_now}
    if os.path.exists(best):
        model.load_weights(best)  # the best epoch on the validation split, not the last
    model = distribution.one_device(model)  # mirrored: evaluated, saved and exported on one device
    with shard_errors_named(manifest, (t.eval_split,)):
        scores, baselines = evaluate(model, eval_ds, manifest, t.train_split, scaling)

    model.save(os.path.join(model_dir, "model.keras"))
    export_dir = _export(model, manifest, config, model_dir, scaling)

    full = _read_history(history_csv)  # every epoch, across resumes
    if full:
        write_learning_curves(full, os.path.join(model_dir, CURVES_NAME),
                              title=f"{config.name}: {config.require_model().type} model")
    epochs_run = len(full.get("loss", []))
    monitored = full.get(monitor, [])
    metrics = {
        "job": config.name,
        "task": config.label.task,
        "model": config.require_model().type,
        "backend": keras.backend.backend(),
        "dataset_dir": os.path.abspath(dataset_dir),
        "dataset": identity,
        "model_dir": model_dir,
        "export_dir": export_dir,
        "examples": {s: manifest.num_examples(s) for s in manifest.split_names},
        "train_split": t.train_split,
        "validation_split": t.validation_split,
        "eval_split": t.eval_split,  # the split scored: "eval" holds its metrics, whatever its name
        "epochs_run": epochs_run,
        "resumed_at_epoch": resumed_at,
        "best_epoch": int(monitored.index(min(monitored))) + 1 if monitored else epochs_run,
        "input_memory_mib": {"expected": round(memory.expected / MiB, 1), "worst": round(memory.worst / MiB, 1),
                             "budget": config.reader.memory_budget_mb},
        "fit_seconds": round(fit_seconds, 2),
        # (Records fed: multi_worker leaves a few out; parallel_epochs feeds each several times, not counted.)
        "train_examples_per_second": round((processes["records_per_epoch"] if processes else
                                            manifest.num_examples(t.train_split)) * epochs_now / fit_seconds, 1)
        if fit_seconds and epochs_now else None,
        "strategy": distribution.record(),  # train.strategy and its replica count
        "eval": scores,
        "baseline": baselines,
        "beats": beats(config.label.task, scores, baselines, t.min_improvement),
        "label_scaling": None if scaling.is_identity else scaling.to_json(),
        "history": {k: v for k, v in full.items() if k != "epoch"},
        **({"multi_worker": processes} if processes is not None else {}),
    }
    metrics["beats_baseline"] = metrics["beats"]["beats"]
    fs.write_json(os.path.join(model_dir, METRICS_NAME), metrics)
    for name in (_FITTED, _LAST, _DATASET):  # complete: a rerun is a new run
        path = os.path.join(checkpoints, name)
        if os.path.exists(path):
            os.remove(path)
    if process is not None:
        multi_worker.finished(process)  # the other processes wait for this one
    return metrics
