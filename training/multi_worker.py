"""``train.strategy: multi_worker``: one training run across several processes (on one
machine or many), on Keras 3's own multi-process path for the JAX backend:
``jax.distributed.initialize`` and ``keras.distribution.DataParallel`` over every
process's devices. Not TensorFlow's ``MultiWorkerMirroredStrategy``, whose Keras 3
``fit`` fails (keras-team/keras#20585, tensorflow/tensorflow#72388).

Each process runs the same ``tfstream train`` command; the launcher (a shell loop,
Slurm, a Kubernetes Indexed Job) tells it its place in the environment:

    TFSTREAM_COORDINATOR     host:port of process 0's coordinator (all processes give the same)
    TFSTREAM_NUM_PROCESSES   how many processes train together
    TFSTREAM_PROCESS_ID      this process's index, 0..TFSTREAM_NUM_PROCESSES-1

A launcher that sets other variables is pointed at them with ``<NAME>_FROM``: e.g.
``TFSTREAM_PROCESS_ID_FROM=SLURM_PROCID`` and ``TFSTREAM_NUM_PROCESSES_FROM=SLURM_NTASKS``
on Slurm, ``TFSTREAM_PROCESS_ID_FROM=JOB_COMPLETION_INDEX`` in a Kubernetes Indexed Job.
A variable set directly wins over its ``_FROM``.

How a run goes (`training.trainer` calls `start`, `per_process_batch`, `local_model`):

* **data**: ``reader.batch_size`` is the global batch: each process reads batches of
  ``batch_size / processes`` records of its own part of the training split
  (`pipelines.read.processes`: by file, or by record), the same number of steps on
  every process, and Keras puts them together into one global batch per step
  (``DataParallel(auto_shard_dataset=False)``: Keras' own sharding, which reads the
  whole split on every process and keeps every n-th batch, is off, so records are
  dealt once). The validation split is read whole by every process (the same batches
  on each: its figures are the whole split's). The reader's tf.data auto-sharding
  does not apply (Keras does not distribute tf.data datasets through tf.distribute).
* **weights**: every process starts from the same seed (``train.seed``) and applies
  the same averaged gradients, so all end with the same weights.
* **writes**: only process 0 writes the model directory (model.keras, export,
  metrics.json, history.csv, checkpoints, logs, learning curves). The others write
  their callbacks' files into a scratch directory that is removed at the end.
* **evaluation**: after ``fit``, process 0 copies the weights into a model of its own
  (no collectives) and scores the whole eval split alone, as a single process does;
  the others are done.
* **no resume**: every process would have to restore the same epoch and weights; a
  rerun of an interrupted multi_worker run starts afresh (``--restart``). A process
  that dies takes the others down (JAX's heartbeat timeout: 93 s measured here, after a
  SIGKILL of process 1 of 2): rerun the whole job.
* **your callbacks** (``train(callbacks=...)``) run on every process: one that writes
  files should check ``jax.process_index() == 0``.

Example:
    >>> settings_from_env({"TFSTREAM_COORDINATOR": "10.0.0.1:1234", "TFSTREAM_NUM_PROCESSES": "4",
    ...                    "SLURM_PROCID": "2", "TFSTREAM_PROCESS_ID_FROM": "SLURM_PROCID"})
    ProcessSettings(coordinator='10.0.0.1:1234', num_processes=4, process_id=2)
    >>> per_process_batch(256, 4)
    64
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Iterator, Mapping, Optional

if TYPE_CHECKING:  # (the reader imports TensorFlow, which imports Keras: not before use_jax_backend)
    from tfstream.pipelines.read.processes import ProcessShard

_log = logging.getLogger(__name__)

COORDINATOR = "TFSTREAM_COORDINATOR"
NUM_PROCESSES = "TFSTREAM_NUM_PROCESSES"
PROCESS_ID = "TFSTREAM_PROCESS_ID"
FROM = "_FROM"  # TFSTREAM_PROCESS_ID_FROM=SLURM_PROCID: read the value from that variable

_EXAMPLE = (f"e.g. {COORDINATOR}=10.0.0.1:12345 {NUM_PROCESSES}=2 {PROCESS_ID}=0 tfstream train ... on the first "
            f"process and {PROCESS_ID}=1 on the second; or name a launcher's variable: {PROCESS_ID}{FROM}="
            f"SLURM_PROCID, {NUM_PROCESSES}{FROM}=SLURM_NTASKS (README: Scaling out)")


class MultiWorkerError(ValueError):
    """A multi_worker run that cannot start; the message says what to set (the CLI prints
    it as one line and exits with status 2, a problem with the input)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    """Where this process is in the job (from the environment: `settings_from_env`)."""

    coordinator: str
    num_processes: int
    process_id: int


