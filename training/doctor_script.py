"""`tfstream doctor SCRIPT`: the known causes of running out of memory, or of slow input,
in a Keras training script, read from its syntax tree (the script is never imported or
run).

A script is a ``.py`` file; any other file (markdown, a text article, a tutorial) is read
for its fenced ```` ```python ```` blocks, each analysed on its own, with the lines of the
file. A block whose class or function body is only a comment (``# ... as above ...``,
invalid Python) is read with ``pass`` there, and a note says so.

The values are followed within the script, as far as the code shows them: names bound to
NumPy arrays (``np.random.rand(10000, 10)``, ``np.zeros((n, 784), dtype="float32")``,
``np.load``, ``pd.read_csv``, ``.astype``, ``/ 255``), to tf.data chains
(``TFRecordDataset(...).map(...).batch(...)``, across assignments), to Keras models and to
instances of ``keras.utils.Sequence`` / ``PyDataset`` subclasses. The rules:

    fit-arrays           model.fit on whole in-memory arrays
    tensor-slices        tf.data.Dataset.from_tensor_slices on in-memory arrays
    batch-size           batch_size >= 512 for a model (>= 256 with recurrent layers)
    sequence-holds-data  a Sequence / PyDataset that keeps or loads whole arrays in __init__
    sequence-from-arrays a Sequence / PyDataset built from whole in-memory arrays
    parse-before-batch   .map(parse one record) before .batch on TFRecords
    no-prefetch          a tf.data chain fed to fit without .prefetch
    cache-in-memory      .cache() without a file name
    shuffle-buffer       .shuffle with a buffer of 1,000,000 elements or more, or the whole dataset
    steps-without-repeat fit(ds, steps_per_epoch=...) on a chain without .repeat()

Nothing is reported without evidence in the code: a value the script does not show
(a function's argument, an array loaded from a file) gets "could not tell", not a guess.
Sizes, where the shapes are literal, are NumPy's (float64 unless a dtype says otherwise).

Example:
    >>> report = check_source('''
    ... import numpy as np
    ... X = np.random.rand(100000, 20)
    ... y = np.random.randint(0, 2, 100000)
    ... model.compile(optimizer="adam", loss="binary_crossentropy")
    ... model.fit(X, y, batch_size=2048)
    ... ''', "train.py")
    >>> [(f.line, f.code, f.severity) for f in report.findings]
    [(6, 'batch-size', 'warning'), (6, 'fit-arrays', 'info')]
"""

from __future__ import annotations

import ast
import re
from typing import Optional

from tfstream.pipelines.read.memory import ELEMENT_OVERHEAD_BYTES, MiB
from tfstream.pipelines.tables import size
from tfstream.training.doctor import Finding, Report, sort_findings
from tfstream.training.doctor_flow import Array, Dataset, Flow, Instance, Model, calls, kw, short

# Severity by size, for the habits that hold a whole dataset in memory: below
# SMALL_BYTES the habit is harmless today (info); from LARGE_BYTES it takes a good share
# of a machine (error); unknown sizes and those between are warnings.
SMALL_BYTES = 64 * MiB
LARGE_BYTES = 1 << 30
# from_tensor_slices embeds its arrays in the dataset's graph as constants (TensorFlow's
# tf.data guide, "Consuming NumPy arrays"). Measured here with TensorFlow 2.21 (peak RSS):
# a 0.5 GiB float64 array added 1.5 GiB when its dataset was iterated eagerly, about
# three copies; a 2 GiB one peaked at 7.1 GB, and inside a tf.function it failed
# ("Cannot create a tensor proto whose content is larger than 2GB": a GraphDef's limit).
GRAPHDEF_LIMIT_BYTES = 2**31
# Rules of thumb, not measurements: the activations the backward pass keeps grow in
# proportion to the batch (and to the time steps, in a recurrent layer), while past a
# few hundred examples a step rarely gets faster on one device. Keras defaults to 32.
BATCH_SIZE_DENSE = 512
BATCH_SIZE_RECURRENT = 256
SHUFFLE_ELEMENTS = 1_000_000

