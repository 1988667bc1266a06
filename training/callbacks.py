"""Keras callbacks that survive a kill (SIGKILL, a pod evicted, the power cut) at any
moment, so that an interrupted run resumes: the trainer's checkpoints and backup.

Keras writes its checkpoint and its backup in place: a kill while ``best.weights.h5`` or
the backup's ``latest.weights.h5`` is being written leaves a truncated HDF5 file, and
the next run fails on it ("bad object header version number"; found by
tests/test_retrain.py's SIGKILL). Here each file is written whole under a temporary
name and then renamed (``os.replace``, atomic on POSIX). The backup's weights are
renamed before its epoch record, so a kill between the two repeats one epoch, never
skips one: the run still ends with the same number of epochs.

`ResumedEarlyStopping` goes on counting where the interrupted run stopped.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import keras

_SUFFIX = ".weights.h5"


def _temporary(path: str) -> str:
    """A sibling name Keras accepts for weights (it must end in ``.weights.h5``)."""
    return f"{path[:-len(_SUFFIX)]}.tmp{_SUFFIX}" if path.endswith(_SUFFIX) else f"{path}.tmp"


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` whose file is written whole, then renamed: a
    reader (or a resumed run) finds the previous checkpoint or the new one, never half
    of one. Takes a fixed ``filepath`` (no ``{epoch}`` fields)."""

    def _save_model(self, epoch, batch, logs):
        final = self.filepath
        temporary = _temporary(final)
        if os.path.exists(temporary):
            os.remove(temporary)  # a killed run's
        self.filepath = temporary
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self.filepath = final
        if os.path.exists(temporary):  # saved: this epoch improved
            os.replace(temporary, final)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose weights and epoch record are each written
    whole, then renamed, weights first (see the module docstring)."""

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = _temporary(self._weights_path)
        self.model.save_weights(filepath=weights, overwrite=True)
        record = f"{self._training_metadata_path}.tmp"
        with open(record, "w", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(weights, self._weights_path)
        os.replace(record, self._training_metadata_path)


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` that goes on counting where an interrupted run
    stopped: the best value so far and the epochs since it are replayed from the
    monitored values of the epochs already run (``history.csv``), so that a resumed run
    stops after the same epoch as an uninterrupted one would (Keras's own restarts its
    patience at every ``fit``).

    Example:
        >>> stop = ResumedEarlyStopping([0.5, 0.4, 0.45, 0.46], monitor="val_loss", patience=3)
        >>> stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        >>> stop.on_train_begin()
        >>> stop.best, stop.wait
        (0.4, 2)
    """

    def __init__(self, earlier: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        self.earlier = [float(v) for v in earlier]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.earlier and self.monitor_op is None:
            self._set_monitor_op()
        for value in self.earlier:  # as on_epoch_end counts (no baseline, no best weights here)
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.wait = value, 0


class EpochScalars(keras.callbacks.Callback):
    """TensorBoard logs of the per-epoch metrics: ``log_dir/train`` and
    ``log_dir/validation`` hold ``epoch_<metric>`` scalars (``epoch_loss``...), the
    layout and tags of `keras.callbacks.TensorBoard`'s, so ``tensorboard --logdir
    log_dir`` shows them.

    Written by hand because Keras's callback needs the ``tensorboard`` pip package
    (``tf.summary.scalar`` raises ``TBNotInstalledError`` without it; TensorFlow 2.21 no
    longer depends on it): TensorFlow's own ``tf.summary.write`` writes the same scalar
    events, with the scalars plugin's metadata. The step is the epoch's index (0-based,
    as Keras's), so a resumed run goes on where the interrupted one stopped.

    Example:
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> _ = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=2, verbose=0,
        ...               callbacks=[EpochScalars(str(tmp_path / "logs"))])
        >>> sorted(os.listdir(tmp_path / "logs"))
        ['train']
    """

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writers: dict = {}

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_train_begin(self, logs=None):
        self._writer("train")  # opened now, not in the first epoch's end

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        metadata = tf.compat.v1.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"  # what TensorBoard's scalars dashboard reads
        for key, value in (logs or {}).items():
            run, name = ("validation", key[len("val_"):]) if key.startswith("val_") else ("train", key)
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue  # not a scalar (Keras logs only numbers, another callback might not)
            with self._writer(run).as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(value, tf.float32), step=epoch, metadata=metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
