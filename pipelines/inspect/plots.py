"""PNG plots of a dataset's manifest statistics (`tfstream inspect --plot`).

Everything is drawn from the manifest, never from the records, so plotting a dataset of
any size reads one small JSON file.
"""

from __future__ import annotations

import io
import re
from typing import Optional

from tfstream.pipelines import fs
from tfstream.pipelines.manifest import CategoricalStatistics, Manifest, NumericStatistics, SequenceStatistics

# Vocabulary plots show the most frequent tokens only: a long tail is unreadable as bars.
TOP_TOKENS = 20


def figures(manifest: Manifest, *, split: Optional[str] = None) -> list[tuple[str, bytes]]:
    """One PNG per feature of ``split``, drawn in memory: ``(file name, PNG bytes)`` pairs
    in schema order (the files `write_plots` writes; the HTML report embeds them).

    Raises:
        ManifestError: the dataset has no split ``split``.
    """
    try:
        # Imported here: matplotlib takes about a second to import, and only plots need it.
        from matplotlib import rc_context
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"tfstream inspect --plot and --html need matplotlib ({e}); "
                          f"install it with `pip install 'matplotlib>=3.7'`") from e

    split = split or manifest.train_split
    stats = manifest.split(split).features
    drawn = []
    for f in manifest.features:
        st = stats.get(f.name)
        draw = _DRAWERS.get(f.kind) if st is not None else None
        if draw is None or (f.kind == "numeric" and f.shape):  # a vector has no single histogram
            continue
        # A Figure with its own Agg canvas, not pyplot: no global backend switch, and no
        # figure left registered in pyplot's state after the function returns.
        # Names and tokens are data, never mathtext: a token "$\bad$" would fail the
        # drawing, and "$5 to $9" would print in italics without its dollars.
        with rc_context({"text.parse_math": False}):
            fig = Figure(figsize=(7, 4), layout="constrained")
            FigureCanvasAgg(fig)
            suffix = draw(fig.add_subplot(), f.name, split, st)
            if suffix is None:
                continue
            png = _png(fig)
        drawn.append((f"{split}-{_file_part(f.name)}-{suffix}.png", png))
    return drawn


def write_plots(manifest: Manifest, out_dir: str, *, split: Optional[str] = None) -> list[str]:
    """Write one PNG per feature of ``split`` into ``out_dir`` and return their paths.

    * numeric scalar feature: histogram of its values, ``<split>-<feature>-histogram.png``
      (only when the manifest records a histogram; older manifests do not);
    * sequence feature: histogram of its lengths, ``<split>-<feature>-length-histogram.png``;
    * categorical feature: its top 20 tokens as horizontal bars,
      ``<split>-<feature>-vocabulary.png`` (only when the split records a vocabulary).

    Args:
        manifest: a loaded manifest.
        out_dir: a directory, created if needed (local or any Beam file system).
        split: the split whose statistics are plotted (default: `Manifest.train_split`).

    Returns:
        The paths written, in schema order.

    Raises:
        ManifestError: the dataset has no split ``split``.

    Example:
        >>> paths = write_plots(load_manifest(dataset_dir), str(tmp_path))
        >>> [p.rsplit("/", 1)[1] for p in paths][:2]
        ['train-month-histogram.png', 'train-day-histogram.png']
    """
    drawn = figures(manifest, split=split)
    fs.makedirs(out_dir)
    written = []
    for name, png in drawn:
        path = fs.join(out_dir, name)
        fs.write_atomic(path, png)
        written.append(path)
    return written


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def learning_curve_panels(history: dict[str, list[float]]) -> list[str]:
    """The metrics `write_learning_curves` draws, one panel each: every column of
    ``history`` but ``epoch`` and the ``val_`` ones (drawn in their metric's panel).

    Example:
        >>> learning_curve_panels({"epoch": [0, 1], "loss": [1, .5], "val_loss": [1, .6], "auc": [.6, .7]})
        ['loss', 'auc']
    """
    names = [k for k in history if k != "epoch" and not k.startswith("val_")]
    names += [k[len("val_"):] for k in history if k.startswith("val_") and k[len("val_"):] not in names]
    return sorted(names, key=lambda k: (k != "loss", names.index(k)))


def write_learning_curves(history: dict[str, list[float]], path: str, *, title: str = "") -> list[str]:
    """Write a PNG of the per-epoch metrics in ``history`` (columns, as `history.csv`
    holds them: ``loss``, ``val_loss``, ``auc``...): one panel per metric
    (`learning_curve_panels`), with the training and the validation values against the
    epoch (1-based).

    Returns:
        The panels' metric names, in the order drawn.

    Example:
        >>> write_learning_curves({"epoch": [0, 1, 2], "loss": [.9, .7, .6], "val_loss": [.95, .8, .75]},
        ...                       str(tmp_path / "curves.png"))
        ['loss']
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = learning_curve_panels(history)
    columns = min(3, max(1, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    fig = Figure(figsize=(4.5 * columns, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    if title:
        fig.suptitle(title)
    fs.write_atomic(path, _png(fig))
    return panels


def _file_part(name: str) -> str:
    # Feature names come from column names, which may hold spaces or slashes.
    return re.sub(r"[^\w.-]+", "_", name)


def _numeric(ax, name: str, split: str, st: NumericStatistics) -> Optional[str]:
    if st.histogram is None:
        return None
    edges, counts = st.histogram.edges, st.histogram.counts
    ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge", edgecolor="white")
    ax.set_title(f"{name}: {st.count or sum(counts):,} values ({split!r} split)")
    ax.set_xlabel(name)
    error = st.histogram.count_error
    ax.set_ylabel("examples" if error is None else "examples (exact)" if error == 0 else f"examples (each ±{error:,})")
    return "histogram"


def _sequence(ax, name: str, split: str, st: SequenceStatistics) -> Optional[str]:
    hist = sorted(st.length.histogram.items())
    if not hist:
        return None
    ax.bar([k for k, _ in hist], [n for _, n in hist], width=1.0, edgecolor="white")
    ax.set_title(f"{name}: lengths of {st.length.count:,} sequences ({split!r} split)")
    ax.set_xlabel("steps per sequence")
    ax.set_ylabel("sequences")
    return "length-histogram"


def _categorical(ax, name: str, split: str, st: CategoricalStatistics) -> Optional[str]:
    vocabulary = st.vocabulary
    if not vocabulary:
        return None
    head = vocabulary[:TOP_TOKENS]
    ax.barh([str(t) for t, _ in head], [n for _, n in head])
    ax.invert_yaxis()  # most frequent at the top
    unique = st.num_unique if st.num_unique is not None else len(vocabulary)
    ax.set_title(f"{name}: top {len(head)} of {unique:,} values ({split!r} split)")
    ax.set_xlabel("examples")
    ax.set_ylabel("token")
    return "vocabulary"


_DRAWERS = {"numeric": _numeric, "sequence": _sequence, "categorical": _categorical}
