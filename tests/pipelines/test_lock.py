"""The directory lock (pipelines/lock.py) and the dataset writer lock built on it
(pipelines/write/lock.py); across processes: tests/training/test_registry.py."""

import os
import time

import pytest

from tfstream.pipelines.lock import BusyError, locked
from tfstream.pipelines.write import lock as dataset_lock


def test_the_dataset_lock_keeps_its_file_and_message(tmp_path):
    out = str(tmp_path / "ds")
    with dataset_lock.locked(out):
        assert os.path.exists(os.path.join(out, ".tfstream.lock"))
        with pytest.raises(dataset_lock.DatasetBusyError) as e:
            with dataset_lock.locked(out):
                pass
    assert isinstance(e.value, BusyError) and e.value.exit_code == dataset_lock.BUSY_EXIT_CODE == 75
    assert str(e.value) == (f"{out}: another tfstream run is writing this dataset (process {os.getpid()}); wait for "
                            f"it to finish, or pass --wait (wait=True) to start when it has")


def test_a_number_of_seconds_waits_that_long_then_fails(tmp_path):
    kwargs = dict(lock_name=".x.lock", what="x run holds this folder")
    with locked(str(tmp_path), **kwargs):
        start = time.monotonic()
        with pytest.raises(BusyError, match=r": another x run holds this folder \(process \d+\); waited 0.3 s for it "
                                            r"to finish; try again later, or pass --wait \(wait=True\)"):
            with locked(str(tmp_path), wait=0.3, **kwargs):
                pass
        assert 0.29 <= time.monotonic() - start < 3
    with locked(str(tmp_path), wait=0.3, **kwargs):  # free: taken at once
        pass


@pytest.mark.parametrize("wait", [-1, float("nan"), "2"])
def test_a_bad_wait_is_refused(tmp_path, wait):
    with pytest.raises(ValueError, match="wait: expected True, False or a number of seconds >= 0"):
        with locked(str(tmp_path), lock_name=".x.lock", what="x", wait=wait):
            pass
