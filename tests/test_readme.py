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
    # The subsection ends at the next heading outside a code block ("# " in code is a comment).
    section = ""
    for i, part in enumerate(re.split(r"(```.*?```)", text.split(f"#### {title}", 1)[1], flags=re.S)):
        heading = re.search(r"\n#{1,4} ", part) if i % 2 == 0 else None
        section += part[:heading.start()] if heading else part
        if heading:
            break
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


@pytest.mark.slow
def test_serving_a_sequence_model_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _subsection_code("Serving a sequence model")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    specs = scope["specs"]
    assert {name: (s.dtype.name, s.shape.as_list()) for name, s in specs.items()} == {
        "steps": ("float32", [None, None, 2]), "steps_length": ("int64", [None])}
    out, again, alone = (scope[k].numpy() for k in ("out", "again", "alone"))
    assert out.shape == (2, 1) and ((0 < out) & (out < 1)).all()  # probabilities
    assert (out == again).all() and abs(out[1, 0] - alone[0, 0]) < 1e-6  # the padding is never read
    # every print(...) prints the comment line under it
    lines = code.splitlines()
    stated = [nxt[2:].split("      ")[0] for line, nxt in zip(lines, lines[1:])
              if line.startswith("print(") and nxt.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == stated


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
