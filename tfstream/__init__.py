"""tfstream: raw data → Apache Beam → sharded TFRecords → tf.data → Keras ``fit``,
without ever holding the whole dataset in memory.

The public API is these eleven names (``import tfstream as tfs``)::

    tfs.load_config(path)                  a YAML job config (or a dict) → JobConfig
    tfs.preprocess(config, output_dir)     raw source → dataset, with Apache Beam
    tfs.write_arrays(config, arrays, dir)  NumPy arrays (memmaps) → the same dataset
    tfs.load_manifest(dataset_dir)         → Manifest, a typed view of manifest.json
    tfs.read(dataset, split, options)      → tf.data batches of (features, label)
    tfs.ReadOptions(...)                   the read settings (the config's `reader:`)
    tfs.build_model(manifest, config)      the reference Dense or LSTM model, compiled
    tfs.train(config, dataset=, model_dir=) fit, evaluate, save, export
    tfs.retrain(config, until=)            scheduled retraining: spans → window → gate → champion
    tfs.Manifest, tfs.JobConfig            the types

Names are imported on first use (PEP 562), so ``import tfstream`` is instant and
preprocessing never imports TensorFlow.

Example:
    >>> import tfstream as tfs
    >>> config = tfs.load_config("configs/flights_dense.yaml")
    >>> config.reader.batch_size
    256
    >>> manifest = tfs.load_manifest(dataset_dir)
    >>> features, label = next(iter(tfs.read(manifest, "train", config.reader, batch_size=32)))
    >>> int(label.shape[0])
    32
"""

import importlib

_EXPORTS = {
    "JobConfig": "tfstream.pipelines.config",
    "ReadOptions": "tfstream.pipelines.config",
    "load_config": "tfstream.pipelines.config",
    "Manifest": "tfstream.pipelines.manifest",
    "load_manifest": "tfstream.pipelines.manifest",
    "preprocess": "tfstream.pipelines.write.beam_pipeline",
    "write_arrays": "tfstream.pipelines.write.arrays",
    "read": "tfstream.pipelines.read.reader",
    "build_model": "tfstream.training.models",
    "train": "tfstream.training.trainer",
    "retrain": "tfstream.retraining",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__ + ["__version__"])