_RECURRENT = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
              "CuDNNLSTM", "CuDNNGRU"}
_PER_ITEM_LOADERS = {"load", "open", "imread", "read_file", "load_img", "decode_image", "read", "loadtxt", "File"}
_WRITE_ONCE = "write the arrays once (tfs.write_arrays), stream them (tfs.read)"
_FIT_EXAMPLE = ('config = tfs.load_config("job.yaml")  # source: {format: npz}, a feature from X, the label from y',
                'manifest = tfs.write_arrays(config, {"X": X, "y": y})  # once (or: tfstream preprocess)',
                'model.fit(tfs.read(manifest, "train", batch_size=256), epochs=10)  # a model of the features '
                'dict: tfs.build_model')


class ScriptError(ValueError):
    """A file `tfstream doctor` cannot read as Python (nor find Python in); the message
    names the file and the line."""


def _severity(nbytes: Optional[int], error_from: int = LARGE_BYTES) -> str:
    if nbytes is None:
        return "warning"
    return "error" if nbytes >= error_from else "info" if nbytes < SMALL_BYTES else "warning"


def _total(arrays: list[tuple[str, Array]]) -> Optional[int]:
    sizes = [a.nbytes for _, a in arrays]
    return None if any(s is None for s in sizes) else sum(sizes)


def _size_clause(nbytes: Optional[int]) -> str:
    if nbytes is None:
        return ""
    if nbytes < SMALL_BYTES:
        return f" At {size(nbytes)} this is harmless; the habit is what does not scale."
    return f" That is {size(nbytes)} held for the whole run."


