"""Tables for people: the one table renderer of tfstream (`rich`).

`tfstream inspect`, `tfstream summary`, the trainer's memory plan and the benchmarks'
table all print through `render_table`. On a terminal the table is drawn by rich, with
a bold header; anywhere else (a pipe, a file, a test) it is plain ASCII text, so that
reports saved to files and read by scripts stay plain.

Example:
    >>> print(render_table(["a", "n"], [["x", 1], ["yy", 22_000]], terminal=False))
    a         n
    --- -------
    x         1
    yy   22,000
    >>> print(render_table(["token"], [["[pad]"], [":smile:"], ["[/s]"]], terminal=False))  # data, not markup
    token
    -------
    [pad]
    :smile:
    [/s]
"""

from __future__ import annotations

import io
import shutil
import sys
from typing import Any, Iterable, Optional, Sequence

# Rich's SIMPLE_HEAD box in ASCII, with a gap between the columns' rules.
_PLAIN_BOX_LINES = "    \n    \n -  \n    \n    \n    \n    \n    \n"


def cell(value: Any) -> str:
    """A value as a table cell: thousands separators, 4 significant digits for small
    floats, ``-`` for None, yes/no for booleans.

    Example:
        >>> [cell(v) for v in (None, True, 1234567, 0.123456, 12345.6, "x")]
        ['-', 'yes', '1,234,567', '0.1235', '12,346', 'x']
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def size(n: float) -> str:
    """A byte count in B, KiB, MiB or GiB.

    Example:
        >>> size(512), size(3 * 2**20)
        ('512 B', '3.0 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return text in ("", "-")


def numeric_columns(rows: Sequence[Sequence[str]], width: int) -> list[bool]:
    """Which of ``width`` columns hold only numbers (cells as `cell` formats them), to be
    right-aligned; an empty table has none."""
    return [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(width)]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, terminal: Optional[bool] = None,
                 title: Optional[str] = None) -> str:
    """A table as text: columns of numbers right-aligned, cells formatted by `cell`.

    Args:
        headers: the column names.
        rows: the rows, one value per column.
        terminal: draw for a terminal (rich's lines and a bold header, as wide as the
            terminal) or as plain ASCII text; default: whether standard output is a
            terminal.
        title: a line above the table.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = [[cell(v) for v in row] for row in rows]
    numeric = numeric_columns(rows, len(headers))
    if terminal is None:
        terminal = sys.stdout.isatty()
    table = Table(box=box.SIMPLE_HEAD if terminal else box.Box(_PLAIN_BOX_LINES, ascii=True),
                  show_edge=False, pad_edge=False, header_style="bold" if terminal else None,
                  title=title, title_justify="left", title_style=None)
    for header, is_number in zip(headers, numeric):
        table.add_column(header, justify="right" if is_number else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    out = io.StringIO()
    # Cells are data (tokens, class names, file names): never rich markup nor emoji codes.
    console = Console(file=out, force_terminal=terminal, no_color=not terminal, highlight=False, soft_wrap=False,
                      markup=False, emoji=False,
                      width=shutil.get_terminal_size().columns if terminal else 100_000,
                      color_system="auto" if terminal else None)
    console.print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())
