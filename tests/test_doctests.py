"""Every ``>>>`` example in the package runs, and shows what it says.

The examples are run module by module, imported by their package name (so a module is
never imported twice under two names), with a namespace of small real datasets:
``dataset_dir`` (a flights slice), ``sequence_dataset_dir`` (a digits slice) and
``tmp_path``, from the working directory of the checkout (examples may name
``configs/*.yaml``). An example that needs no dataset runs in the fast loop; the others
are ``slow``.
"""

import doctest
import importlib
import io

import pytest

from tfstream.testing import ROOT, package_modules

MODULES = package_modules()
# Modules whose examples read a preprocessed dataset (or train on one).
_NEED_DATA = ("tfstream.pipelines.manifest", "tfstream.pipelines.window", "tfstream.pipelines.read",
              "tfstream.pipelines.inspect", "tfstream.training", "tfstream.pipelines.write.arrays",
              "tfstream.pipelines.write.tfds_metadata")


def _needs_data(module: str) -> bool:
    return module == "tfstream" or any(module == p or module.startswith(p + ".") for p in _NEED_DATA)


def _examples(module: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(importlib.import_module(module), module) if t.examples]


@pytest.mark.parametrize("module", [pytest.param(m, marks=pytest.mark.slow) if _needs_data(m) else m
                                    for m in MODULES])
def test_examples_run(module, request, tmp_path, monkeypatch):
    tests = _examples(module)
    if not tests:
        return
    namespace = {"tmp_path": tmp_path}
    if _needs_data(module):
        namespace["dataset_dir"] = request.getfixturevalue("flights_dataset")
        namespace["sequence_dataset_dir"] = request.getfixturevalue("digits_dataset")
    # Names the examples use without importing them, as a reader of the docs would.
    from tfstream.pipelines.config import ReadOptions, TrainConfig, load_config, replace
    from tfstream.pipelines.manifest import load_manifest

    namespace.update(load_config=load_config, load_manifest=load_manifest, ReadOptions=ReadOptions,
                     TrainConfig=TrainConfig, replace=replace)
    monkeypatch.chdir(ROOT)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    for test in tests:
        test.globs = {**namespace, **test.globs}
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


def test_no_example_is_skipped():
    """An example either runs or is not written as one: no ``+SKIP`` in the package."""
    skipped = [f"{m}: {t.name}" for m in MODULES for t in _examples(m)
               if any(e.options.get(doctest.SKIP) for e in t.examples)]
    assert skipped == []


def test_the_package_has_examples():
    assert sum(len(t.examples) for m in MODULES for t in _examples(m)) > 80
