"""The public API: `import tfstream as tfs` and its eleven names."""

import inspect
import subprocess
import sys

import tfstream

PUBLIC = ["JobConfig", "Manifest", "ReadOptions", "build_model", "load_config", "load_manifest", "preprocess",
          "read", "retrain", "train", "write_arrays"]


def test_the_public_api_is_eleven_documented_objects():
    assert tfstream.__all__ == PUBLIC
    for name in PUBLIC:
        obj = getattr(tfstream, name)
        assert not inspect.ismodule(obj), f"tfstream.{name} is a module"
        assert (inspect.getdoc(obj) or "").strip(), f"tfstream.{name} has no docstring"
    assert "read" in dir(tfstream) and "__version__" in dir(tfstream)


def test_subpackage_names_resolve_to_objects_not_modules():
    """A lazily exported name must not be shadowed by a submodule of the same name."""
    import tfstream.training

    for name in tfstream.training.__all__:
        assert not inspect.ismodule(getattr(tfstream.training, name)), f"tfstream.training.{name} is a module"


def test_import_tfstream_and_load_a_config_imports_neither_tensorflow_nor_beam():
    code = ("import sys, tfstream as tfs; tfs.load_config('configs/flights_dense.yaml'); tfs.Manifest; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'apache_beam') if m in sys.modules))")
    from tfstream.testing import ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_an_unknown_name_says_so():
    import pytest

    with pytest.raises(AttributeError, match="module 'tfstream' has no attribute 'reed'"):
        tfstream.reed  # noqa: B018
