"""The layout's rules, checked on the source: dependencies point one way, Beam stays on the
write side, TensorFlow off it, and nothing edits ``sys.path``.

    tfstream (API, CLI) → training → pipelines.read ─┐
                                  → pipelines.inspect ├→ pipelines (config, manifest,
                          pipelines.write ───────────┘   shards, fs, tables) → transforms

Every import in every module is read from its syntax tree, including the imports inside
functions (the lazy ones), so a cycle cannot hide behind a deferred import.
"""

import ast
import os

import pytest

from tfstream.testing import ROOT, package_modules

# layer → the layers it may import (besides itself)
ALLOWED = {
    "tfstream": {"training", "read", "write", "inspect", "core", "transforms"},
    "training": {"read", "inspect", "core", "transforms"},
    "read": {"core", "transforms"},
    "write": {"core", "transforms"},
    "inspect": {"core", "transforms"},
    "core": {"transforms"},
    "transforms": set(),
}
# Beam only on the write side. One exception: `pipelines.fs` reaches remote file systems
# (gs://, s3://...) through Beam's FileSystems, imported only for a remote path, so that
# a dataset written through Beam's file systems is read back through the same ones.
BEAM_ALLOWED = {"write"}
BEAM_EXCEPTIONS = {"tfstream.pipelines.fs"}
# TensorFlow and Keras never on the write side, nor in the shared core. `transforms.codecs`
# holds the read side's per-batch parse next to the write side's encoder (one codec), and
# imports TensorFlow only inside that function.
TF_FORBIDDEN = {"write", "core"}
TF_EXCEPTIONS = {"tfstream.transforms.codecs"}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["tfstream", "pipelines"]:
        if len(parts) > 2 and parts[2] in ("read", "write", "inspect"):
            return parts[2]
        return "core"
    if parts[:2] == ["tfstream", "training"]:
        return "training"
    if parts[:2] == ["tfstream", "transforms"]:
        return "transforms"
    return "tfstream"


def _source(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


def _imports(module: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(_source(module))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            # `from tfstream.pipelines.write import drift` imports a module too
            out.update(f"{node.module}.{alias.name}" for alias in node.names if node.module.startswith("tfstream"))
    return out


MODULES = package_modules()


def test_every_package_module_is_found():
    assert {"tfstream.cli", "tfstream.pipelines.config", "tfstream.pipelines.write.beam_pipeline",
            "tfstream.pipelines.read.reader", "tfstream.pipelines.inspect.report", "tfstream.training.trainer",
            "tfstream.transforms.schema"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_dependencies_point_one_way(module):
    layer = _layer(module)
    wrong = sorted(name for name in _imports(module) if name.startswith("tfstream.") and name != "tfstream"
                   and _layer(name) != layer and _layer(name) not in ALLOWED[layer])
    assert not wrong, f"{module} ({layer}) imports {wrong}; {layer} may import {sorted(ALLOWED[layer])}"


@pytest.mark.parametrize("module", MODULES)
def test_beam_and_tensorflow_stay_on_their_side(module):
    layer = _layer(module)
    imported = {name.split(".")[0] for name in _imports(module)}
    if "apache_beam" in imported and module not in BEAM_EXCEPTIONS:
        assert layer in BEAM_ALLOWED, f"{module} ({layer}) imports apache_beam; only pipelines.write may"
    if imported & {"tensorflow", "keras"} and module not in TF_EXCEPTIONS:
        assert layer not in TF_FORBIDDEN, f"{module} ({layer}) imports {sorted(imported & {'tensorflow', 'keras'})}"


def test_no_sys_path_edits_anywhere():
    needles = tuple("sys.path." + verb for verb in ("insert", "append", "extend"))  # not literally here
    offenders = []
    for top in ("tfstream", "pipelines", "transforms", "training", "benchmarks", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                    if any(needle in text for needle in needles):
                        offenders.append(os.path.relpath(path, ROOT))
    assert offenders == [], offenders
