"""The `tfstream` command.

    tfstream preprocess --config C [--output DIR] [--previous MANIFEST] [--wait] [--force] [-- BEAM OPTIONS]
    tfstream train      --config C [--dataset DIR] [--model-dir DIR] [--epochs N] [--restart]
    tfstream run        --config C [--workdir DIR] [--previous MANIFEST] [--wait] [--force] [--restart]
                        [-- BEAM OPTIONS]
    tfstream retrain    --config C [--until SPAN] [--wait [SECONDS]]
    tfstream models     list|runs|show|rollback (--config C | REGISTRY_DIR) [--version N] [--json] [--plot PNG] [--wait [S]]
    tfstream inspect    DATASET_DIR [--json] [--split SPLIT] [--plot OUT_DIR] [--html REPORT.html]
    tfstream gc         DATASET_DIR [--retention-hours H] [--wait]
    tfstream verify     DATASET_DIR [--split SPLIT] [--json]
    tfstream summary    RUN_DIR [RUN_DIR ...]
    tfstream config     schema | check CONFIG
    tfstream doctor     SCRIPT.py | FILE.md | --config C [--dataset DIR]  [--json]
    tfstream bench      [--scale smoke|full] [--only B1,B3] [--workdir DIR] [--out DIR]
    tfstream data-service dispatcher --port P [--work-dir D] [--host H]
    tfstream data-service worker --dispatcher grpc://HOST:PORT --port P [--host H]

Beam options after ``--`` (or any option the command does not know) go to Beam's
`PipelineOptions` unchanged, e.g. ``-- --runner=DataflowRunner --project=P --region=R
--temp_location=gs://B/tmp --setup_file=./setup.py``. Exit status: 0 on success, 2 for a
problem with the input (config, source, dataset), 3 for shard files that do not match
their manifest (missing, resized, corrupt, truncated: `verify`, `inspect`'s size check,
`train`; model files that do not match their registry record,
`training.registry.ChecksumError`), 10 and 11 for `retrain` keeping the champion and
finding nothing new (see `cli_retrain`), 75 (EX_TEMPFAIL) when another run is writing the
same dataset or holds the same model registry (``--wait``
waits for it instead), 130 after Ctrl-C (one line that says what is left and what to do),
1 for anything else (`doctor`: for a finding at warning level or above); ``-v`` (or
``--debug``) shows TensorFlow's and Beam's own logs and the traceback of an error.
``-q`` (``--quiet``) draws no progress (`pipelines.progress`: drawn on stderr only when
it is a terminal).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

_log = logging.getLogger("tfstream")


def _quiet() -> None:
    """Silence TensorFlow's and Beam's start-up chatter; keep tfstream's own log lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Beam logs a failed pipeline at ERROR with its whole traceback before it raises;
    # the CLI prints the cause in one line instead (-v shows everything).
    logging.getLogger().setLevel(logging.CRITICAL)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tfstream: %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr pointed at /dev/null.

    TensorFlow 2.21 prints its start-up lines (oneDNN, CUDA probing) through absl before
    any log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide them. A failed import
    still raises, and Python prints that error after stderr is back.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfstream",
        allow_abbrev=False,  # a Beam option must never be taken for an abbreviation of ours
        description="Stream raw data through Apache Beam into sharded TFRecords, and back through tf.data "
                    "into Keras fit.",
    )
    parser.add_argument("-v", "--verbose", "--debug", action="store_true",
                        help="show TensorFlow's and Beam's own logs, and the traceback of an error")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="draw no progress (rows read and written, rows/s, time left: drawn on stderr only when it "
                             "is a terminal)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preprocess", allow_abbrev=False, help="raw source -> sharded TFRecords + manifest (Apache Beam)")
    p.add_argument("--config", required=True, help="job config (YAML)")
    p.add_argument("--output", help="dataset directory (default: output.dir, then runs/<name>/dataset)")
    p.add_argument("--previous", metavar="MANIFEST", help="compare the new statistics with this manifest (a "
                   "manifest.json or a dataset directory; default: the output's current manifest)")
    _writer_options(p)

    p = sub.add_parser("train", help="fit the reference model on a dataset, evaluate, save and export")
    p.add_argument("--config", required=True, help="job config (YAML)")
    p.add_argument("--dataset", help="dataset directory (default: output.dir, then runs/<name>/dataset)")
    p.add_argument("--model-dir", help="model directory (default: train.dir, then runs/<name>/model)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    _restart_option(p)

    p = sub.add_parser("run", allow_abbrev=False, help="preprocess, then train: the whole job")
    p.add_argument("--config", required=True, help="job config (YAML)")
    p.add_argument("--workdir", help="writes WORKDIR/dataset and WORKDIR/model (default: runs/<name>)")
    p.add_argument("--previous", metavar="MANIFEST", help="as for preprocess")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    _writer_options(p)
    _restart_option(p)

    from tfstream.cli_retrain import add_parsers

    add_parsers(sub)
    from tfstream.cli_data_service import add_parsers as add_data_service

    add_data_service(sub)

    p = sub.add_parser("inspect", help="print a dataset's manifest as tables")
    p.add_argument("dataset", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print the raw manifest.json")
    p.add_argument("--split", help="the split whose statistics are shown and plotted (default: train if present, "
                                   "else the first split)")
    p.add_argument("--plot", metavar="OUT_DIR", help="also write PNG plots of the statistics into OUT_DIR")
    p.add_argument("--html", metavar="REPORT", help="also write the tables and the plots as one self-contained HTML "
                                                    "page (no script, no external URL) to REPORT")

    p = sub.add_parser("verify", help="read every shard and check its records, bytes, sha256 and CRCs against the "
                                      "manifest (exit status 3 when one differs)")
    p.add_argument("dataset", help="dataset directory")
    p.add_argument("--split", help="check this split only (default: every split)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = sub.add_parser("gc", help="remove a dataset's old snapshots now (each run does it too)")
    p.add_argument("dataset", help="dataset directory")
    p.add_argument("--retention-hours", type=float, metavar="H",
                   help="keep snapshots replaced less than H hours ago (default: output.snapshot_retention_hours' "
                        "default); the current and the previous snapshot are always kept")
    p.add_argument("--wait", action="store_true", help="wait for a run writing the dataset, instead of failing")

    p = sub.add_parser("summary", help="one table of the results of finished runs")
    p.add_argument("runs", nargs="+", help="run directories (holding model/metrics.json) or model directories")

    p = sub.add_parser("config", help="the job config: its JSON Schema (for editors), or check one")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("schema", help="print the JSON Schema of job configs (for the YAML language server)")
    check = config_sub.add_parser("check", help="load a config, report the first problem, or print it whole "
                                                "with every default filled in")
    check.add_argument("config", help="job config (YAML)")

    p = sub.add_parser("doctor", help="point at the known causes of out-of-memory errors and slow input, with "
                                      "the line and the fix: in a training script (read, never run), in the "
                                      "```python blocks of a markdown file, or in a job config and its dataset")
    p.add_argument("path", nargs="?", help="a training script (.py), or a text file whose ```python blocks are read")
    p.add_argument("--config", help="a job config (YAML): its reader settings against the model, the dataset and "
                                    "the memory planner")
    p.add_argument("--dataset", help="with --config: the dataset (default: output.dir, then runs/<name>/dataset)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")

    # Its options are `python -m benchmarks`' own (`tfstream bench --help` shows them): passed on as they are.
    sub.add_parser("bench", add_help=False, help="run the benchmarks from a source checkout (python -m benchmarks): "
                                                 "figures, results.json, plots")
    return parser


def _writer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="when another run is writing the dataset, wait for it "
                                                       "(default: exit at once with status 75)")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory that is not a tfstream "
                   "dataset, beside its files (tfstream never deletes or overwrites a file it did not write)")


def _restart_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--restart", action="store_true", help="discard an interrupted run in the model dir and train "
                   "from scratch (needed when the dataset was republished since it started)")


