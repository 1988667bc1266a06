"""Apache Beam options and errors: refuse options Beam would silently drop, refuse
runner and path combinations that cannot work, resolve ``--runner=DaskRunner`` (which Beam
does not register by its short name), and find tfstream's own error (naming the file and
row) inside the exception a runner raises.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from tfstream.pipelines import fs
from tfstream.pipelines.write.run import PreprocessError
from tfstream.pipelines.write.sources import SourceError
from tfstream.transforms.validation import ImputationError, RowError


def check_paths_for_runner(options: PipelineOptions, dataset_dir: str, paths: Sequence[str]) -> None:
    """Refuse local paths with a runner whose workers are remote (Dataflow).

    Raises:
        PreprocessError: naming the local paths.
    """
    from apache_beam.options.pipeline_options import StandardOptions

    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    if "dataflow" in runner.lower():
        local = [p for p in [dataset_dir, *paths] if not fs.is_remote(p)]
        if local:
            raise PreprocessError(
                f"--runner={runner} runs on remote workers, which cannot see local paths {local}; "
                f"put the source and the output on a shared file system (gs://...)"
            )


class BeamOptionError(ValueError):
    """A Beam option with a value Beam cannot parse, or a runner that is not installed."""


DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
# Beam resolves a short runner name only for the runners of `StandardOptions.ALL_KNOWN_RUNNERS`
# (lower-cased, with or without "Runner"); its DaskRunner is not one of them.
_RUNNER_ALIASES = {"daskrunner": DASK_RUNNER, "dask": DASK_RUNNER}
_DASK_INSTALL = "pip install 'tfstream[dask]'"


def with_runner_aliases(args: Sequence[str]) -> list[str]:
    """``args`` with ``--runner=DaskRunner`` (or ``Dask``, any case; also ``--runner
    DaskRunner``) replaced by the DaskRunner's full class path, which Beam can load.

    >>> with_runner_aliases(["--runner=DaskRunner", "--dask_client_address=tcp://h:8786"])[0]
    '--runner=apache_beam.runners.dask.dask_runner.DaskRunner'
    >>> with_runner_aliases(["--runner", "direct"])
    ['--runner', 'direct']
    """
    out = list(args)
    for i, arg in enumerate(out):
        if arg.startswith("--runner="):
            name = arg.split("=", 1)[1]
            out[i] = "--runner=" + _RUNNER_ALIASES.get(name.lower(), name)
        elif arg == "--runner" and i + 1 < len(out):
            out[i + 1] = _RUNNER_ALIASES.get(out[i + 1].lower(), out[i + 1])
    return out


def _runner_of(args: Sequence[str]) -> Optional[str]:
    runner = None
    for i, arg in enumerate(args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    return runner


def _uses_dask(args: Sequence[str]) -> bool:
    return _runner_of(with_runner_aliases(args)) == DASK_RUNNER or any(a.startswith("--dask_") for a in args)


def register_dask_options(args: Sequence[str]) -> None:
    """Import Beam's DaskRunner when ``args`` ask for it, so that its options
    (``--dask_client_address`` and the other ``--dask_*``) are known to `PipelineOptions`
    (Beam finds options classes among those imported).

    Raises:
        BeamOptionError: Dask is not installed.
    """
    if not _uses_dask(args):
        return
    try:
        import dask.distributed  # noqa: F401 - Beam's DaskRunner imports it lazily
        import apache_beam.runners.dask.dask_runner  # noqa: F401 - registers DaskOptions
    except ImportError as e:
        raise BeamOptionError(
            f"--runner=DaskRunner and the --dask_* options need Dask ({e}): {_DASK_INSTALL}"
        ) from None


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """`PipelineOptions` from ``beam_args``, with ``--runner=DaskRunner`` resolved
    (`with_runner_aliases`) and the DaskRunner's options registered.

    Raises:
        BeamOptionError: ``--runner=DaskRunner`` without Dask installed.
    """
    args = with_runner_aliases(beam_args)
    register_dask_options(args)
    if any(a.startswith("--dask_") for a in args) and _runner_of(args) != DASK_RUNNER:
        logging.getLogger(__name__).warning(
            "the --dask_* options are ignored without --runner=DaskRunner (runner: %s)",
            _runner_of(args) or "DirectRunner")
    return PipelineOptions(args)


def runs_in_this_process(options: PipelineOptions) -> bool:
    """Whether the pipeline's steps run in this process, so that their `progress.advance`
    calls count into this process's progress: the DirectRunner (Beam's default) in its
    default ``in_memory`` mode, or ``multi_threading``; ``multi_processing`` and the other
    runners run them in other processes."""
    every = options.get_all_options()
    return every.get("runner") in (None, "DirectRunner") and \
        every.get("direct_running_mode") in (None, "in_memory", "multi_threading")


def runner_name(options: PipelineOptions) -> str:
    """The runner, for messages: its name, and the DirectRunner's mode."""
    every = options.get_all_options()
    runner = every.get("runner") or "DirectRunner"
    runner = runner if isinstance(runner, str) else type(runner).__name__
    return f"{runner} ({every['direct_running_mode']})" if runner == "DirectRunner" else runner


