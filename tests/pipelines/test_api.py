import importlib
import inspect
import pkgutil

import tfstream.pipelines
import tfstream.training
import tfstream.transforms


def test_public_names_resolve_to_objects_not_modules():
    """A lazily exported name must not be shadowed by a submodule of the same name."""
    for package in (tfstream.pipelines, tfstream.transforms, tfstream.training):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        for name in package.__all__:
            assert not inspect.ismodule(getattr(package, name)), f"{package.__name__}.{name} is a module"