def _gc(dataset: str, retention_hours: Optional[float], wait: bool) -> None:
    import math

    from tfstream.pipelines import fs
    from tfstream.pipelines.config import ConfigError, OutputConfig
    from tfstream.pipelines.manifest import MANIFEST_NAME, ManifestError
    from tfstream.pipelines.snapshots import SNAPSHOTS_DIR
    from tfstream.pipelines.write import publish
    from tfstream.pipelines.write.lock import locked

    if not (fs.exists(fs.join(dataset, MANIFEST_NAME)) or fs.glob(fs.join(dataset, SNAPSHOTS_DIR, "*"))):
        raise ManifestError(f"{dataset}: not a tfstream dataset (no {MANIFEST_NAME}, no {SNAPSHOTS_DIR}/)")
    if retention_hours is None:  # the dataset's own setting, else the default
        data = publish.published(dataset)[1] or {}
        output = data.get("options", {}).get("config", {}).get("output", {})
        retention_hours = output.get("snapshot_retention_hours",
                                     OutputConfig.model_fields["snapshot_retention_hours"].default)
    if not (isinstance(retention_hours, (int, float)) and math.isfinite(retention_hours) and retention_hours >= 0):
        raise ConfigError(f"--retention-hours: expected a number of hours >= 0, got {retention_hours}")
    with locked(dataset, wait=wait):
        publish.adopt_legacy(dataset)
        report = publish.collect_garbage(dataset, retention_hours)
    print(f"removed {len(report.removed)} snapshot(s)" + "".join(f"\n  - {r}" for r in report.removed))
    print(f"kept {len(report.kept)}" + "".join(f"\n  {sid}: {why}" for sid, why in report.kept))


