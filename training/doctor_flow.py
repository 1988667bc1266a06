"""What a training script's names hold, followed through its syntax tree (never run):
the data flow that `tfstream doctor SCRIPT` reasons on (`doctor_script` holds the rules).

`Flow` walks a script in source order and binds names to what the code shows them to
be: an `Array` (a NumPy array or DataFrame in memory, with its shape and dtype where
they are literal: ``np.random.rand(10000, 10)``, ``np.zeros((n, 784), dtype="uint8")``,
``rng.random(...)``, ``.astype``, ``/ 255``; or of unknown size: ``np.load``,
``pd.read_csv``, ``keras.datasets.*.load_data()``), a `Dataset` (a tf.data chain and its
operations, across assignments; ``tfs.read``), a `Model`, an `Instance` of a
``keras.utils.Sequence`` / ``PyDataset`` subclass, or an int. Imports are resolved
(``from tensorflow import keras``, ``import numpy as np``); ``np``, ``pd``, ``tf``,
``tfs`` and ``tfds`` mean what they usually do when a snippet does not import them.
Anything else is None: unknown, never guessed.

Example:
    >>> flow = Flow(ast.parse("import numpy as np\\nX = np.zeros((1000, 10), dtype='float32')"), [1, 2])
    >>> flow.visit(flow.tree)
    >>> flow.names["X"].nbytes, flow.names["X"].describe("X")
    (40000, "X = np.zeros((1000, 10), dtype='float32') (line 2): 1,000 x 10 float32, 39.1 KiB")
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any, Iterator, Optional, Union

from tfstream.pipelines.tables import size

DEFAULT_ALIASES = {"np": "numpy", "pd": "pandas", "tf": "tensorflow", "tfs": "tfstream", "tfds": "tensorflow_datasets"}
ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "half": 2, "int32": 4,
             "uint32": 4, "float32": 4, "single": 4, "int64": 8, "uint64": 8, "float64": 8, "double": 8, "float": 8,
             "int": 8, "complex64": 8, "complex128": 16, "f2": 2, "f4": 4, "f8": 8, "i1": 1, "u1": 1, "i2": 2,
             "i4": 4, "i8": 8}
FILE_LOADERS = {"numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "pickle.load", "joblib.load"}
SAME_BYTES = {"copy", "to_numpy", "flatten", "ravel", "squeeze", "transpose", "reshape", "dropna", "fillna", "drop"}
DATASET_OPS = {"map", "batch", "padded_batch", "unbatch", "rebatch", "prefetch", "cache", "shuffle", "repeat", "take",
                "skip", "filter", "interleave", "flat_map", "apply", "with_options", "shard", "zip", "concatenate",
                "ragged_batch", "bucket_by_sequence_length", "map_with_legacy_function"}


@dataclasses.dataclass(frozen=True)
class Array:
    """A whole array (or DataFrame) in memory, as far as the script shows it."""

    line: int
    text: str
    shape: Optional[tuple[int, ...]] = None
    dtype: Optional[str] = None
    loaded: bool = False  # read from a file: its size is not in the script
    mapped: bool = False  # np.load(..., mmap_mode=...): pages read on demand

    @property
    def nbytes(self) -> Optional[int]:
        if self.shape is None or self.dtype not in ITEMSIZE:
            return None
        return math.prod(self.shape) * ITEMSIZE[self.dtype]

    @property
    def rows(self) -> Optional[int]:
        return self.shape[0] if self.shape else None

    def describe(self, name: str) -> str:
        head = f"{name} = {self.text} (line {self.line})" if name else f"{self.text} (line {self.line})"
        if self.nbytes is not None:
            return f"{head}: {' x '.join(f'{d:,}' for d in self.shape)} {self.dtype}, {size(self.nbytes)}"
        return head + (": a memory-mapped file" if self.mapped else ": size could not be told from the script")


@dataclasses.dataclass(frozen=True)
class Dataset:
    line: int
    source: str
    ops: tuple[tuple[str, ast.Call, int], ...] = ()
    records: bool = False  # serialized TFRecords: parsing is a map of the chain
    tfstream: bool = False  # tfs.read: batched, parsed per batch, prefetched
    element: Optional[Array] = None  # from_tensor_slices: an element is a row of this

    def has(self, *names: str) -> bool:
        return any(op in names for op, _, _ in self.ops)


@dataclasses.dataclass(frozen=True)
class Instance:  # of a Sequence / PyDataset subclass
    cls: str
    call: ast.Call


class Model:
    pass


class Rng:  # np.random.default_rng()
    pass


@dataclasses.dataclass(frozen=True)
class SequenceClass:
    name: str
    line: int


def short(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def kw(call: ast.Call, name: str, position: Optional[int] = None) -> Optional[ast.expr]:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if position is not None and len(call.args) > position and not isinstance(call.args[position], ast.Starred):
        return call.args[position]
    return None


def calls(node: ast.AST) -> Iterator[ast.Call]:
    return (n for n in ast.walk(node) if isinstance(n, ast.Call))



class Flow(ast.NodeVisitor):
    """One pass over a script in source order (``flow.visit(flow.tree)``), binding names
    to values; subclasses check rules at the calls (`doctor_script`).

    Args:
        tree: the script's syntax tree.
        file_line: the file's line of each of the tree's lines (a markdown block's code
            starts further down its file).

    Attributes:
        names: each name's value at this point of the walk.
        sequences: the script's ``keras.utils.Sequence`` / ``PyDataset`` subclasses.
        compiled: names whose ``.compile(...)`` is called (Keras models).
        layers: the last part of every name called (``Dense``, ``LSTM``...).
        functions: the script's functions, by name.
    """

    def __init__(self, tree: ast.Module, file_line: list[int]):
        self.tree, self.file_line = tree, file_line
        self.names: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self.compiled: set[str] = set()
        self.layers: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
        for name, module in DEFAULT_ALIASES.items():
            self.aliases.setdefault(name, module)
        for call in calls(tree):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "compile" and isinstance(func.value, ast.Name):
                self.compiled.add(func.value.id)
            self.layers.add((self.qual(func) or "").rsplit(".", 1)[-1])
        self.sequences: dict[str, SequenceClass] = {}
        for node in ast.walk(tree):  # in order: a subclass of a Sequence subclass is one too
            if isinstance(node, ast.ClassDef) and any(self.is_sequence_base(b) for b in node.bases):
                self.sequences[node.name] = SequenceClass(node.name, self.line_of(node))

    # ---------------------------------------------------------------- names and values

    def line_of(self, node: Union[ast.AST, int]) -> int:
        line = node if isinstance(node, int) else node.lineno
        return self.file_line[min(line, len(self.file_line)) - 1]

    def qual(self, node: ast.AST) -> Optional[str]:
        """The dotted name a call goes to, imports resolved (``tf.keras.utils.Sequence`` ->
        ``keras.utils.Sequence``); None for anything but names and attributes."""
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return None
            name = self.aliases.get(node.id, node.id)
        elif isinstance(node, ast.Attribute):
            base = self.qual(node.value)
            if base is None:
                return None
            name = f"{base}.{node.attr}"
        else:
            return None
        return name[len("tensorflow."):] if name.startswith("tensorflow.keras") else name

    def is_sequence_base(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name) and node.id in getattr(self, "sequences", {}):
            return True
        qual = self.qual(node) or ""
        last = qual.rsplit(".", 1)[-1]
        return last == "PyDataset" or (last == "Sequence" and qual.startswith("keras."))

    def int_value(self, node: Optional[ast.AST]) -> Optional[int]:
        value = self.value(node) if node is not None else None
        return value if type(value) is int else None

    def shape_of(self, node: Optional[ast.AST]) -> Optional[tuple[int, ...]]:
        if isinstance(node, (ast.Tuple, ast.List)):
            dims = [self.int_value(e) for e in node.elts]
            return None if any(d is None for d in dims) else tuple(dims)
        n = self.int_value(node)
        return (n,) if n is not None else None

    def dtype_of(self, node: Optional[ast.AST], default: Optional[str]) -> Optional[str]:
        if node is None:
            return default
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value if node.value in ITEMSIZE else None
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        return name if name in ITEMSIZE else None

    def value(self, node: ast.AST) -> Any:
        """What an expression is, as far as the script shows: an int, an `Array`, a
        `Dataset`, a `Model`, an `Instance`, or None."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Constant):
            return node.value if type(node.value) is int else None
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            if type(left) is int and type(right) is int and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                                                   ast.FloorDiv)):
                return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right,
                        ast.FloorDiv: left // right if right else 0}[type(node.op)]
            array = left if isinstance(left, Array) else right if isinstance(right, Array) else None
            if array is None:
                return None
            dtype = "float64" if isinstance(node.op, ast.Div) and array.dtype not in ("float16", "float32") \
                else array.dtype
            return dataclasses.replace(array, line=self.line_of(node), text=short(node), dtype=dtype)
        if isinstance(node, ast.Attribute):
            base = self.value(node.value)
            if isinstance(base, Array) and node.attr in ("values", "T"):
                return dataclasses.replace(base, line=self.line_of(node), text=short(node))
            return None
        if isinstance(node, ast.Subscript):
            base = self.value(node.value)
            if isinstance(base, Array):  # a part of it: its size is not told
                return dataclasses.replace(base, line=self.line_of(node), text=short(node), shape=None)
            return None
        if isinstance(node, ast.Call):
            return self.call_value(node)
        return None

    def call_value(self, call: ast.Call) -> Any:
        qual = self.qual(call.func) or ""
        line, text = self.line_of(call), short(call)
        func = call.func
        if qual in ("numpy.random.rand", "numpy.random.randn"):
            return Array(line, text, self.shape_of(ast.Tuple(list(call.args))), "float64")
        if qual in ("numpy.random.random", "numpy.random.random_sample", "numpy.random.sample"):
            return Array(line, text, self.shape_of(kw(call, "size", 0)), "float64")
        if qual in ("numpy.random.uniform", "numpy.random.normal"):
            return Array(line, text, self.shape_of(kw(call, "size", 2)), "float64")
        if qual == "numpy.random.randint":
            return Array(line, text, self.shape_of(kw(call, "size", 2)), self.dtype_of(kw(call, "dtype"), "int64"))
        if qual == "numpy.random.default_rng":
            return Rng()
        if qual in ("numpy.zeros", "numpy.ones", "numpy.empty"):
            return Array(line, text, self.shape_of(kw(call, "shape", 0)), self.dtype_of(kw(call, "dtype", 1), "float64"))
        if qual == "numpy.full":
            fill = kw(call, "fill_value", 1)
            default = "float64" if isinstance(fill, ast.Constant) and isinstance(fill.value, float) else "int64"
            return Array(line, text, self.shape_of(kw(call, "shape", 0)), self.dtype_of(kw(call, "dtype", 2), default))
        if qual in FILE_LOADERS or qual.startswith("pandas.read_"):
            mmap = kw(call, "mmap_mode")
            mapped = mmap is not None and not (isinstance(mmap, ast.Constant) and mmap.value is None)
            return Array(line, text, loaded=True, mapped=mapped)
        if qual in ("numpy.array", "numpy.asarray", "numpy.concatenate", "numpy.stack", "numpy.vstack",
                    "numpy.hstack") and call.args and not isinstance(call.args[0], (ast.List, ast.Tuple)):
            base = self.value(call.args[0])
            return base if isinstance(base, Array) else Array(line, text)
        if isinstance(func, ast.Attribute):
            receiver = self.value(func.value)
            if isinstance(receiver, Rng) and func.attr in ("random", "standard_normal", "normal", "uniform",
                                                            "integers"):
                position = 0 if func.attr in ("random", "standard_normal") else 2
                dtype = "int64" if func.attr == "integers" else "float64"
                return Array(line, text, self.shape_of(kw(call, "size", position)), dtype)
            if isinstance(receiver, Array):
                if func.attr == "astype":
                    return dataclasses.replace(receiver, line=line, text=text,
                                               dtype=self.dtype_of(kw(call, "dtype", 0), None))
                if func.attr in SAME_BYTES:
                    return dataclasses.replace(receiver, line=line, text=text)
                return None
            if isinstance(receiver, Dataset) and func.attr in DATASET_OPS:
                records = receiver.records or (func.attr in ("interleave", "flat_map") and bool(call.args) and
                                               (self.qual(call.args[0]) or "").endswith("TFRecordDataset"))
                return dataclasses.replace(receiver, records=records,
                                           ops=receiver.ops + ((func.attr, call, self.line_of(func.end_lineno)),))
        if qual.endswith("data.TFRecordDataset"):
            return Dataset(line, "tf.data.TFRecordDataset", records=True)
        if qual.endswith(("data.Dataset.from_tensor_slices", "data.Dataset.from_tensors")):
            arrays = self.arrays_in(call.args[0]) if call.args else []
            return Dataset(line, qual.rsplit(".", 1)[-1], element=arrays[0][1] if arrays else None)
        if qual.endswith(("data.Dataset.list_files", "data.Dataset.from_generator", "data.Dataset.range",
                          "data.TextLineDataset", "data.Dataset.zip", "data.Dataset.load")):
            return Dataset(line, qual.split("data.", 1)[-1])
        if qual == "tfstream.read":
            repeat = kw(call, "repeat")
            ops = (("repeat", call, line),) if isinstance(repeat, ast.Constant) and repeat.value is True else ()
            return Dataset(line, "tfs.read", ops=ops, tfstream=True)
        if qual.rsplit(".", 1)[-1] in ("Sequential", "Model", "load_model", "build_model") or \
                qual == "keras.models.clone_model":
            return Model()
        if isinstance(func, ast.Name) and func.id in self.sequences:
            return Instance(func.id, call)
        return None

    def arrays_in(self, node: ast.AST) -> list[tuple[str, Array]]:
        """The in-memory arrays an argument holds: a name, or a tuple, list or dict of them."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return [a for e in node.elts for a in self.arrays_in(e)]
        if isinstance(node, ast.Dict):
            return [a for v in node.values if v is not None for a in self.arrays_in(v)]
        value = self.value(node)
        if isinstance(value, Array):
            return [(node.id if isinstance(node, ast.Name) else "", value)]
        return []

    def arrays_of(self, nodes: list[ast.AST]) -> list[tuple[str, Array]]:
        """`arrays_in` of each node, each array once."""
        out: list[tuple[str, Array]] = []
        for name, array in (a for node in nodes for a in self.arrays_in(node)):
            if all(array != seen for _, seen in out):
                out.append((name, array))
        return out

    def bind(self, target: ast.AST, value: Any, node: Optional[ast.AST]) -> None:
        if isinstance(target, ast.Name):
            if value is None:
                self.names.pop(target.id, None)
            else:
                self.names[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == len(target.elts):
                for element, part in zip(target.elts, node.elts):
                    self.bind(element, self.value(part), part)
                return
            qual = (self.qual(node.func) or "") if isinstance(node, ast.Call) else ""
            if qual.endswith((".load_data", "train_test_split")):
                # keras.datasets.*.load_data(), sklearn's train_test_split: whole arrays
                value = Array(self.line_of(node), short(node), loaded=True)
            elif isinstance(value, Array):  # unpacked: parts of it
                value = dataclasses.replace(value, shape=None)
            else:
                value = None
            for element in target.elts:
                self.bind(element, value, None)

    # ---------------------------------------------------------------- the walk

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        value = self.value(node.value)
        for target in node.targets:
            self.bind(target, value, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.bind(node.target, self.value(node.value), node.value)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self.names)  # a parameter is not the module's value of that name
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self.names.pop(a.arg, None)
        self.generic_visit(node)
        self.names = saved

    visit_AsyncFunctionDef = visit_FunctionDef
