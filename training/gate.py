"""The gate of scheduled retraining: does the candidate replace the champion?

Both models are scored on the same held-out data, the newest span's eval split, which
neither trained on. The candidate is promoted only when all of these hold:

1. its gate metric (``retrain.metric``) is a finite number;
2. no drift finding is an error (``validation.drift.on_drift: error``);
3. it beats the trivial baselines: its proper score (log-loss; squared error for
   regression) is lower than the best baseline's by ``train.min_improvement``
   (`metrics.beats`) **and** the improvement passes a paired test (below), so a model
   that learned nothing, or learned from shuffled labels, is never promoted, with or
   without a champion: on a small eval split, noise alone moves a score by more than 1%;
4. with a champion that was scored: its gate metric is better than the champion's by
   more than ``retrain.min_improvement`` of it (relative), and its proper score is
   lower than the champion's by more than noise (the paired test). A champion whose
   metric is not a finite number on this data (it broke) is replaced by any candidate
   that passes 1-3.

The paired test: on the same examples, the per-example losses of two models
(`evaluation.example_losses`) differ by ``d_i``; the candidate is better beyond noise
when ``mean(d) > z × sd(d) / sqrt(n)``, ``z`` the one-sided normal quantile of
``retrain.significance`` (0.01: z = 2.33). Per-example differences make the test far
sharper than comparing two averages: both models err on the same hard examples.

Example:
    >>> d = decide("log_loss", candidate={"log_loss": 0.30}, champion={"log_loss": 0.31},
    ...            beats_baseline=True, min_improvement=0.0)
    >>> d.promote, d.reason
    (True, "candidate log_loss 0.3 is better than the champion's 0.31")
    >>> noise = decide("log_loss", candidate={"log_loss": 0.30}, champion={"log_loss": 0.31}, beats_baseline=True,
    ...                min_improvement=0.0, vs_champion=Paired(0.01, 0.02, 0.5), z_needed=2.33)
    >>> noise.promote, noise.reason
    (False, "candidate log_loss 0.3 is better than the champion's 0.31, but not beyond noise: paired z = 0.5 < 2.33")
    >>> decide("log_loss", candidate={"log_loss": float("nan")}, champion=None, beats_baseline=True,
    ...        min_improvement=0.0).reason
    'candidate log_loss is nan, not a finite number: a broken model is never promoted'
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from tfstream.pipelines.config_retrain import LOWER_IS_BETTER


@dataclasses.dataclass(frozen=True)
class Paired:
    """A paired comparison of per-example losses: the mean improvement (positive: the
    candidate's losses are lower), its standard error, and ``z = mean / se``."""

    mean: float
    se: float
    z: float

    def to_json(self) -> dict[str, float]:
        return {"mean_improvement": self.mean, "se": self.se, "z": self.z}


def paired_improvement(reference, candidate) -> Optional[Paired]:
    """How much lower ``candidate``'s per-example losses are than ``reference``'s, on
    the same examples in the same order (None when there are fewer than 2).

    Example:
        >>> p = paired_improvement([1.0, 2.0, 3.0, 4.0], [0.9, 1.8, 2.9, 3.6])
        >>> round(p.mean, 3), round(p.z, 2)
        (0.2, 2.83)
    """
    import numpy as np

    a = np.asarray(reference, dtype=np.float64).reshape(-1)
    b = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired losses of {a.size} and {b.size} examples: score both models on the same examples")
    if a.size < 2:
        return None
    d = a - b
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(d.size)
    if not math.isfinite(mean):
        return Paired(mean, se, float("nan"))
    z = mean / se if se > 0 else (math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0))
    return Paired(mean, se, z)