@contextlib.contextmanager
def closing_dask_client(options: PipelineOptions) -> Iterator[None]:
    """Close the Dask client that Beam's DaskRunner opens for a run (and the
    `LocalCluster` it starts when no ``--dask_client_address`` is given): Beam leaves
    both open until the process exits. Wrap the pipeline's ``with`` block in it."""
    from apache_beam.options.pipeline_options import StandardOptions

    if str(options.view_as(StandardOptions).runner or "") != DASK_RUNNER:
        yield
        return
    from dask.distributed import Client

    before = _current_dask_client(Client)
    try:
        yield
    finally:
        client = _current_dask_client(Client)
        if client is not None and client is not before:
            client.close()


def _current_dask_client(client_class):
    try:
        return client_class.current(allow_global=True)
    except ValueError:  # no client
        return None


def unknown_beam_options(args: Sequence[str]) -> list[str]:
    """The arguments in ``args`` that Beam's `PipelineOptions` cannot use: options that
    no registered options class defines (with their values) and stray words.

    Beam itself only logs and discards them, so a misspelt ``--runer`` would quietly run
    on the DirectRunner.

    Raises:
        BeamOptionError: a known option with a bad value (``--direct_num_workers=two``).
    """
    import io

    discarded: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Discarding unparseable args") and record.args:
                discarded.extend(str(a) for a in record.args[0])

    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    catch, propagate, level = _Catch(), beam_log.propagate, beam_log.level
    beam_log.addHandler(catch)
    beam_log.propagate = False
    beam_log.setLevel(logging.WARNING)  # the CLI silences the root logger
    captured = io.StringIO()
    register_dask_options(args)
    try:
        with contextlib.redirect_stderr(captured):  # Beam's argparse prints its whole usage
            PipelineOptions(with_runner_aliases(args)).get_all_options(drop_default=True)
    except SystemExit:
        reason = [line for line in captured.getvalue().splitlines() if "error:" in line]
        raise BeamOptionError(
            f"bad Apache Beam option: {reason[-1].split('error:', 1)[1].strip() if reason else ' '.join(args)}"
        ) from None
    finally:
        beam_log.removeHandler(catch)
        beam_log.propagate = propagate
        beam_log.setLevel(level)
    return discarded


def root_cause(error: BaseException) -> BaseException:
    """The first tfstream error in an exception chain (Beam wraps worker errors)."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (RowError, SourceError, ImputationError)):
            return current
        current = current.__cause__ or current.__context__
    return error


def worker_message(error: BaseException) -> Optional[str]:
    """Beam's portable runners re-raise worker errors as text: find our message in it."""
    text = str(error)
    for marker in ("RowError: ", "SourceError: ", "ImputationError: "):
        if marker in text:
            return text.split(marker, 1)[1].split("\n", 1)[0].split(" [while running", 1)[0].strip()
    return None