def _bench(bench_args: Sequence[str]) -> int:
    """Run ``python -m benchmarks`` of this source checkout with ``bench_args``, in this
    working directory (the benchmarks are not part of tfstream's wheel: they need the
    datasets extra and write plots)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(root, "benchmarks", "__main__.py")):
        raise FileNotFoundError(f"{root}: no benchmarks/ beside tfstream/; `tfstream bench` runs from a source "
                                f"checkout installed with `pip install -e .` (the benchmarks are not in the wheel)")
    # The checkout first; PYTHONSAFEPATH (Python 3.11+) keeps a `benchmarks/` folder in the
    # working directory from shadowing it.
    env = dict(os.environ, PYTHONSAFEPATH="1",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    return subprocess.call([sys.executable, "-m", "benchmarks", *bench_args], env=env)


def _with_epochs(config, epochs: Optional[int]):
    if epochs is None:
        return config
    from tfstream.pipelines.config import replace

    return replace(config, train=replace(config.train, epochs=epochs))


def _preprocess(config, output: Optional[str], beam_args: Sequence[str], previous: Optional[str], args):
    from tfstream.pipelines.write.beam_pipeline import preprocess

    manifest = preprocess(config, output_dir=output, beam_args=beam_args, previous=previous, wait=args.wait,
                          force=args.force)
    src = manifest.source
    _log.info("dataset: %s  (%s rows read, %s written, %s dropped, %s rejected)", manifest.root,
              f"{src.rows_read:,}", f"{src.rows_written:,}", f"{src.rows_dropped:,}", f"{src.rows_rejected:,}")
    if src.rows_dropped or src.rows_rejected:
        _log.info("  quarantine: %s", ", ".join(os.path.join(manifest.root, q) for q in src.quarantine))
    for split in manifest.splits.values():
        _log.info("  %-10s %9s records in %d shard(s)", split.name, f"{split.num_examples:,}", len(split.shards))
        if split.num_examples == 0:
            _log.warning("  split %r is empty: check %s and the source", split.name, config.split_plan().origin)
    return manifest


def _train(config, dataset: Optional[str], model_dir: Optional[str], restart: bool = False):
    from tfstream.pipelines.tables import cell
    from tfstream.training.metrics import also
    from tfstream.training.trainer import train

    _log.info("train %r: %s model, %d epoch(s) at most", config.name, config.model.type, config.train.epochs)
    metrics = train(config, dataset=dataset, model_dir=model_dir, restart=restart)
    if metrics.get("process_index"):  # multi_worker: process 0 evaluates and writes the model dir
        _log.info("process %d of %d: trained %d epoch(s); process 0 writes the model", metrics["process_index"],
                  metrics["num_processes"], metrics["epochs_run"])
        return metrics
    judged = metrics["beats"]
    _log.info("eval %s %s, best trivial baseline (%s) %s: %s by more than %g%%; %s", judged["metric"],
              cell(judged["model"]), judged["against"], cell(judged["baseline"]),
              "beats it" if judged["beats"] else "does not beat it", 100 * judged["margin"], also(metrics))
    _log.info("model: %s/model.keras", metrics["model_dir"])
    _log.info("export (serves raw features): %s", metrics["export_dir"])
    _log.info("metrics: %s/metrics.json", metrics["model_dir"])
    _log.info("learning curves: %s/learning_curves.png%s", metrics["model_dir"],
              f"; tensorboard --logdir {metrics['model_dir']}/logs" if config.train.tensorboard else "")
    return metrics


def _config(args) -> None:
    from tfstream.pipelines.config import json_schema, load_config

    if args.config_command == "schema":
        print(json.dumps(json_schema(), indent=1))
        return
    import yaml

    config = load_config(args.config)
    print(f"# {args.config}: valid; every key, defaults filled in")
    print(yaml.safe_dump(config.to_json(), sort_keys=False, default_flow_style=None, width=100), end="")


def _doctor(args) -> int:
    """`tfstream doctor`: exit status 0 (no finding at warning level or above), 1, or 2
    (a usage error: a file it cannot read or parse, a config that does not load)."""
    from tfstream.training.doctor import exit_status, format_report
    from tfstream.training.doctor_script import ScriptError, check_file

    if (args.path is None) == (args.config is None) or (args.dataset and not args.config):
        _parser().error("doctor: give a script or text file (tfstream doctor train.py), or --config C [--dataset D]")
    if args.config:
        from tfstream.training.doctor_config import check_config_file

        report = check_config_file(args.config, args.dataset)
    elif args.path.endswith((".yaml", ".yml")):
        _parser().error(f"doctor: {args.path} looks like a job config: tfstream doctor --config {args.path}")
    else:
        try:
            report = check_file(args.path)
        except ScriptError as e:
            print(f"tfstream doctor: error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else format_report(report))
    return exit_status(report)


def _verify(dataset: str, split: Optional[str], as_json: bool) -> int:
    from tfstream.pipelines.inspect.verify import EXIT_MISMATCH, format_result, verify

    result = verify(dataset, [split] if split else None)
    print(json.dumps(result.to_json(), indent=1) if as_json else format_result(result))
    if not result.ok:
        print(f"tfstream verify: {result.message()}", file=sys.stderr)
    return 0 if result.ok else EXIT_MISMATCH


def _check_shard_sizes(manifest) -> int:
    """`inspect`'s cheap check: each shard exists with its manifest size (no read)."""
    from tfstream.pipelines.inspect.verify import EXIT_MISMATCH, check_sizes

    result = check_sizes(manifest)
    if not result.ok:
        print(f"tfstream inspect: {result.message()}", file=sys.stderr)
    return 0 if result.ok else EXIT_MISMATCH


