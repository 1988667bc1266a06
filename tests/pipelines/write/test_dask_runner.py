"""Beam's DaskRunner: ``--runner=DaskRunner`` and its options accepted, a clear error
without the ``dask`` extra, and a real run on a 2-process `LocalCluster` that writes the
DirectRunner's dataset byte for byte."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

from tfstream.pipelines.write.beam_options import (
    DASK_RUNNER,
    BeamOptionError,
    pipeline_options,
    unknown_beam_options,
    with_runner_aliases,
)


def test_dask_runner_short_name_is_an_alias():
    assert with_runner_aliases(["--runner=DaskRunner"]) == [f"--runner={DASK_RUNNER}"]
    assert with_runner_aliases(["--runner", "dask"]) == ["--runner", DASK_RUNNER]
    assert with_runner_aliases(["--runner=DataflowRunner"]) == ["--runner=DataflowRunner"]
    options = pipeline_options(["--runner=DaskRunner", "--dask_client_address=tcp://127.0.0.1:8786"])
    assert options.get_all_options()["runner"] == DASK_RUNNER
    assert options.get_all_options()["address"] == "tcp://127.0.0.1:8786"  # Beam's dest for it


def test_dask_options_are_known_and_typos_refused():
    assert unknown_beam_options(["--runner=DaskRunner", "--dask_client_address=tcp://127.0.0.1:8786",
                                 "--dask_connection_timeout=30"]) == []
    assert unknown_beam_options(["--runner=DaskRunner", "--dask_client_adress=tcp://h:1"]) == \
        ["--dask_client_adress=tcp://h:1"]
    with pytest.raises(BeamOptionError, match="argument --dask_connection_limit: invalid int"):
        unknown_beam_options(["--runner=DaskRunner", "--dask_connection_limit=many"])


def test_without_dask_the_error_says_what_to_install(monkeypatch, tmp_path, capsys):
    from tfstream.cli import main
    from tfstream.testing import CONFIGS

    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails, as when not installed
    with pytest.raises(BeamOptionError, match=r"pip install 'tfstream\[dask\]'"):
        pipeline_options(["--runner=DaskRunner"])
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", "--config", os.path.join(CONFIGS, "digits_lstm.yaml"), "--output", str(tmp_path / "x"),
              "--", "--runner=DaskRunner"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--runner=DaskRunner and the --dask_* options need Dask" in err and "pip install 'tfstream[dask]'" in err


def _shards(manifest, split):
    # file names relative to the snapshot folder (``snapshots/<id>/``), records, sha256
    return [(s.file.split("/", 2)[2], s.records, s.sha256) for s in manifest.split(split).shards]


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_dask_runner_on_a_local_cluster_writes_the_direct_runners_dataset(flights_job, flights_dataset, tmp_path):
    """Two worker processes (every step pickled to them), loopback only."""
    distributed = pytest.importorskip("dask.distributed")  # `make test` installs the dask extra
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.write.beam_pipeline import preprocess

    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        m = preprocess(flights_job, output_dir=str(tmp_path / "dask"),
                       beam_args=["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"])
        assert len(cluster.workers) == 2
    ref = load_manifest(flights_dataset)
    assert m.data["options"]["beam"]["runner"] == DASK_RUNNER
    assert ref.split_names == m.split_names
    for split in ref.split_names:
        assert _shards(m, split) == _shards(ref, split)  # byte for byte
        assert m.data["splits"][split]["statistics"] == ref.data["splits"][split]["statistics"]
        assert {k: v for k, v in m.data["splits"][split].items() if k != "shards"} == \
            {k: v for k, v in ref.data["splits"][split].items() if k != "shards"}
    # every row accounted for the same way: counts, quarantine reasons, and the quarantine itself
    source, ref_source = dict(m.data["source"]), dict(ref.data["source"])
    assert source.pop("quarantine") and ref_source.pop("quarantine")
    assert source == ref_source and source["rows_dropped"] > 0
    assert _sha256(os.path.join(str(tmp_path / "dask"), m.data["source"]["quarantine"][0])) == \
        _sha256(os.path.join(flights_dataset, ref.data["source"]["quarantine"][0]))
    assert m.data["schema"] == ref.data["schema"]
