"""A preprocessing process to be killed (used by test_snapshots.py; not a test module).

    python kill_driver.py SOURCE_A SOURCE_B DATASET_DIR [FUNCTION:K]

Publishes the dataset from SOURCE_A and SOURCE_B alternately, forever. With
``FUNCTION:K`` it SIGKILLs itself at the K-th call of a function of the publishing step
(``write_manifest``, ``write_tfds_metadata``, ``replace``, ``remove_tree``; ``finish``: the
run's own manifest, written into its folder after the checks and before publishing):
a kill at a chosen moment of publishing or of garbage collection, which random kill
times rarely hit. Without it, the test kills it at a random time.
"""

import os
import signal
import sys


def main() -> None:
    source_a, source_b, out = sys.argv[1:4]
    from tfstream.pipelines import fs
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write import publish, run
    from tfstream.pipelines.write.beam_pipeline import preprocess
    from tfstream.testing import job_dict

    if len(sys.argv) > 4:
        name, k = sys.argv[4].split(":")
        calls = {"n": 0}

        def killing(real):
            def call(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == int(k):
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return call

        if name == "replace":  # the atomic step of every atomic write
            os.replace = killing(os.replace)
        elif name == "finish":
            run.write_manifest = killing(run.write_manifest)
        elif name == "remove_tree":
            setattr(fs, name, killing(getattr(fs, name)))
        else:
            setattr(publish, name, killing(getattr(publish, name)))
    jobs = [config_from_dict(job_dict("digits_lstm.yaml", source={"path": path},
                                      output={"snapshot_retention_hours": 0}))
            for path in (source_a, source_b)]
    i = 0
    while True:
        preprocess(jobs[i % 2], output_dir=out)
        print(f"published {i}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