def _metrics_path(run: str) -> str:
    for candidate in (os.path.join(run, "model", "metrics.json"), os.path.join(run, "metrics.json")):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"{run}: no metrics.json (looked in {run}/model and {run}); run `tfstream run` first")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1:]
    args, unknown = _parser().parse_known_args(argv)
    if unknown and args.command not in ("preprocess", "run", "bench"):
        _parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.quiet:
        from tfstream.pipelines.progress import set_quiet

        set_quiet()  # and in the child processes (`run`'s preprocessing, `bench`)
    if not args.verbose:
        _quiet()
    else:
        logging.basicConfig(level=logging.INFO)

    # Light imports only (no TensorFlow, no Beam): a missing source is reported in a second.
    from tfstream.pipelines.config import load_config

    try:
        if args.command in ("preprocess", "train", "run", "retrain"):
            config = _with_epochs(load_config(args.config), getattr(args, "epochs", None))
        if args.command in ("train", "run", "retrain"):
            _require_model(config, args.config)  # before anything runs
            if config.train.strategy == "multi_worker":
                from tfstream.training.multi_worker import refuse, settings_from_env, use_jax_backend

                if args.command != "train":
                    refuse(args.command)
                use_jax_backend()  # before TensorFlow imports Keras
                settings_from_env()  # a process not told its place fails now, not after the imports
        if args.command == "retrain":
            config.require_retrain()
        if args.command in ("preprocess", "run"):
            _check_sources_early(config)  # before TensorFlow or Beam is imported
            beam_args = _beam_args(args, unknown, beam_args)
        if not args.verbose and args.command in ("train", "run", "retrain", "data-service"):
            import_tensorflow_quietly()  # (preprocessing alone does not import TensorFlow)
        if args.command in ("train", "run", "retrain"):
            from tfstream.training.strategy import check_strategy

            check_strategy(config.train.strategy)  # (TFSTREAM_CPU_DEVICES: before TensorFlow starts its devices)
        if args.command == "bench":
            return _bench(unknown)
        if args.command == "config":
            _config(args)
        elif args.command == "inspect":
            from tfstream.pipelines.inspect.report import format_manifest
            from tfstream.pipelines.manifest import load_manifest

            manifest = load_manifest(args.dataset)
            split = args.split or manifest.train_split
            manifest.split(split)  # an unknown --split fails here, before any output
            print(json.dumps(manifest.data, indent=1) if args.json else format_manifest(manifest, train_split=split))
            if args.plot:
                from tfstream.pipelines.inspect.plots import write_plots

                paths = write_plots(manifest, args.plot, split=split)
                # With --json, stdout must stay one JSON document: the paths go to stderr.
                out = sys.stderr if args.json else sys.stdout
                print(f"\nplots ({len(paths)} written)", file=out)
                for path in paths:
                    print(f"  {path}", file=out)
            if args.html:
                from tfstream.pipelines.inspect.html_report import write_html

                print(f"\nreport: {write_html(manifest, args.html, split=split)}",
                      file=sys.stderr if args.json else sys.stdout)
            return _check_shard_sizes(manifest)
        elif args.command == "doctor":
            return _doctor(args)
        elif args.command == "retrain":
            from tfstream.cli_retrain import run_retrain

            return run_retrain(config, args)
        elif args.command == "models":
            from tfstream.cli_retrain import run_models

            return run_models(args)
        elif args.command == "data-service":
            from tfstream.cli_data_service import run_data_service

            return run_data_service(args)
        elif args.command == "verify":
            return _verify(args.dataset, args.split, args.json)
        elif args.command == "gc":
            _gc(args.dataset, args.retention_hours, args.wait)
        elif args.command == "summary":
            from tfstream.training.metrics import format_summary

            runs = []
            for run in args.runs:
                with open(_metrics_path(run), encoding="utf-8") as f:
                    runs.append((os.path.basename(os.path.normpath(run)), json.load(f)))
            print(format_summary(runs))
        elif args.command == "preprocess":
            _preprocess(config, args.output, beam_args, args.previous, args)
        elif args.command == "train":
            _train(config, args.dataset, args.model_dir, args.restart)
        else:
            from tfstream.cli_run import run

            return run(config, args, beam_args)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one paragraph, the traceback only with --debug
        return _error_exit(args.command, args.verbose, e)
    return 0


