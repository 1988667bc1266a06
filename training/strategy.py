"""``train.strategy: mirrored``: data-parallel training over this machine's devices with
`tf.distribute.MirroredStrategy` (synchronous: one copy of the model per device, the
gradients summed across the copies at every step).

The trainer builds and compiles the model, and warm-starts it, inside `model_scope`, so
its variables are mirrored; Keras 3 `fit` then distributes the tf.data stream itself
(``strategy.experimental_distribute_dataset``), splitting each batch across the
replicas. ``reader.batch_size`` is therefore the **global** batch: 256 over 2 devices
is 128 per device. A batch that does not split evenly (bucketing's smaller batches, the
last partial batch) is split as evenly as it goes; one smaller than the number of
replicas is filled with zero-weight copies (`fill_to_replicas`). The reader, and its
`PaddingCounter`, see the global batches: the padding efficiency is the one-device
value. `Distribution.prepare` readies the model and the datasets for fit, and the
trainer evaluates, saves and exports a one-device copy (`Distribution.one_device`).

The devices are every visible GPU, else the logical CPU devices. A CPU is one logical
device unless ``TFSTREAM_CPU_DEVICES=N`` (an environment variable) splits it into N
before TensorFlow initializes its devices (`split_cpu_devices`; the CLI applies it
right after importing TensorFlow): how the tests run a mirrored fit on a machine
without GPUs. It needs the TensorFlow backend (`check_strategy`).

Example:
    >>> with model_scope("default") as distribution:
    ...     pass
    >>> distribution.record()
    {'name': 'default', 'replicas': 1}
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
from typing import Iterator, Optional

_log = logging.getLogger(__name__)

CPU_DEVICES_ENV = "TFSTREAM_CPU_DEVICES"


def split_cpu_devices() -> Optional[int]:
    """Split the CPU into ``TFSTREAM_CPU_DEVICES`` logical devices (unset: nothing to do).

    Must run before TensorFlow initializes its devices (its first op); later it only
    checks that the split is in place.

    Returns:
        The number of logical CPU devices asked for, or None when the variable is unset.

    Raises:
        ValueError: the variable is not a whole number from 1 to 64, or TensorFlow's
            devices were initialized with another number of CPU devices.
    """
    value = os.environ.get(CPU_DEVICES_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise ValueError(f"{CPU_DEVICES_ENV}={value[:20]!r}: expected a whole number of logical CPU devices from 1 "
                         f"to 64 (e.g. {CPU_DEVICES_ENV}=2), or unset it")
    n = int(value)
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # devices already initialized: fine if they are what was asked for
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise ValueError(f"{CPU_DEVICES_ENV}={n}: TensorFlow had already initialized its devices with {have} "
                             f"logical CPU device(s); set the variable before the process runs TensorFlow (the "
                             f"`tfstream` CLI applies it at start-up; in Python, call "
                             f"tfstream.training.strategy.split_cpu_devices() before anything else)") from None
    return n


TESTED_KERAS = "3.15"  # mirrored and multi_worker were built and tested on Keras 3.15.1


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def _tensorflow_off_the_gpus() -> None:
    """On a Keras backend other than TensorFlow, the reader's TensorFlow (tf.data) has no
    use for the GPUs, and by default it would reserve most of their memory, which the
    backend (JAX preallocates too) then lacks. Hidden before TensorFlow's first op; a
    process whose TensorFlow has already started its devices keeps them (logged)."""
    import tensorflow as tf

    if not tf.config.get_visible_devices("GPU"):  # none, or hidden already (the CLI, then train(), call this)
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        _log.warning("TensorFlow has already started its GPU devices: it shares the GPUs with the %s backend; "
                     "hide them from it before it runs anything: tf.config.set_visible_devices([], 'GPU')",
                     os.environ.get("KERAS_BACKEND", "other"))


def check_strategy(name: str) -> None:
    """Refuse a strategy this process cannot run (before the run writes anything).

    Raises:
        TrainError: ``mirrored`` on a Keras backend other than TensorFlow, or a bad
            ``TFSTREAM_CPU_DEVICES``.
    """
    import keras

    from tfstream.training.trainer import TrainError  # (the trainer imports this module)

    backend = keras.backend.backend()
    if backend != "tensorflow":
        _tensorflow_off_the_gpus()
    if name != "default" and _version(keras.__version__) < _version(TESTED_KERAS):
        raise TrainError(f"train.strategy: {name} needs Keras {TESTED_KERAS} or later (it relies on how that "
                         f"release distributes fit), but Keras {keras.__version__} is installed; run "
                         f"`pip install 'keras>={TESTED_KERAS}'`, or set train.strategy: default")
    if name != "mirrored":
        return
    if backend != "tensorflow":
        raise TrainError(
            f"train.strategy: mirrored is tf.distribute.MirroredStrategy, which needs the TensorFlow backend, but "
            f"KERAS_BACKEND is {backend!r}; run with KERAS_BACKEND=tensorflow, or on {backend} set train.strategy: "
            f"multi_worker (Keras' DataParallel on the JAX backend) or default (one device)")
    try:
        split_cpu_devices()
    except ValueError as e:
        raise TrainError(str(e)) from None


@functools.lru_cache(maxsize=None)  # one per process: its devices are fixed once TensorFlow has started
def mirrored_strategy():
    """A `tf.distribute.MirroredStrategy` over every visible GPU, else every logical
    CPU device (TensorFlow's default would take one CPU only)."""
    import tensorflow as tf

    split_cpu_devices()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
              [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    _log.info("train.strategy: mirrored over %d device(s): %s%s", strategy.num_replicas_in_sync, ", ".join(devices),
              "" if len(devices) > 1 else f" (one device: nothing to split; {CPU_DEVICES_ENV}=N splits a CPU into N)")
    return strategy


def fill_to_replicas(replicas: int):
    """A stage that gives each ``(features, label)`` batch sample weights (1), and fills
    a batch of fewer than ``replicas`` examples up to ``replicas`` with copies of its
    first example weighted 0, so that no replica gets an empty batch.

    An empty per-replica batch should add nothing to a step, but TensorFlow's
    convolution fails on one ("input depth must be evenly divisible by filter depth":
    an empty ``Conv1D`` input comes back unconvolved). The copies weigh 0 in the loss
    and the metrics, so the gradient is what the empty replicas would have given (the
    real examples' losses, each over its own replica); the weights of 1 change nothing
    else (Keras' mean loss over a batch is the same with them).

    Example:
        >>> import tensorflow as tf
        >>> ds = tf.data.Dataset.from_tensor_slices(({"x": [[1.0], [2.0], [3.0]]}, [0, 1, 0])).batch(2)
        >>> [(w.numpy().tolist(), y.numpy().tolist()) for _, y, w in fill_to_replicas(2)(ds)]
        [([1.0, 1.0], [0, 1]), ([1.0, 0.0], [0, 0])]
    """
    import tensorflow as tf

    def fill(features, label):
        n = tf.shape(tf.nest.flatten(label)[0])[0]
        weight = tf.ones([n], tf.float32)
        short = tf.maximum(replicas - n, 0)
        take = tf.concat([tf.range(n), tf.zeros([short], tf.int32)], 0)  # the first example, again
        features, label = tf.nest.map_structure(lambda t: tf.gather(t, take), (features, label))
        return features, label, tf.concat([weight, tf.zeros([short], tf.float32)], 0)

    def stage(ds):
        return ds.map(fill)

    return stage


def _build_from_one_replica(model) -> None:
    """Make ``model`` (built under a strategy) build its metrics and loss from the first
    replica's share of fit's first batch.

    Keras 3 (3.15.1, `TensorFlowTrainer._maybe_symbolic_build`) averages that batch over
    the replicas (``strategy.reduce("MEAN", ...)``) only to learn its shapes and dtypes,
    and the average of string features fails ("Value for attr 'T' of string is not in
    the list of allowed values ... AddN"): a tabular job's categorical features. One
    replica's share has the same dtypes and shapes but the batch size. This replaces
    the method on this model only, with Keras's own steps bar the average.
    """
    import tensorflow as tf

    strategy = model.distribute_strategy

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:  # (as Keras: its epoch iterator yields (step, step, iterator))
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0],
                                                   next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How the trainer spreads a run over devices (what `model_scope` yields)."""

    name: str  # train.strategy
    replicas: Optional[int]  # None: another strategy's, counted by its own code
    devices: tuple[str, ...] = ()

    def record(self) -> dict:
        """What metrics.json records."""
        return {"name": self.name, "replicas": self.replicas, **({"devices": list(self.devices)} if self.devices
                                                                 else {})}

    def prepare(self, model, *datasets) -> tuple:
        """``datasets`` (None: None) as fit should take them for ``model``: under
        ``mirrored``, with sample weights and no batch smaller than the replica count
        (`fill_to_replicas`), and ``model`` set to build from one replica's batch
        (`_build_from_one_replica`)."""
        if self.name != "mirrored":
            return datasets
        _build_from_one_replica(model)
        with model.distribute_strategy.scope():  # (the optimizer's variables are mirrored too)
            # Keras gives sample weights to weighted_metrics only: the copies must not count.
            compiled = model.get_compile_config()
            model.compile_from_config({**compiled, "metrics": None, "weighted_metrics": compiled.get("metrics")})
        return tuple(None if ds is None else ds.apply(fill_to_replicas(self.replicas)) for ds in datasets)

    def one_device(self, model):
        """``model``, or under ``mirrored`` a copy of it on one device, with its weights
        and compile settings: what the trainer evaluates, saves and exports.

        A mirrored model's ``predict_on_batch`` (what `evaluation.evaluate` calls) runs
        the whole batch on every replica and concatenates their outputs: 16 rows for a
        batch of 8 over 2 devices (Keras 3.15.1). Its export would serve (checked), but
        the copy is what was evaluated, so the saved model and the export are the copy.
        """
        if self.name != "mirrored":
            return model
        import keras

        copy = keras.models.clone_model(model)  # outside the scope: ordinary variables
        copy.set_weights(model.get_weights())
        copy.compile_from_config(model.get_compile_config())
        return copy


@contextlib.contextmanager
def model_scope(name: str) -> Iterator[Distribution]:
    """Build (and compile, and warm-start) the model in this block: under ``mirrored``,
    inside the strategy's scope, so its variables are mirrored; otherwise as is.

    Yields:
        The run's `Distribution`.
    """
    if name == "default":
        yield Distribution(name, 1)
    elif name == "mirrored":
        check_strategy(name)
        strategy = mirrored_strategy()
        with strategy.scope():
            yield Distribution(name, strategy.num_replicas_in_sync, tuple(strategy.extended.worker_devices))
    else:
        yield Distribution(name, None)
