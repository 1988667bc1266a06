"""Tables and a plot of scheduled retraining's run records (``runs.jsonl``) and model
versions: what `tfstream retrain` prints after a run, and `tfstream models runs|list`.

Example:
    >>> records = [{"run_id": "r1", "window": ["2013-01"], "metric": "log_loss", "exit_code": 0,
    ...             "decision": "promoted", "candidate": {"scores": {"log_loss": 0.31}}, "champion": None,
    ...             "promoted_version": 1, "champion_version": None, "durations": {"total": 40.2},
    ...             "reason": "no champion yet"}]
    >>> print(format_runs(records, terminal=False).splitlines()[2].split()[:8])
    ['2013-01', '2013-01', '1', 'log_loss', '-', '0.31', '-', '-']
    >>> champion_series(records)
    [('2013-01', 0.31)]
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from tfstream.pipelines.tables import render_table

RUN_HEADERS = ("newest span", "window", "spans", "metric", "baseline", "candidate", "champion", "paired z", "decision",
               "champion after", "seconds")


def _score(part: Optional[Mapping[str, Any]], metric: Optional[str]) -> Optional[float]:
    if not part or not metric:
        return None
    value = (part.get("scores") or {}).get(metric)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def champion_after(record: Mapping[str, Any]) -> Optional[int]:
    """The champion's version once the run ended."""
    if record.get("promoted_version") is not None:
        return record["promoted_version"]
    return record.get("champion_version")


def baseline_score(record: Mapping[str, Any]) -> Optional[float]:
    """The best trivial baseline's proper score on the gate data (`metrics.beats`)."""
    value = ((record.get("candidate") or {}).get("beats_baseline") or {}).get("baseline")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def paired_z(record: Mapping[str, Any]) -> Optional[float]:
    """The gate's paired z: against the champion, or against the baseline without one."""
    champion, candidate = record.get("champion") or {}, record.get("candidate") or {}
    test = champion.get("vs_champion") if champion else candidate.get("vs_baseline")
    z = (test or {}).get("z")
    return round(z, 2) if isinstance(z, (int, float)) and math.isfinite(z) else None


def run_row(record: Mapping[str, Any]) -> list[Any]:
    window = record.get("window") or []
    metric = record.get("metric")
    return [window[-1] if window else "-", f"{window[0]}..{window[-1]}" if len(window) > 1 else
            (window[0] if window else "-"), len(window), metric or "-", baseline_score(record),
            _score(record.get("candidate"), metric), _score(record.get("champion"), metric), paired_z(record),
            record.get("decision", "-"), champion_after(record), (record.get("durations") or {}).get("total")]


def format_runs(records: Sequence[Mapping[str, Any]], *, terminal: Optional[bool] = None,
                title: Optional[str] = None) -> str:
    """One row per run: the window, both models' gate metric on the newest span's eval
    split, the decision and the champion's version after it."""
    return render_table(RUN_HEADERS, [run_row(r) for r in records], terminal=terminal, title=title)


def format_record(record: Mapping[str, Any], *, terminal: Optional[bool] = None) -> str:
    """What `tfstream retrain` prints after a run: its row, and why."""
    lines = [format_runs([record], terminal=terminal, title=f"retrain run {record.get('run_id')}")]
    lines.append(f"decision: {record.get('decision')} (exit status {record.get('exit_code')}): "
                 f"{record.get('reason', '')}")
    warm = record.get("warm_start")
    if warm:
        lines.append(f"warm start: {'yes' if warm.get('used') else 'no'} ({warm.get('reason')})")
    made = [d for d in record.get("datasets") or [] if d.get("made")]
    if made:
        lines.append("datasets written: " + ", ".join(f"{d['span']} ({d['made']})" for d in made))
    if record.get("export_dir"):
        lines.append(f"champion export (serves raw features): {record['export_dir']}")
    return "\n".join(lines)


def champion_series(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """``(newest span, the champion's gate metric after the run)`` for each run that
    scored a champion or promoted one: the promoted candidate's score, else the kept
    champion's, on that span's eval split."""
    out = []
    for record in records:
        metric, window = record.get("metric"), record.get("window") or []
        if record.get("exit_code") == 0:
            value = _score(record.get("candidate"), metric)
        elif record.get("exit_code") == 10:
            value = _score(record.get("champion"), metric)
        else:
            continue
        if value is not None and math.isfinite(value) and window:
            out.append((window[-1], value))
    return out


def plot_runs(records: Sequence[Mapping[str, Any]], path: str, *, title: str = "") -> str:
    """A PNG of the champion's gate metric span by span (the candidates' as well), at
    ``path``; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfstream.pipelines import fs

    decided = [r for r in records if r.get("exit_code") in (0, 10)]
    metric = next((r.get("metric") for r in decided if r.get("metric")), "metric")
    figure = Figure(figsize=(8, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    series = champion_series(decided)
    if series:
        ax.plot([s for s, _ in series], [v for _, v in series], marker="o", label="champion after the run")
    baselines = [(r["window"][-1], baseline_score(r)) for r in decided if r.get("window")]
    baselines = [(s, v) for s, v in baselines if v is not None and math.isfinite(v)]
    if baselines and metric in ("log_loss", "rmse"):  # the proper score: what the baselines are scored by
        ax.plot([s for s, _ in baselines], [v for _, v in baselines], linestyle="--", color="grey", alpha=0.7,
                label="trivial baseline (training prior / mean)")
    candidates = [(r["window"][-1], _score(r.get("candidate"), metric)) for r in decided if r.get("window")]
    candidates = [(s, v) for s, v in candidates if v is not None and math.isfinite(v)]
    if candidates:
        ax.scatter([s for s, _ in candidates], [v for _, v in candidates], marker="x", color="grey",
                   label="candidate", zorder=3)
    for r in decided:
        if r.get("exit_code") == 0 and r.get("window"):
            ax.annotate(f"v{r.get('promoted_version')}", (r["window"][-1], _score(r.get("candidate"), metric)),
                        textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xlabel("newest span (its eval split scores both models)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"champion {metric}, span by span")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.tick_params(axis="x", labelrotation=45)
    figure.tight_layout()
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    fs.write_atomic(path, buffer.getvalue())
    return path


VERSION_HEADERS = ("version", "champion", "created", "window", "metric", "value", "warm start", "files")


def format_versions(versions: Sequence[Any], *, terminal: Optional[bool] = None) -> str:
    """One row per kept model version (`registry.Version`)."""
    rows = []
    for v in versions:
        info = v.info or {}
        window = info.get("window") or []
        rows.append([v.number, "yes" if v.is_champion else "", str(v.created_at)[:19],
                     f"{window[0]}..{window[-1]}" if len(window) > 1 else (window[0] if window else "-"),
                     info.get("metric", "-"), info.get("value"), "yes" if info.get("warm_start") else "no",
                     len(v.files)])
    return render_table(VERSION_HEADERS, rows, terminal=terminal)