def _require_model(config, path: str) -> None:
    """`tfstream train` and `run` need the config's ``model:`` section: a config
    without one only preprocesses."""
    from tfstream.pipelines.config import ConfigError

    try:
        config.require_model()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _beam_args(args, unknown: Sequence[str], beam_args: list[str]) -> list[str]:
    """Beam options go to PipelineOptions unchanged, after `--` or mixed with ours. One
    that Beam does not know would be dropped by Beam without a word (a misspelt --runer
    would run locally), so it is refused (exit status 2), as is a bad value."""
    if unknown or beam_args:
        from tfstream.pipelines.write.beam_options import BeamOptionError, unknown_beam_options

        beam_args = list(unknown) + list(beam_args)
        try:
            typos = unknown_beam_options(beam_args)
        except BeamOptionError as e:
            _parser().error(str(e))
        if typos:
            _parser().error(f"unrecognized arguments: {' '.join(typos)} (neither a tfstream option nor an "
                            f"Apache Beam pipeline option)")
    if not args.verbose and not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        # Beam's worker processes (multi_processing mode, remote runners) log at INFO.
        beam_args = [*beam_args, "--default_sdk_harness_log_level=WARNING"]
    return beam_args


# After Ctrl-C: what is left, and how to go on.
_INTERRUPTED = {
    "preprocess": "a run publishes its dataset only once it is complete, so the dataset is as it was; run the same "
                  "command again",
    "run": "the dataset is published only once complete, and training resumes after its last finished epoch: run "
           "the same command again",
    "train": "training resumes after its last finished epoch: run the same command again (--restart starts afresh)",
    "retrain": "the champion is replaced only by a complete, checked model; run the same command again to resume",
    "data-service": "the server stopped; the trainers reading through it fail until one serves the same address "
                    "again (a dispatcher started with the same --work-dir resumes its jobs)",
}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def _error_exit(command: str, verbose: bool, e: BaseException) -> int:
    """The exit status for an error (`exit_status`), after printing it as one paragraph:
    its message when it says it all, else with its type, cut to 6 lines. ``verbose``
    (-v, --debug) prints the whole traceback first, with the same exit status."""
    from tfstream.exit_status import exit_status, is_stated

    if verbose:
        import traceback

        traceback.print_exception(e)
    if isinstance(e, KeyboardInterrupt):
        what = _INTERRUPTED.get(command, "it stopped before it finished; run it again")
        print(f"tfstream {command}: interrupted; {what}", file=sys.stderr)
        return EXIT_INTERRUPTED
    code = exit_status(e)
    if is_stated(e):  # written for the user: whole
        print(f"tfstream {command}: error: {e}", file=sys.stderr)
        return code
    lines = str(e).strip().splitlines() or [""]
    more = f"\n  ... ({len(lines) - 6} more lines; run with --debug for the whole traceback)" if len(lines) > 6 else ""
    print(f"tfstream {command}: error: {type(e).__name__}: " + "\n  ".join(lines[:6]) + more, file=sys.stderr)
    return code


def _check_sources_early(config) -> None:
    """Resolve the source files and check them (exist, readable, headers and columns),
    without TensorFlow or Beam: a missing or unreadable source is reported in about a
    second, not after the 10 s their imports take. Remote (``gs://``) and TFDS sources
    are checked by `preprocess` itself, on Beam's file systems."""
    from tfstream.pipelines.write.sources import SourceError, check_source, resolve_source_paths, source_patterns

    source = config.source
    if getattr(source, "tfds", None) is not None or any("://" in p for p in source_patterns(source)):
        return
    paths = resolve_source_paths(source)
    for path in paths:
        if os.path.isdir(path):
            raise SourceError(f"{path}: a directory, not a {source.format} file; set source.path to the file(s) "
                              f"(a glob such as {os.path.join(path, '*')!r} reads every file in it)")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{path}: cannot open: permission denied (the file is not readable by this user)")
    check_source(paths, source, config.source_columns(), config.sequence_columns(), rules=config.row_rules())


if __name__ == "__main__":
    sys.exit(main())
