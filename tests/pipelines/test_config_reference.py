import os

from tfstream.pipelines.config_reference import END, START, main, reference_block, reference_markdown

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def test_readme_holds_the_current_config_reference():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} ... {END} block"
    assert reference_block() in text, (
        "README.md's config reference is out of date (a config model changed); regenerate it with "
        "`python -m tfstream.pipelines.config_reference --write README.md`")


def test_one_row_per_key_of_every_section():
    from tfstream.pipelines import config
    from tfstream.pipelines.config_service import ServiceOptions

    table = reference_markdown()
    rows = [row.strip("| ").split(" | ") for row in table.splitlines()[2:]]
    keys = [(section.strip("`"), key.strip("`")) for section, key, *_ in rows]
    assert len(keys) == len(set(keys))
    sections = {"source": config.SourceConfig, "features[]": config.FeatureConfig, "label": config.LabelConfig,
                "model": config.ModelConfig, "split": config.SplitConfig, "split.carve": config.CarveConfig,
                "output": config.OutputConfig,
                "reader": config.ReadOptions, "train": config.TrainConfig, "validation.drift": config.DriftConfig,
                "retrain": config.RetrainConfig, "source.sequence": config.SequenceTableConfig,
                "reader.service": ServiceOptions}
    for section, model in sections.items():
        fields = [k for k, f in model.model_fields.items() if k not in ("carve", "sequence", "service")]  # a section: own rows
        assert [k for s, k in keys if s == section] == fields, section
    assert [k for s, k in keys if s == "validation"] == ["max_bad_fraction"]
    # `split.carve` and `source.sequence` are sections (counted as fields of theirs), `validation` one key;
    # `reader.service` too is a section, a field of `reader` without a row of its own
    assert keys[0] == ("(top level)", "name") and \
        len(keys) == sum(len(m.model_fields) for m in sections.values()) - 1
    assert all(row[4] for row in rows), "every key has a description"
    assert "| `reader` | `batch_size` | integer | `256` | Records per batch" in table
    assert '| `features[]` | `on_nan` | `error`, `drop`, `impute` | `"error"` |' in table
    assert '| `split` | `fractions` | mapping of string → number | `null` | Split name → fraction of the rows, adding ' \
           'up to 1 (default, when no split is given: {train: 0.8, eval: 0.2})' in table
    assert '| `source` | `splits` | mapping of string → string or list of strings | `null` |' in table


def test_write_rewrites_only_the_block(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{START}\nold table\n{END}\noutro\n", encoding="utf-8")
    main(["--write", str(doc)])
    assert doc.read_text(encoding="utf-8") == f"intro\n{reference_block()}\noutro\n"
    main(["--write", str(doc)])
    assert capsys.readouterr().out.splitlines() == [f"{doc}: updated", f"{doc}: already current"]