def _value(environ: Mapping[str, str], name: str) -> tuple[str, str]:
    """``(the variable read, its value)``: ``name``, else the one ``name_FROM`` names."""
    if environ.get(name, "").strip():
        return name, environ[name].strip()
    other = environ.get(name + FROM, "").strip()
    if other:
        if not environ.get(other, "").strip():
            raise MultiWorkerError(f"{name}{FROM}={other}, but {other} is not set in this process's environment: "
                                   f"set {name} itself, or run under the launcher that sets {other}; {_EXAMPLE}")
        return other, environ[other].strip()
    raise MultiWorkerError(f"train.strategy: multi_worker needs {name} (or {name}{FROM} naming the variable that "
                           f"holds it), which is not set: every process of the job must be told the coordinator's "
                           f"host:port, the number of processes and its own index; {_EXAMPLE}")


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> ProcessSettings:
    """This process's settings, from ``TFSTREAM_*`` (or the variables their ``_FROM`` name).

    Raises:
        MultiWorkerError: a variable unset, not a number, or out of range (the message
            names it and gives an example).
    """
    environ = os.environ if environ is None else environ
    where, coordinator = _value(environ, COORDINATOR)
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MultiWorkerError(f"{where}={coordinator!r}: expected host:port of process 0 (a port it can listen "
                               f"on, that every process can reach), e.g. 10.0.0.1:12345 or node-0.trainers:12345")
    numbers = {}
    for name in (NUM_PROCESSES, PROCESS_ID):
        where, text = _value(environ, name)
        if not text.isdigit():
            raise MultiWorkerError(f"{where}={text!r}: expected a whole number; {_EXAMPLE}")
        numbers[name] = int(text)
    count, index = numbers[NUM_PROCESSES], numbers[PROCESS_ID]
    if count < 1 or index >= count:
        raise MultiWorkerError(f"{PROCESS_ID}={index} with {NUM_PROCESSES}={count}: the index must be 0.."
                               f"{count - 1} (one process each, process 0 hosts the coordinator); {_EXAMPLE}")
    return ProcessSettings(coordinator, count, index)


def refuse(command: str) -> None:
    """Refuse ``command`` (``run``, ``retrain``) for a multi_worker config: each process of
    the job runs `train` alone, on a dataset written beforehand.

    Raises:
        MultiWorkerError: always.
    """
    raise MultiWorkerError(f"train.strategy: multi_worker trains with several processes, each running `tfstream "
                           f"train` (or train()) on a dataset written beforehand; `{command}` would run in every "
                           f"process: write the dataset once (`tfstream preprocess`), then launch `tfstream train` "
                           f"in each process (README: Scaling out), or set train.strategy: default for `{command}`")


def use_jax_backend(environ=None) -> None:
    """Select Keras' JAX backend for a multi_worker run, before Keras is imported (the CLI
    calls it before importing TensorFlow, which imports Keras).

    Raises:
        MultiWorkerError: ``KERAS_BACKEND`` names another backend, or Keras is already
            imported with another one.
    """
    environ = os.environ if environ is None else environ
    backend = environ.get("KERAS_BACKEND", "").strip()
    if backend and backend != "jax":
        raise MultiWorkerError(f"train.strategy: multi_worker runs on Keras' JAX backend, but KERAS_BACKEND="
                               f"{backend}: unset it (tfstream then selects jax) or set KERAS_BACKEND=jax; on the "
                               f"TensorFlow backend, train on one machine with train.strategy: mirrored or default")
    if not backend:
        environ["KERAS_BACKEND"] = "jax"
    if "keras" in sys.modules:
        _check_backend()


def _check_backend() -> None:
    import keras

    if keras.backend.backend() != "jax":
        raise MultiWorkerError(f"train.strategy: multi_worker runs on Keras' JAX backend, but Keras was imported "
                               f"with the {keras.backend.backend()} backend: set KERAS_BACKEND=jax before Python "
                               f"imports Keras or TensorFlow (`KERAS_BACKEND=jax python train.py`), and install JAX "
                               f"(pip install 'tfstream[jax]')")


