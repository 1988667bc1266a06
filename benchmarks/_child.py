"""Entry point of a measured process: ``python -m benchmarks._child MODULE:FUNCTION JSON``.

Runs ``benchmarks.MODULE.FUNCTION(args)`` and prints its result as one JSON line,
with the process's own peak RSS (VmHWM) read just before it exits.
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.common import RESULT_PREFIX, vmhwm_mb


def main(argv: list[str]) -> int:
    target, args = argv[0], json.loads(argv[1])
    module, _, function = target.partition(":")
    result = getattr(importlib.import_module(f"benchmarks.{module}"), function)(args)
    result["vmhwm_mb"] = vmhwm_mb()
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
