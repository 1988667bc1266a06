"""`tfstream doctor SCRIPT`: each rule on small scripts (and its negatives), the seed
article's three examples with their lines, markdown blocks, and files it cannot read."""

import os
import textwrap

import pytest

from tfstream.testing import ROOT
from tfstream.training.doctor import exit_status, format_report
from tfstream.training.doctor_script import ScriptError, check_file, check_source, python_fences

HERE = os.path.dirname(os.path.abspath(__file__))
# The seed article's examples, at the article's own lines (see the file's first lines).
SEED_EXAMPLES = os.path.join(HERE, "seed_examples.md")
# The article itself, in the workspace beside a checkout (absent from a clean clone).
SEED_ARTICLE = os.path.join(ROOT, "..", "shared", "seeds", "000_b84cde6e341c9de4.txt")


def _found(code: str) -> list[tuple[int, str, str]]:
    report = check_source(textwrap.dedent(code).lstrip("\n"), "t.py")
    return [(f.line, f.code, f.severity) for f in report.findings]


def _codes(code: str) -> set[str]:
    return {c for _, c, _ in _found(code)}


# ------------------------------------------------------------------ the seed's examples

def _seed_files():
    yield SEED_EXAMPLES
    yield pytest.param(SEED_ARTICLE, marks=pytest.mark.skipif(
        not os.path.exists(SEED_ARTICLE), reason="../shared/seeds is not beside this checkout (a clean clone); "
                                                 "tests/training/seed_examples.md holds the same examples"))


@pytest.mark.parametrize("path", _seed_files())
def test_each_habit_of_the_seed_is_flagged_with_its_line(path):
    report = check_file(path)
    assert [(f.line, f.code, f.severity) for f in report.findings] == [
        (30, "batch-size", "warning"),         # Example 1: model.fit(X, y, epochs=10, batch_size=1000)
        (30, "fit-arrays", "info"),            # ... on X = np.random.rand(10000, 10): 781 KiB, harmless at that size
        (43, "sequence-holds-data", "warning"),  # Example 2: class DataGenerator(Sequence) keeps self.X, self.y
        (59, "sequence-from-arrays", "info"),  # ... built from the whole arrays of lines 57-58
        (83, "sequence-from-arrays", "info"),  # Example 3: the same Sequence, for the LSTM (batch_size=16: fine)
    ]
    fit, holds = report.findings[1], report.findings[2]
    assert "X = np.random.rand(10000, 10) (line 25): 10,000 x 10 float64, 781.2 KiB" in fit.why
    assert "y = np.random.randint(0, 2, 10000) (line 26): 10,000 int64, 78.1 KiB" in fit.why
    assert "tfs.write_arrays" in fit.example[1] and "tfs.read" in fit.example[-1]
    assert "self.X = X (line 45), sliced per batch" in holds.why
    assert report.findings[0].what == "batch_size=1,000 is large for a Dense model"
    # Example 3's class body is a placeholder comment (not Python): read as `pass`, and said so
    assert any(n.startswith("line 78: `class DataGenerator(Sequence): #Same as example 2` has no body")
               for n in report.notes)
    assert report.notes[0] == "3 ```python block(s) checked (of 3, at line(s) 19, 37, 71)"
    assert exit_status(report) == 1


@pytest.mark.skipif(not os.path.exists(SEED_ARTICLE), reason="../shared/seeds is not beside this checkout")
def test_the_fixture_holds_the_seeds_examples_line_for_line():
    with open(SEED_ARTICLE, encoding="utf-8") as a, open(SEED_EXAMPLES, encoding="utf-8") as b:
        assert python_fences(a.read()) == python_fences(b.read())


def test_the_readme_examples_are_clean():
    report = check_file(os.path.join(ROOT, "README.md"))
    assert report.findings == () and "```python block(s) checked" in report.notes[0]


def test_a_tfstream_script_has_no_findings():
    assert _found("""
        import tfstream as tfs
        config = tfs.load_config("configs/seed_dense.yaml")
        manifest = tfs.load_manifest("runs/toy/dataset")
        model = tfs.build_model(manifest, config)
        model.fit(tfs.read(manifest, "train", config.reader), epochs=10,
                  validation_data=tfs.read(manifest, "eval", config.reader.for_evaluation(), shuffle=False))
        """) == []


# ------------------------------------------------------------------ arrays

def test_fit_on_arrays_is_scaled_by_size():
    small = _found("""
        import numpy as np
        X = np.random.rand(1000, 10)
        model.compile("adam", "mse")
        model.fit(X, X.sum(axis=1), batch_size=32)
        model.fit(X, X[:, 0])  # a slice: its size is not told
        """)
    assert small == [(4, "fit-arrays", "info"), (5, "fit-arrays", "warning")]
    unknown = _found("""
        import numpy as np
        X = np.load("X.npy")
        model = keras.Sequential([keras.layers.Dense(1)])
        model.fit(X, epochs=2)
        """)
    assert unknown == [(4, "fit-arrays", "warning")]
    report = check_source("import numpy as np\nn = 50_000_000\nX = np.zeros((n, 2 * 16), dtype=np.float32)\n"
                          "model.compile()\nmodel.fit(x=X)\n", "t.py")
    (f,) = report.findings
    assert (f.line, f.severity, f.what) == (5, "error", "model.fit on in-memory arrays (6.0 GiB)")
    assert "50,000,000 x 32 float32, 6.0 GiB" in f.why


