"""The retraining gate: the decision rules and the paired test."""

import math

import numpy as np
import pytest

from tfstream.training.gate import decide, is_better, paired_improvement, z_for


def _decide(**kw):
    args = dict(candidate={"log_loss": 0.30}, champion={"log_loss": 0.35}, beats_baseline=True, min_improvement=0.0)
    args.update(kw)
    return decide("log_loss", **args)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None])
def test_a_broken_candidate_is_never_promoted(value):
    d = _decide(candidate={"log_loss": value}, champion=None)
    assert not d.promote and "not a finite number" in d.reason


def test_drift_errors_block_promotion():
    d = _decide(drift_errors=["dep_delay: mean moved by 3 standard deviations"])
    assert not d.promote and d.reason.startswith("drift with on_drift: error: dep_delay")


def test_no_champion_needs_the_baselines_beaten_beyond_noise():
    assert _decide(champion=None).promote
    assert not _decide(champion=None, beats_baseline=False).promote
    noisy = paired_improvement(np.array([0.5, 0.6, 0.4, 0.7]), np.array([0.45, 0.7, 0.35, 0.69]))
    d = _decide(champion=None, vs_baseline=noisy, z_needed=z_for(0.01))
    assert not d.promote and "beyond noise" in d.reason


def test_against_the_champion():
    assert _decide().promote
    worse = _decide(candidate={"log_loss": 0.36})
    assert not worse.promote and "is not better than the champion's 0.35" in worse.reason
    assert not _decide(min_improvement=0.2).promote  # 0.30 is not below 0.35 x 0.8
    broken_champion = _decide(champion={"log_loss": float("nan")})
    assert broken_champion.promote and "nan" in broken_champion.reason


def test_metrics_where_higher_is_better():
    assert is_better("accuracy", 0.91, 0.90, 0.0) and not is_better("accuracy", 0.90, 0.90, 0.0)
    assert is_better("log_loss", 0.29, 0.30, 0.0) and not is_better("r2", 0.5, 0.5, 0.1)


def test_the_paired_test_sees_what_averages_hide():
    rng = np.random.default_rng(0)
    hard = rng.exponential(1.0, 5000)  # both models err on the same hard examples
    better = hard * 0.98  # 2% better on every example
    p = paired_improvement(hard, better)
    assert p.z > 10 and math.isclose(p.mean, hard.mean() * 0.02)
    same = paired_improvement(hard, hard + rng.normal(0, 0.1, hard.size))
    assert abs(same.z) < 4
    with pytest.raises(ValueError, match="score both models on the same examples"):
        paired_improvement([1.0, 2.0], [1.0])
