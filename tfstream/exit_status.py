"""The exit statuses of the `tfstream` command, in one place: the CLI exits with them and
`tfstream retrain` records them in ``runs.jsonl``.

0 success; 1 anything else; 2 a problem with the input (config, source, dataset, model
registry); 3 a file that does not match its record (a shard, a model version: the
error's ``exit_code``); 75 a lock held by another run (`pipelines.lock.BusyError`);
`tfstream retrain` adds 10 (kept the champion) and 11 (nothing new).

Example:
    >>> from tfstream.pipelines.config import ConfigError
    >>> exit_status(ConfigError("reader.batch_size: ...")), exit_status(RuntimeError("?"))
    (2, 1)
"""

from __future__ import annotations

import sys

# Errors whose message is the whole story (printed as one line, no traceback), loaded
# lazily: module → class names. Importing them here would import Beam or Keras.
_STATED = {"tfstream.pipelines.config": ("ConfigError",), "tfstream.pipelines.manifest": ("ManifestError",),
           "tfstream.pipelines.write.sources": ("SourceError",), "tfstream.training.registry": ("RegistryError",)}
# Input problems whose message may need its type and more lines.
_INPUT = {"tfstream.pipelines.write.run": ("PreprocessError",), "tfstream.training.trainer": ("TrainError",)}


def _loaded(table) -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], n) for m, names in table.items() if m in sys.modules for n in names)


def is_stated(error: BaseException) -> bool:
    """Whether ``error``'s message says it all: a config, source, manifest or registry
    error, a missing file, or one that carries its own ``exit_code`` (a lock held, a
    checksum)."""
    return isinstance(error, (FileNotFoundError, *_loaded(_STATED))) or isinstance(getattr(error, "exit_code", None),
                                                                                   int)


def exit_status(error: BaseException) -> int:
    """The exit status for ``error``: its own ``exit_code`` when it has one, 2 for a
    problem with the input, 1 for anything else."""
    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    return 2 if isinstance(error, (FileNotFoundError, *_loaded(_STATED), *_loaded(_INPUT))) else 1
