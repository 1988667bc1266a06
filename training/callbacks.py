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
