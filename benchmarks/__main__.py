"""``python -m benchmarks``: run the benchmarks from a source checkout (``tfstream bench``
calls it), print the table, write ``results.json`` and the plots.

    python -m benchmarks [--scale smoke|full] [--only B1,B3] [--workdir DIR] [--out DIR]

Exit status: 0 when every benchmark ran (whether or not its targets are met), 1 when one
failed (its traceback is in results.json), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from benchmarks.report import format_table
from benchmarks.suite import BENCHMARKS, run_suite, select


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="tfstream's benchmarks: ratios "
                                     "measured side by side in one run (see BENCHMARKS.md)")
    parser.add_argument("--scale", choices=("smoke", "full"), default="full",
                        help="smoke: every benchmark on tiny data, in seconds; full: the issue's sizes (default)")
    parser.add_argument("--only", metavar="B1,B3", help=f"run only these benchmarks (default: all of "
                                                        f"{', '.join(BENCHMARKS)})")
    parser.add_argument("--workdir", default=os.path.join("runs", "bench"),
                        help="datasets are built once into WORKDIR/cache/SCALE and reused (default: runs/bench)")
    parser.add_argument("--out", help="writes OUT/results.json and the PNG plots (default: WORKDIR/SCALE)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        select(args.only)
    except ValueError as e:
        _parser().error(str(e))
    # The benchmarks' own progress lines; TensorFlow's and Beam's chatter stays quiet.
    logging.getLogger().setLevel(logging.ERROR)
    log = logging.getLogger("benchmarks")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bench: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    out = args.out or os.path.join(args.workdir, args.scale)
    results = run_suite(args.scale, args.workdir, out, only=args.only, log=log.info)
    print(format_table(results["benchmarks"]))
    print(f"\nresults: {results['results_json']}")
    for path in results["plots"].values():
        print(f"plot:    {path}")
    failed = [name for name, r in results["benchmarks"].items() if r["status"] == "error"]
    if failed:
        print(f"benchmarks: error: {', '.join(failed)} failed; the traceback is in {results['results_json']}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
