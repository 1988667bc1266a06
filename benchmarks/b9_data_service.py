"""B9 data service: Keras `fit` step time of the Dense job (flights) with its input read
by a tf.data service worker in another process (``reader.service``), against the input
read in the training process, each ÷ the step time on a cached in-memory batch (B2's
"input overhead").

Method (full scale; a machine of at least 2 cores):

* the servers: ``tfstream data-service dispatcher`` and ``tfstream data-service worker``
  (one worker), two processes pinned to core 0 (``os.sched_setaffinity``);
* measuring process 1, pinned to core 1 (every thread): one model (`build_model`, the
  job's settings), three inputs alternated repetition after repetition: ``service``
  (`read` with ``reader.service``, ``distributed_epoch``: reading, shuffling, parsing
  on core 0, the trainer receives batches), ``in-process`` (`read` as the trainer does:
  input and training share core 1), ``synthetic`` (``Dataset.from_tensors(batch)
  .repeat()``: no input work);
* measuring process 2, unpinned (both cores; a smoke run reuses process 1's figures): ``in-process`` and ``synthetic``: the
  input in-process with the same 2 cores the service run uses in all;
* every input gives the same S full batches per epoch (``drop_remainder``; the split's
  floor(records ÷ batch) batches, the finite reads re-iterated each epoch, so each
  epoch of the service run is a new service job); a measurement is one
  ``fit(epochs=2)``, the first epoch a warm-up, the step time the second epoch's
  wall time ÷ S; a ratio is per repetition, the figure its median.

The comparisons: ``service ÷ synthetic`` and ``in-process ÷ synthetic`` on core 1 (the
same process, alternated), ``in-process ÷ synthetic`` on 2 cores, and the absolute step
time of the service run (1 + 1 cores) ÷ the in-process run on 2 cores (two processes,
one after the other: noisier). A smoke run pins nothing and runs in this process.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from benchmarks import data
from tfstream.testing import job_dict
from benchmarks.common import (alternate, child_env, epoch_timer, figure, fresh_processes, import_tensorflow_quietly,
                               median, pick, reps, result, run_child)

TARGET = 1.10  # B2's target for the Dense input overhead


def _pin(cpus) -> None:
    """Pin every thread of this process to ``cpus`` (threads made later inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), set(cpus))
        except OSError:  # a thread that has just exited
            pass


def _start_servers(cpus):
    """A dispatcher and one worker, two `tfstream data-service` processes (pinned to
    ``cpus`` when given); returns (processes, dispatcher address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"grpc://127.0.0.1:{port}"
    pin = (lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None
    cmds = [["dispatcher", "--port", str(port)], ["worker", "--dispatcher", target, "--port", "0"]]
    procs = [subprocess.Popen([sys.executable, "-m", "tfstream.cli", "data-service", *cmd, "--host", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
                              preexec_fn=pin) for cmd in cmds]
    for proc in procs:
        line = proc.stdout.readline()
        if not re.search(r"listening on grpc://", line):
            _stop(procs)
            raise RuntimeError(f"tfstream data-service did not start (exit {proc.poll()}): {line!r}")
    return procs, target


def _stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(args: dict) -> dict:
    """One measuring process: the inputs ``args["inputs"]`` alternated, on ``args["cpus"]``."""
    if args.get("cpus"):
        _pin(args["cpus"])
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.training.models import build_model

    if args.get("cpus"):
        _pin(args["cpus"])  # TensorFlow's own threads, made by the import
    config = config_from_dict(args["job"])
    manifest = load_manifest(args["dataset"])
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(manifest, config)
    local = read(manifest, "train", config.reader, drop_remainder=True)
    steps = int(local.cardinality())
    inputs = {"in-process": local, "synthetic": tf.data.Dataset.from_tensors(next(iter(local))).repeat()}
    if args.get("service"):
        inputs["service"] = read(manifest, "train", config.reader.with_overrides(
            service={"dispatcher": args["service"], "processing_mode": "distributed_epoch"}), drop_remainder=True)
        assert int(inputs["service"].cardinality()) == steps

    def step_seconds(ds):
        timer = epoch_timer()
        model.fit(ds, epochs=2, steps_per_epoch=steps if ds is inputs["synthetic"] else None, verbose=0,
                  callbacks=[timer])
        return timer.seconds[-1] / steps

    raw = alternate({name: (lambda ds=ds: step_seconds(ds)) for name, ds in inputs.items()}, args["repetitions"])
    return {"step_seconds": raw, "steps": steps, "cpus": args.get("cpus"),
            "affinity": sorted(os.sched_getaffinity(0))}


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    fresh = fresh_processes(scale)
    if fresh and len(os.sched_getaffinity(0)) < 2:
        from benchmarks.common import BenchmarkSkipped

        raise BenchmarkSkipped("B9 pins the input and the training to two cores; this process may use one")
    cache = data.cache_dir(workdir, scale)
    every = pick(scale, smoke=100, full=10)
    job = data.flights_job(workdir, scale) if scale == "smoke" else job_dict(  # smoke: B2's dataset
        "flights_dense.yaml", source={"path": data.flights_csv_slice(cache, every)},
        output={"num_shards": {"train": 4, "validation": 1, "eval": 1}})
    dataset = data.built_dataset(job, cache)
    n = reps(scale, full=5)
    servers, target = _start_servers([0] if fresh else None)
    try:
        one = run_child("b9_data_service:measure", {"job": job, "dataset": dataset, "repetitions": n,
                                                     "cpus": [1] if fresh else None, "service": target},
                        fresh=fresh, timeout=600)
    finally:
        _stop(servers)
    # a smoke run pins nothing: its first process already measured the input on all cores
    two = run_child("b9_data_service:measure", {"job": job, "dataset": dataset, "repetitions": n, "cpus": None},
                    fresh=fresh, timeout=600) if fresh else one

    def ratios(r, name):
        return [a / b for a, b in zip(r["step_seconds"][name], r["step_seconds"]["synthetic"])]

    service, pinned, unpinned = ratios(one, "service"), ratios(one, "in-process"), ratios(two, "in-process")
    across = median(one["step_seconds"]["service"]) / median(two["step_seconds"]["in-process"])
    core = "core 1" if fresh else "unpinned (smoke)"
    figures = [
        figure(f"Dense, trainer on {core}: step time, input on a service worker ÷ synthetic", median(service), TARGET,
               "<="),
        figure(f"Dense, trainer on {core}: step time, input in-process ÷ synthetic", median(pinned), TARGET, "<="),
        figure("Dense, 2 cores: step time, input in-process ÷ synthetic", median(unpinned), TARGET, "<="),
        figure("Dense: step time, service (1 + 1 cores) ÷ in-process (2 cores)", across, 1.0, "<="),
    ]
    values = {f"{label} step ms median ({name})": 1000 * median(r["step_seconds"][name])
              for label, r in (("core 1" if fresh else "process 1", one), ("2 cores" if fresh else "process 2", two))
              for name in r["step_seconds"]}
    return result("B9", "data service", scale, figures,
                  raw={"pinned": one, "unpinned": two, "ratios": {"service": service, "in-process pinned": pinned,
                                                                  "in-process unpinned": unpinned}},
                  values={**values, "steps per epoch": one["steps"]},
                  params={"repetitions": n, "flights": f"every {every}th flight", "batch_size": job["reader"]
                          ["batch_size"], "servers": "dispatcher + 1 worker, core 0" if fresh else "unpinned",
                          "warmup": "first epoch of every fit discarded", "processing_mode": "distributed_epoch"})