def start(environ: Optional[Mapping[str, str]] = None) -> "ProcessShard":
    """Join the job: ``jax.distributed.initialize`` with this process's settings (once
    per Python process; CPU collectives over gloo), then Keras' ``DataParallel`` over
    every process's devices, with Keras' own dataset sharding off.

    Returns:
        This process's index and the process count, for the reader.
    """
    settings = settings_from_env(environ)
    _check_backend()
    import jax
    import keras

    from tfstream.pipelines.read.processes import ProcessShard

    if not jax.distributed.is_initialized():
        _log.info("multi_worker: process %d of %d, coordinator %s", settings.process_id, settings.num_processes,
                  settings.coordinator)
        # CPU devices talk through gloo (the default CPU collectives do not cross
        # processes); accelerators use their own (NCCL...), whatever this says.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=settings.coordinator, num_processes=settings.num_processes,
                                   process_id=settings.process_id)
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False))
    return ProcessShard(jax.process_index(), jax.process_count())


def check_job(config, manifest, process: "ProcessShard") -> dict:
    """Refuse what a multi_worker run cannot train (every process must feed batches of
    the same shape at every step), and say what an epoch covers.

    Returns:
        For metrics.json (``multi_worker``): the process count, the global and
        per-process batch, how the training split is dealt (by file or by record), and
        the records each process, and all, take per epoch; ``left_out``: the split's
        records no process takes in an epoch (`pipelines.read.processes`).
    """
    count, batch = process.count, config.reader.batch_size
    if batch % count:
        raise MultiWorkerError(f"reader.batch_size: {batch} is the global batch, split evenly across the {count} "
                               f"processes; make it a multiple of {count}")
    if manifest.schema.sequence_features or config.reader.max_tokens_per_batch is not None:
        raise MultiWorkerError("train.strategy: multi_worker trains datasets without sequence features, in batches "
                               "of reader.batch_size (each process's batches must have the same shape at every "
                               "step; sequences are padded per batch): train this job with train.strategy: default "
                               "or mirrored")
    plan = process.plan(manifest, config.train.train_split)
    summary = {"processes": count, "batch_size": batch, "batch_size_per_process": per_process_batch(batch, count),
               "train_split_by": "record" if plan.by_record else "file", "records_per_process": plan.records,
               "records_per_epoch": count * plan.records, "left_out": plan.left_out}
    _log.info("multi_worker: process %d of %d; the %r split is dealt by %s: each epoch, every process takes %d "
              "records in batches of %d (%d records in all, %d left out)", process.index, count,
              config.train.train_split, summary["train_split_by"], plan.records, summary["batch_size_per_process"],
              summary["records_per_epoch"], plan.left_out)
    return summary


@contextlib.contextmanager
def own_dir(process: "Optional[ProcessShard]", model_dir: str) -> Iterator[str]:
    """The directory this process writes its model files to: the model dir for process 0
    (and a single process), a scratch directory, removed at the end, for the others."""
    if process is None or process.index == 0:
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"tfstream-process{process.index}-") as scratch:
        yield scratch


def per_process_batch(batch_size: int, count: int) -> int:
    """Each process's batch: the global ``reader.batch_size`` split evenly."""
    return batch_size // count


def local_model(model, manifest, config):
    """A copy of a trained model that lives on this process alone (no collectives):
    for the evaluation, the save and the export, which only process 0 does."""
    import keras

    from tfstream.training.models import build_model

    weights = model.get_weights()  # every process holds the same (replicated) weights
    keras.distribution.set_distribution(None)
    local = build_model(manifest, config)
    local.optimizer.build(local.trainable_variables)  # as the trained one's (its checkpoints hold them)
    local.set_weights(weights)
    return local


def finished(process: "ProcessShard") -> None:
    """Wait until every process gets here: the others wait for process 0, which alone
    evaluates, saves and exports after training. A process that ends before then would
    wait in JAX's shutdown barrier, which gives up after 5 minutes, and would exit 0
    whatever process 0's fate; here, a process 0 that fails fails the others too (JAX's
    heartbeat)."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"tfstream: the {process.count} processes are done")