class _Rules(Flow):
    """The walk of `Flow`, with each rule checked at the call that gives its evidence."""

    def __init__(self, tree: ast.Module, path: str, file_line: list[int]):
        super().__init__(tree, file_line)
        self.path = path
        self.findings: list[Finding] = []
        self.notes: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if node.name in self.sequences:
            self._check_sequence_class(node)
        else:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        qual = self.qual(node.func) or ""
        func = node.func
        if qual.endswith("data.Dataset.from_tensor_slices"):
            self._check_tensor_slices(node)
        elif isinstance(func, ast.Name) and func.id in self.sequences:
            self._check_sequence_call(node, func.id)
        elif isinstance(func, ast.Attribute):
            receiver = self.value(func.value)
            if func.attr in ("fit", "fit_generator") and (isinstance(receiver, Model) or (
                    isinstance(func.value, ast.Name) and func.value.id in self.compiled)):
                self._check_fit(node)
            elif isinstance(receiver, Dataset) and func.attr in ("map", "cache", "shuffle"):
                getattr(self, f"_check_{func.attr}")(receiver, node, self.line_of(func.end_lineno))

    def _add(self, line: int, code: str, severity: str, what: str, why: str, fix: str,
             example: tuple[str, ...] = ()) -> None:
        self.findings.append(Finding(self.path, line, code, severity, what, why, fix, example))

    # ---------------------------------------------------------------- the rules

    def _model_kind(self) -> tuple[str, int]:
        recurrent = sorted(self.layers & _RECURRENT)
        if recurrent:
            return f"a recurrent model ({', '.join(recurrent)})", BATCH_SIZE_RECURRENT
        return ("a Dense model" if "Dense" in self.layers else "a model"), BATCH_SIZE_DENSE

    def _check_batch_size(self, batch: Optional[int], line: int, where: str, rows: Optional[int]) -> None:
        kind, threshold = self._model_kind()
        if batch is None or batch < threshold:
            return
        data = ""
        if rows:
            data = (f" With {rows:,} rows, one batch is the whole dataset." if batch >= rows else
                    f" With {rows:,} rows, that is {-(-rows // batch):,} weight updates per epoch.")
        self._add(line, "batch-size", "warning", f"batch_size={batch:,} is large for {kind}",
                  f"{where}: the activations the backward pass keeps grow in proportion to the batch (and to the "
                  f"time steps in a recurrent layer), so a step's memory does too; the doctor flags "
                  f"{BATCH_SIZE_DENSE} and more ({BATCH_SIZE_RECURRENT} with recurrent layers), a rule of thumb."
                  f"{data}",
                  "start at 32 to 256; raise it while memory allows")

    def _check_fit(self, call: ast.Call) -> None:
        line = self.line_of(call)
        x, y = kw(call, "x", 0), kw(call, "y", 1)
        value = self.value(x) if x is not None else None
        batch = self.int_value(kw(call, "batch_size"))
        if isinstance(value, Array):
            arrays = self.arrays_of([node for node in (x, y) if node is not None])
            total = _total(arrays)
            self._add(line, "fit-arrays", _severity(total),
                      "model.fit on in-memory arrays" + (f" ({size(total)})" if total is not None else ""),
                      "; ".join(a.describe(n) for n, a in arrays) + ". fit keeps the whole arrays for the run, and "
                      "Keras turns them into tensors before the first step: memory grows with the data (tfstream's "
                      "benchmark B4: +3.9 GB of peak memory from 1M to 10M rows this way, +25 MB streamed)."
                      + _size_clause(total),
                      _WRITE_ONCE,
                      _FIT_EXAMPLE)
            self._check_batch_size(batch, line, f"model.fit(batch_size={batch})", value.rows)
        elif isinstance(value, Dataset):
            self._check_fit_dataset(call, value, line)
        elif isinstance(value, Instance):
            self._check_batch_size(self.int_value(kw(value.call, "batch_size")), self.line_of(value.call),
                                   f"{value.cls}(batch_size=...), fed to model.fit at line {line}", None)
        else:
            self._check_batch_size(batch, line, f"model.fit(batch_size={batch})", None)

    def _check_fit_dataset(self, call: ast.Call, ds: Dataset, line: int) -> None:
        built = f"the dataset built at line {ds.line} ({ds.source})"
        for op, op_call, op_line in ds.ops:
            size_node = kw(op_call, "batch_size", 0)
            if op in ("batch", "padded_batch") and size_node is not None:
                self._check_batch_size(self.int_value(size_node), op_line, f".{op}({short(size_node)})",
                                       ds.element.rows if ds.element else None)
        if not ds.tfstream and not ds.has("prefetch"):
            self._add(line, "no-prefetch", "warning", "a tf.data input without prefetch",
                      f"model.fit reads {built}, whose chain has no .prefetch(): each batch is prepared while the "
                      "model waits, instead of during the previous step (Keras does not add one to a "
                      "tf.data.Dataset).",
                      "end the chain with .prefetch(tf.data.AUTOTUNE) (tfs.read does)",
                      ("ds = ds.prefetch(tf.data.AUTOTUNE)",))
        steps = kw(call, "steps_per_epoch")
        epochs = self.int_value(kw(call, "epochs"))
        if steps is not None and not ds.has("repeat") and epochs != 1:
            self._add(line, "steps-without-repeat", "warning", "steps_per_epoch on a dataset that does not repeat",
                      f"model.fit(steps_per_epoch={short(steps)}) keeps one iterator over {built} across epochs; "
                      "without .repeat(), unless it holds steps_per_epoch x epochs batches, it runs out and Keras "
                      "stops: \"Your input ran out of data; interrupting training\".",
                      "add .repeat() to the chain (tfs.read(..., repeat=True)), or leave steps_per_epoch out",
                      ("ds = ds.repeat()  # before .prefetch",))

    def _check_tensor_slices(self, call: ast.Call) -> None:
        arrays = self.arrays_of(call.args[:1])
        if not arrays:
            return
        total = _total(arrays)
        over = total is not None and total > GRAPHDEF_LIMIT_BYTES
        self._add(self.line_of(call), "tensor-slices", _severity(total),
                  "from_tensor_slices on in-memory arrays" + (f" ({size(total)})" if total is not None else ""),
                  "; ".join(a.describe(n) for n, a in arrays) + ". from_tensor_slices embeds the arrays in the "
                  "dataset's graph as constants: with TensorFlow 2.21 a 0.5 GiB array added 1.5 GiB of peak "
                  "memory (about three copies), and an array over 2 GB fails inside a tf.function (\"Cannot create "
                  "a tensor proto whose content is larger than 2GB\")."
                  + (" These are over 2 GB." if over else _size_clause(total)),
                  _WRITE_ONCE,
                  _FIT_EXAMPLE)

    def _check_sequence_class(self, node: ast.ClassDef) -> None:
        methods = {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        init, getitem = methods.get("__init__"), methods.get("__getitem__")
        if init is None:
            self.notes.append(f"line {self.line_of(node)}: {node.name} (a keras Sequence) shows no __init__: whether "
                              "it holds whole arrays could not be told")
            return
        params = {a.arg for a in init.args.args[1:] + init.args.kwonlyargs}
        sliced, loads_per_batch = set(), False
        if getitem is not None:
            sliced = {n.value.attr for n in ast.walk(getitem) if isinstance(n, ast.Subscript)
                      and isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name)
                      and n.value.value.id == "self"}
            loads_per_batch = any((self.qual(c.func) or "").rsplit(".", 1)[-1] in _PER_ITEM_LOADERS
                                  or (isinstance(c.func, ast.Attribute) and c.func.attr in _PER_ITEM_LOADERS)
                                  for c in calls(getitem))
        held: list[str] = []
        for stmt in ast.walk(init):
            if not isinstance(stmt, ast.Assign):
                continue
            for target in stmt.targets:
                pairs = zip(target.elts, stmt.value.elts) if isinstance(target, ast.Tuple) and isinstance(
                    stmt.value, ast.Tuple) and len(target.elts) == len(stmt.value.elts) else [(target, stmt.value)]
                for t, v in pairs:
                    if not (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"):
                        continue
                    value = self.value(v) if not isinstance(v, ast.Name) else None
                    if isinstance(v, ast.Name) and v.id in params and t.attr in sliced and not loads_per_batch:
                        held.append(f"self.{t.attr} = {v.id} (line {self.line_of(stmt)}), sliced per batch")
                    elif isinstance(value, Array) and value.loaded and not value.mapped:  # read whole from a file
                        held.append(f"self.{t.attr} = {value.text} (line {self.line_of(stmt)})")
        if held:
            self._add(self.line_of(node), "sequence-holds-data", "warning",
                      f"{node.name} (a Sequence) holds whole arrays",
                      f"its __init__ keeps the data itself: {'; '.join(held)}. Batches are then slices of arrays "
                      "already in memory, so the memory is the whole dataset's, whatever the batch size.",
                      _WRITE_ONCE,
                      _FIT_EXAMPLE)

    def _check_sequence_call(self, call: ast.Call, cls: str) -> None:
        arrays = [(n, a) for n, a in self.arrays_of(list(call.args) + [k.value for k in call.keywords])
                  if not a.mapped]
        if not arrays:
            return
        total = _total(arrays)
        self._add(self.line_of(call), "sequence-from-arrays", _severity(total),
                  f"{cls} (a Sequence) built from in-memory arrays"
                  + (f" ({size(total)})" if total is not None else ""),
                  "; ".join(a.describe(n) for n, a in arrays) + f". The arrays are created whole, then handed to "
                  f"{cls} (line {self.sequences[cls].line}): the generator batches what is already in memory."
                  + _size_clause(total),
                  _WRITE_ONCE, _FIT_EXAMPLE)

    def _check_map(self, ds: Dataset, call: ast.Call, line: int) -> None:
        if not ds.records or ds.has("batch", "padded_batch") or not call.args:
            return
        fn = call.args[0]
        if isinstance(fn, ast.Lambda):
            body = fn.body
            parses = any("parse" in (self.qual(c.func) or getattr(c.func, "attr", "")) for c in calls(body))
        elif isinstance(fn, ast.Name) and fn.id in self.functions:
            parses = any("parse" in (self.qual(c.func) or "") for c in calls(self.functions[fn.id]))
        else:
            parses = "parse" in (short(fn)).lower()
        if parses:
            self._add(line, "parse-before-batch", "warning", "records parsed one by one, before .batch",
                      f".map({short(fn, 40)}) parses each record of {ds.source} on its own: tf.data pays its "
                      "per-element cost on every record. Batching the serialized records first parses a whole "
                      "batch in one vectorized tf.io.parse_example call (tfs.read does so).",
                      "batch first, then parse the batch with tf.io.parse_example",
                      ("ds = ds.batch(256).map(lambda s: tf.io.parse_example(s, spec), "
                       "num_parallel_calls=tf.data.AUTOTUNE)",))

    def _check_cache(self, ds: Dataset, call: ast.Call, line: int) -> None:
        name = kw(call, "filename", 0)
        if name is not None and not (isinstance(name, ast.Constant) and name.value == ""):
            return
        nbytes = ds.element.nbytes if ds.element is not None else None
        known = f"the cached data is {size(nbytes)}" if nbytes is not None else \
            "how large the dataset is could not be told from the script"
        self._add(line, "cache-in-memory", _severity(nbytes), ".cache() in memory",
                  f".cache() without a file name keeps every element of {ds.source} in memory from the first "
                  f"epoch on ({known}; after a .map, the cached elements are the mapped, often larger, ones).",
                  "cache to a file (.cache('/tmp/name'), reader.cache: <file prefix>), or not at all",
                  ('ds = ds.cache("/tmp/ds_cache")  # a file cache costs no memory',))

    def _check_shuffle(self, ds: Dataset, call: ast.Call, line: int) -> None:
        node = kw(call, "buffer_size", 0)
        if node is None:
            return
        buffer, whole = self.int_value(node), None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and node.args:
            whole = self.value(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
            whole = self.value(node.value.value)
        if isinstance(whole, Array):
            buffer = whole.rows
        batched = next((self.int_value(kw(c, "batch_size", 0)) for op, c, _ in ds.ops if op == "batch"), None)
        per_element = None
        if ds.element is not None and ds.element.nbytes is not None and ds.element.rows:
            per_element = ds.element.nbytes / ds.element.rows * (batched or 1)
        held = None if buffer is None or per_element is None else int(buffer * (per_element + ELEMENT_OVERHEAD_BYTES))
        if whole is None and (buffer is None or buffer < SHUFFLE_ELEMENTS) and (held is None or held < SMALL_BYTES):
            return
        count = f"{buffer:,} elements" if buffer is not None else "as many elements as the dataset holds"
        self._add(line, "shuffle-buffer", _severity(held) if held is not None else "warning",
                  f"a shuffle buffer of {count}" + (f" ({size(held)})" if held is not None else ""),
                  f".shuffle({short(node)}) holds {count} in memory before the first one comes out"
                  + (" (elements are batches here: it follows .batch)" if batched else "")
                  + (", a copy of the whole dataset" if whole is not None else "")
                  + f"; each costs its bytes plus about {ELEMENT_OVERHEAD_BYTES} B of tf.data's bookkeeping.",
                  "shuffle shards stored in a random order, with a buffer of thousands, not millions "
                  "(tfstream's writer does; reader.shuffle_buffer)")


# ------------------------------------------------------------------------------ files


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
_PYTHON = {"python", "py", "python3", "py3", "ipython", "ipython3"}


def python_fences(text: str) -> list[tuple[int, str]]:
    """The fenced Python blocks of a markdown text: ``(line of the block's first code
    line, code)``, dedented by their fence's indent.

    Example:
        >>> python_fences("Intro\\n```python\\nx = 1\\n```\\n```sh\\nls\\n```\\n")
        [(3, 'x = 1')]
    """
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, start = m.group("fence"), len(m.group("indent")), i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if m.group("lang").lower() in _PYTHON:
            out.append((start + 1, "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip()
                                             for line in lines[start:end])))
        i = end + 1
    return out


def _parse(code: str, repair: bool) -> tuple[ast.Module, list[int], list[int]]:
    """Parse ``code``; with ``repair``, a block whose body is missing (only a comment, as
    in ``class A:  # ... as above ...``) gets a ``pass``. Returns the tree, each of its
    lines' line in ``code``, and the lines of the repaired blocks' headers."""
    lines, line_map, repaired = code.split("\n"), list(range(1, code.count("\n") + 2)), []
    for _ in range(50):
        try:
            return ast.parse("\n".join(lines)), line_map, repaired
        except SyntaxError as e:
            m = re.search(r"expected an indented block after .* on line (\d+)", e.msg or "")
            if not (repair and isinstance(e, IndentationError) and m and e.lineno):
                raise
            header = int(m.group(1))
            indent = re.match(r"[ \t]*", lines[header - 1]).group(0) + "    "
            at = min(e.lineno - 1, len(lines))
            lines.insert(at, indent + "pass")
            line_map.insert(at, line_map[header - 1])
            repaired.append(line_map[header - 1])
    raise SyntaxError("too many empty blocks", ("<fence>", 1, 0, ""))


def check_source(code: str, path: str = "<script>", *, first_line: int = 1, repair: bool = False) -> Report:
    """Check one script's source (see the module doc).

    Args:
        code: Python source.
        path: the file it comes from, for the findings.
        first_line: the file's line of the code's first line (a markdown block's).
        repair: read an empty block (only a comment) as ``pass`` instead of failing.

    Raises:
        SyntaxError: the code is not Python (even repaired).
    """
    tree, line_map, repaired = _parse(code, repair)
    analysis = _Rules(tree, path, [first_line - 1 + n for n in line_map])
    analysis.visit(tree)
    lines = code.split("\n")
    notes = [f"line {first_line - 1 + n}: `{lines[n - 1].strip()[:60]}` has no body (a placeholder); read as "
             f"`pass`" for n in repaired] + analysis.notes
    return Report(path, sort_findings(analysis.findings), tuple(notes))


def _unparsable(e: Exception) -> tuple[int, str]:
    """(line, message) of a failed parse."""
    if isinstance(e, SyntaxError):
        return e.lineno or 1, f"syntax error: {e.msg}"
    return 1, "nested too deep to read" if isinstance(e, RecursionError) else str(e)


def check_file(path: str) -> Report:
    """Check a training script (``.py``), or each fenced Python block of any other text
    file (markdown, an article), with the file's line numbers.

    Raises:
        ScriptError: the file cannot be read, a ``.py`` file is not valid Python (with
            the line), or a text file holds no Python block that parses.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ScriptError(f"{path}: cannot read it: {e.strerror if isinstance(e, OSError) else e}") from None
    script = path.endswith((".py", ".pyw"))
    fences = [] if script else python_fences(text)
    if not fences:
        try:
            return check_source(text, path)
        except (SyntaxError, ValueError, RecursionError) as e:
            line, problem = _unparsable(e)
            what = "not valid Python" if script else "no ```python block, and not Python either"
            raise ScriptError(f"{path}:{line}: {what}: {problem} (the doctor reads the script without running "
                              f"it, but it must parse)") from None
    findings, notes, failed = [], [], []
    for first, code in fences:
        try:
            report = check_source(code, path, first_line=first, repair=True)
        except (SyntaxError, ValueError, RecursionError) as e:
            line, problem = _unparsable(e)
            failed.append(f"the ```python block at line {first - 1} is not Python (line {first - 1 + line}: "
                          f"{problem}); not checked")
            continue
        findings += report.findings
        notes += report.notes
    if len(failed) == len(fences):
        raise ScriptError(f"{path}: {failed[0]}" + (f"; nor are its {len(fences) - 1} other ```python block(s)"
                                                    if len(fences) > 1 else ""))
    at = ", ".join(str(first - 1) for first, _ in fences)
    read = f"{len(fences) - len(failed)} ```python block(s) checked (of {len(fences)}, at line(s) {at})"
    return Report(path, sort_findings(findings), (read, *failed, *notes))