def test_dtypes_follow_astype_and_division():
    report = check_source("import numpy as np\nX = np.ones((1000, 100), 'uint8')\nA = X.astype('float16')\n"
                          "B = X / 255.0\nmodel.compile()\nmodel.fit(A)\nmodel.fit(B)\n", "t.py")
    assert [f.what for f in report.findings] == ["model.fit on in-memory arrays (195.3 KiB)",
                                                 "model.fit on in-memory arrays (781.2 KiB)"]


def test_whole_datasets_loaded_by_keras_and_pandas():
    assert _found("""
        from tensorflow import keras
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        model = keras.models.Sequential()
        model.fit(x_train, y_train)
        """) == [(4, "fit-arrays", "warning")]
    assert _found("""
        import pandas as pd
        df = pd.read_csv("big.csv")
        model.compile()
        model.fit(df.drop(columns=["y"]).values, df["y"])
        """) == [(4, "fit-arrays", "warning")]


def test_fit_of_something_else_is_not_a_keras_fit():
    assert _found("""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        X = np.random.rand(100000, 100)
        clf = LogisticRegression()
        clf.fit(X, X[:, 0] > 0.5)
        """) == []


def test_a_parameter_is_not_the_module_value():
    assert _found("""
        import numpy as np
        X = np.random.rand(100000, 10)
        def train(model, X):
            model.compile()
            model.fit(X)
        """) == []


def test_from_tensor_slices():
    found = check_source("import numpy as np, tensorflow as tf\nX = np.zeros((300_000_000,))\ny = X\n"
                         "ds = tf.data.Dataset.from_tensor_slices((X, y))\n", "t.py").findings
    assert [(f.line, f.code, f.severity) for f in found] == [(4, "tensor-slices", "error")]
    assert "2.2 GiB" in found[0].what and "These are over 2 GB." in found[0].why  # X once, not twice
    assert _found("import tensorflow as tf\nfiles = ['a.tfrecord', 'b.tfrecord']\n"
                  "ds = tf.data.Dataset.from_tensor_slices(files)\n") == []
    assert _found("import numpy as np, tensorflow as tf\nX = np.ones((100, 4))\n"
                  "ds = tf.data.Dataset.from_tensor_slices({'x': X})\n") == [(3, "tensor-slices", "info")]


# ------------------------------------------------------------------ batch size

@pytest.mark.parametrize("layer, batch, flagged", [("Dense", 32, False), ("Dense", 256, False), ("Dense", 512, True),
                                                   ("LSTM", 128, False), ("LSTM", 256, True), ("GRU", 1000, True)])
def test_batch_size_thresholds_by_model(layer, batch, flagged):
    code = f"""
        from keras import layers, Sequential
        model = Sequential([layers.{layer}(8), layers.Dense(1)])
        model.compile("adam", "mse")
        model.fit(data, epochs=2, batch_size={batch})
        """
    assert _found(code) == ([(4, "batch-size", "warning")] if flagged else [])


def test_batch_size_of_predict_is_not_flagged():
    assert _found("model.compile()\npreds = model.predict(data, batch_size=4096)\n") == []


# ------------------------------------------------------------------ Sequence / PyDataset

def test_a_sequence_that_loads_everything_in_init():
    found = _found("""
        import numpy as np
        import keras
        class Data(keras.utils.PyDataset):
            def __init__(self, path, **kwargs):
                super().__init__(**kwargs)
                self.X = np.load(path)
            def __getitem__(self, i):
                return self.X[i * 32:(i + 1) * 32]
        """)
    assert found == [(3, "sequence-holds-data", "warning")]


def test_a_sequence_that_reads_its_batches_from_files_is_fine():
    assert _found("""
        import numpy as np
        from tensorflow.keras.utils import Sequence
        class Files(Sequence):
            def __init__(self, paths, batch_size):
                self.paths, self.batch_size = paths, batch_size
            def __getitem__(self, i):
                return np.stack([np.load(p) for p in self.paths[i * self.batch_size:(i + 1) * self.batch_size]])
        class Mapped(Sequence):
            def __init__(self, path):
                self.X = np.load(path, mmap_mode="r")
        """) == []


def test_other_sequences_are_not_keras():
    assert _found("""
        from collections.abc import Sequence
        class Rows(Sequence):
            def __init__(self, X):
                self.X = X
            def __getitem__(self, i):
                return self.X[i:i + 1]
        """) == []


