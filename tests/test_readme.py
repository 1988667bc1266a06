"""The README's code is run, so that it stays true."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section_code(title: str) -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"no python block under '{title}'"
    return "\n".join(blocks)


def _subsection_code(title: str) -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = re.split(r"\n#{1,4} ", text.split(f"#### {title}", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"no python block under '{title}'"
    return "\n".join(blocks)


@pytest.mark.slow
def test_given_splits_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    scope: dict = {}
    code = _subsection_code("Given splits: train and test files, a split column")
    exec(compile(code, "README.md", "exec"), scope)
    manifest = scope["manifest"]
    assert (manifest.split_names, manifest.num_examples("test")) == (["train", "validation", "test"], 2000)
    assert manifest.num_examples("train") + manifest.num_examples("validation") == 8000
    assert 600 < manifest.num_examples("validation") < 1000
    assert "(['train', 'validation', 'test'], 2000)" in code  # what the block says it gives


@pytest.mark.slow
def test_seed_examples_rewritten_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    scope: dict = {}
    exec(compile(_section_code("The seed's three examples, rewritten"), "README.md", "exec"), scope)
    model, manifest = scope["model"], scope["manifest"]
    assert manifest.num_examples("train") + manifest.num_examples("eval") == 1000
    features, _ = next(iter(scope["tfs"].read(manifest, "train", batch_size=16, seed=0)))
    assert tuple(features["series"].shape) == (16, 10, 1)
    assert model.output_shape == (None, 1)
    for job in ("toy", "series"):
        assert os.path.exists(tmp_path / "runs" / job / "dataset" / "manifest.json")


def test_readme_commands_exist():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    makefile = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read()
    for target in ("demo", "test"):
        assert f"make {target}" in text and re.search(rf"^{target}:", makefile, re.M)
    for name in re.findall(r"configs/(\w+\.yaml)", text):
        assert os.path.exists(os.path.join(ROOT, "configs", name)), name


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(ROOT, "configs"))))
def test_every_shipped_config_loads(name):
    from tfstream.pipelines.config import load_config

    config = load_config(os.path.join(ROOT, "configs", name))
    assert config.schema().features and config.model.type in ("dense", "lstm")
    assert config.schema().label.task in ("binary", "multiclass", "regression")
