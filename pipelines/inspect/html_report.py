"""A dataset's report as one self-contained web page (`tfstream inspect --html`).

The page holds what `tfstream inspect` prints (`report.report_blocks`: the same
headings, lines and tables, each cell formatted by `tables.cell`) and every plot of
`tfstream inspect --plot` (`plots.figures`), embedded as ``data:`` PNG images. Its style
is inline and it has no script and no external URL, so it opens anywhere, offline, and
can be mailed or attached to a ticket as one file. Every string that comes from the
data (feature names, tokens, file names, drift details) is escaped: a category value
``<script>`` shows as text.

Example:
    >>> page = format_html(load_manifest(dataset_dir))
    >>> page.startswith("<!DOCTYPE html>"), page.count("<table>") > 5, "http" in page
    (True, True, False)
"""

from __future__ import annotations

import base64
import html
from typing import Optional

from tfstream.pipelines import fs
from tfstream.pipelines.inspect.plots import figures
from tfstream.pipelines.inspect.report import Heading, Preformatted, Subheading, Table, report_blocks
from tfstream.pipelines.manifest import Manifest
from tfstream.pipelines.tables import cell, numeric_columns

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _table(table: Table) -> str:
    rows = [[cell(v) for v in row] for row in table.rows]
    numeric = numeric_columns(rows, len(table.headers))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"num\">{html.escape(c)}</td>" if num else f"<td>{html.escape(c)}</td>"
                         for c, num in zip(row, numeric)) + "</tr>"
        for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _block(block) -> str:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Subheading):
        return f"<h3>{html.escape(block)}</h3>"
    if isinstance(block, Heading):
        return f"<h2>{html.escape(block)}</h2>"
    if isinstance(block, Preformatted):
        return f"<pre>{html.escape(block)}</pre>"
    return f"<p>{html.escape(str(block).strip())}</p>"


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(name)}\">"
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def format_html(manifest: Manifest, *, split: Optional[str] = None) -> str:
    """The report of `tfstream inspect` and its plots, as one HTML page.

    Args:
        manifest: a loaded manifest.
        split: the split whose statistics are shown and plotted (default:
            `Manifest.train_split`).

    Raises:
        ManifestError: the dataset has no split ``split``.
    """
    split = split or manifest.train_split
    blocks = report_blocks(manifest, train_split=split)
    drawn = figures(manifest, split=split)
    plots = [f"<h2>{html.escape(f'plots ({split!r} split; {len(drawn)} drawn from the manifest)')}</h2>"]
    plots += [_figure(name, png) for name, png in drawn] or ["<p>nothing to plot for this split</p>"]
    title = html.escape(f"tfstream inspect: {manifest.name}")
    return "\n".join([
        "<!DOCTYPE html>",
        "<html lang=\"en\">",
        f"<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{_STYLE}</style>\n</head>",
        "<body>",
        f"<h1>{title}</h1>",
        *(_block(b) for b in blocks),
        *plots,
        "</body>",
        "</html>",
        "",
    ])


def write_html(manifest: Manifest, path: str, *, split: Optional[str] = None) -> str:
    """Write `format_html` to ``path`` (local or any Beam file system; replaced whole)
    and return the path."""
    fs.write_atomic(path, format_html(manifest, split=split).encode("utf-8"))
    return path
