"""Apache Beam options and errors: refuse options Beam would silently drop, refuse
runner and path combinations that cannot work, and find tfstream's own error (naming the
file and row) inside the exception a runner raises.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

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
    """A Beam option with a value Beam cannot parse."""


def unknown_beam_options(args: Sequence[str]) -> list[str]:
    """The arguments in ``args`` that Beam's `PipelineOptions` cannot use: options that
    no registered options class defines (with their values) and stray words.

    Beam itself only logs and discards them, so a misspelt ``--runer`` would quietly run
    on the DirectRunner.

    Raises:
        BeamOptionError: a known option with a bad value (``--direct_num_workers=two``).
    """
    import contextlib
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
    try:
        with contextlib.redirect_stderr(captured):  # Beam's argparse prints its whole usage
            PipelineOptions(list(args)).get_all_options(drop_default=True)
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