# ------------------------------------------------------------------ tf.data chains

def test_a_tfrecord_chain_with_every_habit():
    found = _found("""
        import tensorflow as tf
        def parse(record):
            return tf.io.parse_single_example(record, spec)
        ds = tf.data.TFRecordDataset(files)
        ds = ds.map(parse)
        ds = (ds.cache()
                .shuffle(2_000_000)
                .batch(64))
        model.compile()
        model.fit(ds, epochs=5, steps_per_epoch=100)
        """)
    assert found == [(5, "parse-before-batch", "warning"), (6, "cache-in-memory", "warning"),
                     (7, "shuffle-buffer", "warning"), (10, "no-prefetch", "warning"),
                     (10, "steps-without-repeat", "warning")]


def test_a_good_tfrecord_chain_is_clean():
    assert _found("""
        import tensorflow as tf
        ds = (tf.data.Dataset.list_files("data/*.tfrecord").interleave(tf.data.TFRecordDataset)
              .shuffle(10_000).batch(256).map(lambda s: tf.io.parse_example(s, spec))
              .cache("/tmp/cache").repeat().prefetch(tf.data.AUTOTUNE))
        model.compile()
        model.fit(ds, epochs=5, steps_per_epoch=100)
        """) == []


def test_parse_before_batch_needs_records_and_a_parse():
    assert _codes("""
        import tensorflow as tf
        ds = tf.data.Dataset.list_files("*.tfrecord").interleave(tf.data.TFRecordDataset)
        ds = ds.map(lambda r: tf.io.parse_single_example(r, spec)).batch(32).prefetch(2)
        """) == {"parse-before-batch"}
    assert _found("""
        import tensorflow as tf
        ds = tf.data.Dataset.from_tensor_slices(files).map(parse_image).batch(32)
        """) == []


def test_steps_per_epoch_and_repeat():
    fit = "model.compile()\nmodel.fit(ds, steps_per_epoch=10, epochs={})\n"
    assert _codes("import tfstream as tfs\nds = tfs.read('d', 'train')\n" + fit.format(3)) == {"steps-without-repeat"}
    assert _codes("import tfstream as tfs\nds = tfs.read('d', 'train', repeat=True)\n" + fit.format(3)) == set()
    assert _codes("import tfstream as tfs\nds = tfs.read('d', 'train')\n" + fit.format(1)) == set()


def test_a_shuffle_of_the_whole_arrays():
    found = check_source("import numpy as np, tensorflow as tf\nX = np.random.rand(2_000_000, 100)\n"
                         "ds = tf.data.Dataset.from_tensor_slices(X).shuffle(len(X)).batch(32)\n", "t.py").findings
    shuffle = next(f for f in found if f.code == "shuffle-buffer")
    assert shuffle.severity == "error" and "a copy of the whole dataset" in shuffle.why
    assert shuffle.what == "a shuffle buffer of 2,000,000 elements (1.6 GiB)"


# ------------------------------------------------------------------ files

def test_markdown_blocks_keep_the_files_lines(tmp_path):
    path = tmp_path / "tutorial.md"
    path.write_text("# A tutorial\n\n```sh\npython train.py\n```\n\nThen:\n\n```py\nmodel.compile()\n"
                    "model.fit(x, batch_size=4096)\n```\n\n```python\nthis is (not python\n```\n", encoding="utf-8")
    report = check_file(str(path))
    assert [(f.line, f.code) for f in report.findings] == [(11, "batch-size")]
    assert report.notes[:2] == ("1 ```python block(s) checked (of 2, at line(s) 9, 14)",
                                "the ```python block at line 14 is not Python (line 15: syntax error: '(' was "
                                "never closed); not checked")
    assert "tutorial.md:11" in format_report(report, terminal=False)


def test_files_it_cannot_read(tmp_path):
    bad = tmp_path / "train.py"
    bad.write_text("import numpy as np\nX = np.zeros((10,)\n", encoding="utf-8")
    with pytest.raises(ScriptError, match=r"train.py:2: not valid Python: syntax error: '\(' was never closed"):
        check_file(str(bad))
    with pytest.raises(ScriptError, match=r"missing.py: cannot read it: No such file or directory"):
        check_file(str(tmp_path / "missing.py"))
    text = tmp_path / "notes.txt"
    text.write_text("no code here, only words\n", encoding="utf-8")
    with pytest.raises(ScriptError, match=r"notes.txt:1: no ```python block, and not Python either"):
        check_file(str(text))
    (tmp_path / "blob.py").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScriptError, match=r"blob.py: cannot read it"):
        check_file(str(tmp_path / "blob.py"))


def test_the_readme_shows_the_real_output(monkeypatch):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    command = "$ tfstream doctor tests/training/seed_examples.md\n"
    shown = readme.split(command, 1)[1].split("\n```", 1)[0]
    monkeypatch.chdir(ROOT)
    assert shown == format_report(check_file("tests/training/seed_examples.md"), terminal=False)
