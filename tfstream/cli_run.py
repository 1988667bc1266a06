"""`tfstream run`: preprocess in a process of its own, then train in this one, and report
the peak memory of each phase (the trainer never holds the write side's memory).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Optional, Sequence

from tfstream.cli import _error_exit, _metrics_path, _preprocess, _quiet, _train

_log = logging.getLogger("tfstream")


def _peak_rss_mb(who: int) -> float:
    """The peak resident set size of this process (``RUSAGE_SELF``) or of its waited-for
    children (``RUSAGE_CHILDREN``), in MB (10**6 bytes).

    For this process, Linux's ``VmHWM`` where there is one: ``ru_maxrss`` carries over
    from the parent at fork and through exec, so a child spawned by a parent that holds
    TensorFlow would report the parent's size.
    """
    import resource

    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) * 1024 / 1e6, 1)
        except OSError:
            pass
    peak = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak * (1 if sys.platform == "darwin" else 1024) / 1e6, 1)


def _die_with_parent() -> None:
    """Linux: end this process (SIGTERM) when its parent dies, so that a `tfstream run`
    killed by a scheduler does not leave its preprocessing running on, holding the
    dataset's lock. Elsewhere a no-op."""
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _preprocess_child(conn, config, output: str, beam_args: Sequence[str], previous: Optional[str], wait: bool,
                      force: bool, verbose: bool) -> None:
    """`tfstream run`'s preprocessing, in a process of its own (see `_run`): logs and
    errors as `tfstream preprocess` prints them; sends back the exit status, the dataset
    directory, this process's id and its peak RSS."""
    import resource
    from types import SimpleNamespace

    _die_with_parent()
    if not verbose:
        _quiet()
    else:
        logging.basicConfig(level=logging.INFO)
    root = None
    try:
        manifest = _preprocess(config, output, beam_args, previous, SimpleNamespace(wait=wait, force=force))
        code, root = 0, manifest.root
    except (KeyboardInterrupt, SystemExit) as e:  # the parent still gets an answer
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        print(f"tfstream run: preprocessing interrupted ({type(e).__name__})", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - printed here, as the parent would
        from tfstream.pipelines.write.run import PreprocessError

        try:
            code = _error_exit("run", verbose, e)
        except Exception:  # noqa: BLE001 - verbose: the traceback, and the status it would have had
            import traceback

            traceback.print_exc()
            code = 2 if isinstance(e, PreprocessError) else 1
    sys.stderr.flush()
    conn.send({"code": code, "root": root, "pid": os.getpid(), "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
               "workers_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)})
    conn.close()


def _preprocess_in_child(config, output: str, beam_args: Sequence[str], previous: Optional[str], args) -> dict:
    """Run the preprocessing in a fresh (spawned) process and wait for it, so that the
    trainer never holds the write side's memory (Beam, pyarrow, the pipeline's buffers):
    it is all returned to the system when that process exits."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process holding TensorFlow
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_preprocess_child, name="tfstream-preprocess",
                              args=(send, config, output, list(beam_args), previous, args.wait, args.force,
                                    args.verbose))
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:  # it died before answering (killed, out of memory)
        result = None
    finally:
        process.join()
        receive.close()
    if result is None:
        raise RuntimeError(f"the preprocessing process (pid {process.pid}) ended without a result, with exit "
                           f"status {process.exitcode}" + (" (killed by a signal)" if (process.exitcode or 0) < 0
                                                           else ""))
    return result


def run(config, args, beam_args: Sequence[str]) -> int:
    """`tfstream run`: preprocess in a child process, then train in this one."""
    import resource

    from tfstream.training.metrics import format_summary
    from tfstream.training.trainer import check_model_dir

    workdir = args.workdir or os.path.join("runs", config.name)
    check_model_dir(workdir)  # before the preprocessing, not after it
    child = _preprocess_in_child(config, os.path.join(workdir, "dataset"), beam_args, args.previous, args)
    if child["code"]:
        return child["code"]  # the child printed the error
    _log.info("preprocess: peak RSS %.0f MB (pid %d, its own process: freed before training)",
              max(child["peak_rss_mb"], child["workers_peak_rss_mb"]), child["pid"])
    _train(config, child["root"], os.path.join(workdir, "model"), args.restart)
    peak = {"preprocess": child["peak_rss_mb"], "preprocess_workers": child["workers_peak_rss_mb"],
            "train": _peak_rss_mb(resource.RUSAGE_SELF)}
    _log.info("peak RSS: preprocess %.0f MB, train %.0f MB", max(peak["preprocess"], peak["preprocess_workers"]),
              peak["train"])
    path = _metrics_path(workdir)
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    metrics["peak_rss_mb"] = peak
    metrics["preprocess_pid"] = child["pid"]
    from tfstream.pipelines import fs

    fs.write_json(path, metrics)
    print(format_summary([(config.name, metrics)]))
    return 0
