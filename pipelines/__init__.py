"""The write side (Apache Beam) and the read side (tf.data) of tfstream, and the CLI.

Names are imported on first use (PEP 562), so that `import tfstream.pipelines` and the
CLI's `--help` do not pay for importing Beam and TensorFlow.

Example:
    >>> from tfstream.pipelines import load_config, preprocess, read
    >>> cfg = load_config("configs/flights_dense.yaml")              # doctest: +SKIP
    >>> preprocess(cfg, output_dir="runs/flights/dataset")           # doctest: +SKIP
    >>> ds = read("runs/flights/dataset", "train", batch_size=256)   # doctest: +SKIP

NumPy arrays larger than memory (memory-mapped) are written by `write_arrays`, in one
process, streaming, to the same kind of dataset.
"""

import importlib

_EXPORTS = {
    "ConfigError": "config",
    "JobConfig": "config",
    "load_config": "config",
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "load_manifest": "manifest",
    "quarantine_records": "manifest",
    "PreprocessError": "beam_preprocess",
    "build_pipeline": "beam_preprocess",
    "preprocess": "beam_preprocess",
    "write_arrays": "arrays",
    "SourceError": "sources",
    "write_tfds_metadata": "tfds_metadata",
    "write_plots": "plots",
    "compare_manifests": "drift",
    "read": "readers",
    "list_shards": "readers",
    "interleave_records": "readers",
    "shuffle_records": "readers",
    "cache_records": "readers",
    "parse_records": "readers",
    "pad_sequences": "readers",
    "prefetch": "readers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
