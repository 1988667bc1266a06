"""`tfstream retrain` and `tfstream models`: the CLI of scheduled retraining.

    tfstream retrain --config C [--until SPAN] [--wait [SECONDS]]
    tfstream models  list|runs|show|rollback  (--config C | REGISTRY_DIR) [--version N] [--json] [--plot PNG]
                     [--wait [SECONDS]]

`retrain`'s exit status says what happened (`tfstream.retraining.EXIT_CODES`): 0 a new
champion was promoted, 10 the champion was kept, 11 nothing new, 75 another run holds
the lock, 2 a problem with the input, 3 a file that does not match its checksum, 1
anything else.
"""

from __future__ import annotations

import json
import os
import sys


def add_parsers(sub) -> None:
    """Add ``retrain`` and ``models`` to the `tfstream` command's subparsers."""
    p = sub.add_parser("retrain", help="scheduled retraining: preprocess new spans, train a candidate on the newest "
                                       "window, gate it against the champion, promote it atomically (safe from "
                                       "cron: exit status 0 promoted, 10 kept, 11 nothing new, 75 locked)")
    p.add_argument("--config", required=True, help="job config (YAML) with a retrain: section")
    p.add_argument("--until", metavar="SPAN", help="ignore spans whose name sorts after SPAN (a backfill, or the "
                                                   "scheduler's date: --until 2024-06-01)")
    p.add_argument("--wait", nargs="?", const=True, default=False, type=float, metavar="SECONDS",
                   help="when another run holds the lock, wait for it (for at most SECONDS), instead of exiting at "
                        "once with status 75")

    p = sub.add_parser("models", help="the model registry of retraining: list versions, show one, the table of "
                                      "runs (and a plot), or roll the champion back")
    p.add_argument("action", choices=("list", "runs", "show", "rollback"),
                   help="list: the versions; runs: one row per retrain run (runs.jsonl); show: a version's record "
                        "(default: the champion); rollback: make an earlier version the champion (default: the "
                        "previous champion)")
    p.add_argument("registry", nargs="?", help="the registry directory (<retrain.models_dir>/<name>)")
    p.add_argument("--config", help="instead of REGISTRY: the job config whose registry it is")
    p.add_argument("--version", type=int, help="show / rollback: the version")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", metavar="PNG", help="runs: also plot the champion's metric run by run into PNG")
    p.add_argument("--wait", nargs="?", const=True, default=False, type=float, metavar="SECONDS",
                   help="rollback: when a retrain run holds the registry's lock, wait for it (for at most SECONDS), "
                        "instead of exiting at once with status 75")


def _registry_dir(args) -> str:
    from tfstream.pipelines.config import load_config
    from tfstream.retraining import registry_dir

    if (args.registry is None) == (args.config is None):
        from tfstream.pipelines.config import ConfigError

        raise ConfigError("give the registry directory (<retrain.models_dir>/<name>) or --config C, one of them")
    if args.config is not None:
        return registry_dir(load_config(args.config))
    if not os.path.isdir(args.registry):
        raise FileNotFoundError(f"{args.registry}: no such registry directory (<retrain.models_dir>/<name>)")
    return args.registry


def run_retrain(config, args) -> int:
    """`tfstream retrain`: one run, its summary table, its exit status."""
    from tfstream.retraining import retrain
    from tfstream.training.retrain_report import format_record

    result = retrain(config, until=args.until, wait=args.wait, verbose=2 if args.verbose else 0)
    print(format_record(result.record))
    return result.exit_code


def run_models(args) -> int:
    """`tfstream models ACTION`."""
    from tfstream.training import registry
    from tfstream.retraining import read_records
    from tfstream.training.retrain_report import format_runs, format_versions, plot_runs

    directory = _registry_dir(args)
    if args.action == "runs":
        records = read_records(directory)
        if args.json:
            print(json.dumps(records, indent=1))
        else:
            print(format_runs(records, title=f"{directory}: {len(records)} run(s)"))
        if args.plot:
            path = plot_runs(records, args.plot, title=f"{os.path.basename(os.path.normpath(directory))}: champion, "
                                                       f"span by span")
            print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
        return 0
    if args.action == "list":
        versions = registry.versions(directory)
        if args.json:
            print(json.dumps([_version_json(v) for v in versions], indent=1))
        else:
            print(format_versions(versions) if versions else f"{directory}: no model version yet")
        return 0
    if args.action == "show":
        version = (registry.verify_version(directory, args.version) if args.version is not None
                   else registry.champion(directory))
        if version is None:
            raise registry.RegistryError(f"{directory}: no champion yet; `tfstream retrain` promotes one")
        registry.verify_version(directory, version.number)
        data = {**_version_json(version), "metrics": version.metrics()}
        print(json.dumps(data, indent=1))
        return 0
    with registry.lock(directory, wait=args.wait):
        version = registry.rollback(directory, args.version)
    print(f"champion: version {version.number} ({version.path}); export: {version.export_dir}")
    return 0


def _version_json(version) -> dict:
    return {"version": version.number, "path": version.path, "created_at": version.created_at,
            "is_champion": version.is_champion, "export_dir": version.export_dir, "info": version.info,
            "files": version.files}
