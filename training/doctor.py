"""What `tfstream doctor` reports, and how: typed findings, the exit status, a table, JSON.

`tfstream doctor` points at the known causes of out-of-memory errors and slow input in
a training script (`doctor_script`, read as a syntax tree, never run) or in a job
config and its dataset (`doctor_config`, held to the memory planner). Both return a
`Report`: one `Finding` per cause, with its line, what it is, why (with the evidence
and, where known, the size), and the fix; and notes for what the doctor could not tell.

Severities: ``error`` (this fails, or takes more memory than there is), ``warning``
(a habit that costs memory or time as the data grows), ``info`` (the same habit, at a
size where it is harmless today). `exit_status`: 0 when nothing is at ``warning`` or
above, 1 otherwise; the CLI adds 2 for a usage error (a file it cannot read or parse).

Example:
    >>> report = Report("train.py", (Finding("train.py", 12, "batch-size", "warning", "batch_size=4096 is large",
    ...                                      "activations grow with the batch", "use 32 to 256"),))
    >>> exit_status(report)
    1
    >>> print(format_report(report, terminal=False))  # doctest: +NORMALIZE_WHITESPACE
    train.py: 1 finding (1 warning)
    <BLANKLINE>
    where         severity   what                       fix
    ------------ ---------- -------------------------- --------------
    train.py:12   warning    batch_size=4096 is large   use 32 to 256
    <BLANKLINE>
    train.py:12 [batch-size] activations grow with the batch
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any, Optional

from tfstream.pipelines.tables import render_table

SEVERITIES = ("info", "warning", "error")
# `tfstream doctor`'s exit status with findings at warning level or above.
EXIT_FINDINGS = 1
WIDTH = 100  # the findings' explanations are wrapped to it


@dataclasses.dataclass(frozen=True)
class Finding:
    """One known cause of running out of memory, or of slow input.

    Attributes:
        path: the file the finding is in (a script, a markdown file, a config).
        line: its line in that file (1-based; None where there is none, e.g. a config
            key left at its default).
        code: the rule, a short stable name (``fit-arrays``, ``cache-in-memory``, ...).
        severity: ``info``, ``warning`` or ``error`` (see the module doc).
        what: what is wrong, in a few words (the table's cell).
        why: the evidence and what it costs: the value, its size where known.
        fix: what to do, in a few words.
        example: code for the fix, a few lines (may be empty).
    """

    path: str
    line: Optional[int]
    code: str
    severity: str
    what: str
    why: str
    fix: str
    example: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected one of {SEVERITIES}, got {self.severity!r}")

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"example": list(self.example)}


@dataclasses.dataclass(frozen=True)
class Report:
    """What the doctor found in one file (a script, a markdown file, or a config).

    Attributes:
        path: the file examined.
        findings: in the order of their lines.
        notes: what was read, repaired, or could not be told (no effect on the exit
            status).
    """

    path: str
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in reversed(SEVERITIES)}

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "exit_status": exit_status(self), "counts": self.counts(),
                "findings": [f.to_json() for f in self.findings], "notes": list(self.notes)}


def sort_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """By line (None last), then from the most severe; one finding per (line, code)."""
    seen, out = set(), []
    for f in sorted(findings, key=lambda f: (f.line is None, f.line or 0, -SEVERITIES.index(f.severity), f.code)):
        if (f.line, f.code) not in seen:
            seen.add((f.line, f.code))
            out.append(f)
    return tuple(out)


def exit_status(report: Report) -> int:
    """0 when no finding is at ``warning`` or above, else `EXIT_FINDINGS` (1)."""
    return EXIT_FINDINGS if any(f.severity != "info" for f in report.findings) else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_report(report: Report, *, terminal: Optional[bool] = None) -> str:
    """The report as text: a line of counts, a table (where, severity, what, fix), then
    each finding's evidence and example fix, then the notes."""
    counts = ", ".join(_plural(n, s) for s, n in report.counts().items() if n)
    head = f"{report.path}: {_plural(len(report.findings), 'finding')}" + (f" ({counts})" if counts else "")
    out = [head]
    if report.findings:
        out += ["", render_table(["where", "severity", "what", "fix"],
                                 [[f.where, f.severity, f.what, f.fix] for f in report.findings], terminal=terminal)]
        out.append("")
        shown: dict[tuple[str, ...], str] = {}
        for f in report.findings:
            out += textwrap.wrap(f"{f.where} [{f.code}] {f.why}", width=WIDTH, subsequent_indent="  ",
                                 break_on_hyphens=False)
            if not f.example:
                continue
            if f.example in shown:
                out.append(f"    (the example fix is as at {shown[f.example]})")
            else:
                out += [f"    {line}" for line in f.example]
                shown[f.example] = f"line {f.line}" if f.line is not None else f.path
    if report.notes:
        out += ["", "notes:"] + [f"  - {note}" for note in report.notes]
    return "\n".join(out)