def z_for(significance: float) -> float:
    """The one-sided normal quantile of ``significance`` (0.01 → 2.33; 0.5 → 0).

    Example:
        >>> round(z_for(0.01), 2), z_for(0.5)
        (2.33, 0.0)
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - significance)


@dataclasses.dataclass(frozen=True)
class Decision:
    """``promote`` and why (one sentence, for the run record and the summary)."""

    promote: bool
    reason: str


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if _finite(value) else str(value)


def is_better(metric: str, candidate: float, champion: float, min_improvement: float) -> bool:
    """Whether ``candidate`` beats ``champion`` on ``metric`` by more than
    ``min_improvement`` of the champion's value (relative; 0: strictly better).

    Example:
        >>> is_better("rmse", 9.0, 10.0, 0.05), is_better("rmse", 9.6, 10.0, 0.05), is_better("auc", 0.8, 0.8, 0)
        (True, False, False)
    """
    margin = abs(champion) * min_improvement
    if LOWER_IS_BETTER[metric]:
        return candidate < champion - margin
    return candidate > champion + margin


def decide(metric: str, *, candidate: Mapping[str, Any], champion: Optional[Mapping[str, Any]],
           beats_baseline: bool, min_improvement: float, drift_errors: Sequence[str] = (),
           champion_problem: Optional[str] = None, vs_baseline: Optional[Paired] = None,
           vs_champion: Optional[Paired] = None, z_needed: float = 0.0, champion_failed: bool = False) -> Decision:
    """The gate's decision.

    Args:
        metric: the gate metric (`RetrainConfig.gate_metric`).
        candidate: the candidate's scores on the gate data.
        champion: the champion's scores on the same data; None when there is no
            champion, or it could not be scored (then say why in ``champion_problem``).
        beats_baseline: whether the candidate beats the trivial baselines
            (`metrics.beats`).
        min_improvement: ``retrain.min_improvement``.
        drift_errors: drift findings at error level (each a line).
        champion_problem: why the champion was not scored (recorded in the reason).
        vs_baseline: the paired test of the candidate against the trivial baseline
            (None: not tested).
        vs_champion: the paired test of the candidate against the champion (None:
            not tested).
        z_needed: the ``z`` a paired test must exceed (`z_for`).
        champion_failed: the champion did not load or its evaluation raised
            (``champion_problem`` says how): nothing is promoted. Only a champion
            that cannot be scored on this data by design (another schema:
            ``champion_problem`` without ``champion_failed``) is passed over.
    """
    value = candidate.get(metric)
    if not _finite(value):
        return Decision(False, f"candidate {metric} is {_fmt(value)}, not a finite number: a broken model is never "
                               f"promoted")
    if drift_errors:
        return Decision(False, f"drift with on_drift: error: {drift_errors[0]}"
                               + (f" (and {len(drift_errors) - 1} more)" if len(drift_errors) > 1 else ""))
    if not beats_baseline:
        return Decision(False, "candidate does not beat the trivial baselines (see train.min_improvement): it "
                               "learned nothing worth serving")
    if vs_baseline is not None and not vs_baseline.z > z_needed:
        return Decision(False, f"candidate does not beat the trivial baselines beyond noise: paired z = "
                               f"{_fmt(vs_baseline.z)} < {z_needed:.3g} (retrain.significance)")
    if champion_failed:
        return Decision(False, f"the champion could not be scored on the gate data ({champion_problem}): a failed "
                               f"evaluation never promotes; fix it, or roll back (tfstream models rollback)")
    beyond = f" (paired z = {_fmt(vs_baseline.z)})" if vs_baseline is not None else ""
    if champion is None:
        if champion_problem:
            return Decision(True, f"the champion could not be scored ({champion_problem}); the candidate beats the "
                                  f"trivial baselines{beyond}")
        return Decision(True, f"no champion yet; the candidate beats the trivial baselines{beyond}")
    best = champion.get(metric)
    if not _finite(best):
        return Decision(True, f"the champion's {metric} is {_fmt(best)} on this data; the candidate's is "
                              f"{_fmt(value)}")
    if is_better(metric, value, best, min_improvement):
        better = (f"candidate {metric} {_fmt(value)} is better than the champion's {_fmt(best)}"
                  + (f" by more than {min_improvement:.3g} of it" if min_improvement else ""))
        if vs_champion is None:
            return Decision(True, better)
        if not vs_champion.z > z_needed:
            return Decision(False, f"{better}, but not beyond noise: paired z = {_fmt(vs_champion.z)} < "
                                   f"{z_needed:.3g}")
        return Decision(True, f"{better} (paired z = {_fmt(vs_champion.z)})")
    return Decision(False, f"candidate {metric} {_fmt(value)} is not better than the champion's {_fmt(best)}"
                           + (f" by more than {min_improvement:.3g} of it" if min_improvement else ""))
