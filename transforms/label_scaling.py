"""A regression label as the model sees it: ``label.transform``, then standardization.

A regression target of prices or distances (values in the thousands) fed raw to a
network starts at a squared error in the millions and needs many epochs just to reach
the target's scale. So the model trains on ``(T(y) - mean) / std``, where ``T`` is the
label's transform (``log1p`` or none) and ``mean`` and ``std`` are the full-pass
moments of ``T(y)`` over the training split (computed at preprocessing time, as
tf.Transform does: `analyzers.DatasetStats` adds the moments of ``log1p(y)`` when the
label is so transformed). The reader applies `LabelScaling.apply`; the serving export
and the evaluation apply `LabelScaling.invert`, so that predictions and metrics are in
the label's own units.

``log1p`` is defined for ``y > -1`` only: validation rejects a row whose label is
``<= -1`` (reason ``out_of_domain``), so the transform never sees one.

Example:
    >>> s = LabelScaling("log1p", mean=7.0, std=0.5)
    >>> z = s.apply(np.array([999.0, 1999.0]))
    >>> np.round(z, 3).tolist(), np.round(s.invert(z), 6).tolist()
    ([-0.184, 1.202], [999.0, 1999.0])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

TRANSFORMS = ("none", "log1p")


def forward(values, transform: str):
    """``T(values)`` in NumPy (float64)."""
    values = np.asarray(values, dtype=np.float64)
    return np.log1p(values) if transform == "log1p" else values


def inverse(values, transform: str):
    """``T⁻¹(values)`` in NumPy (float64)."""
    values = np.asarray(values, dtype=np.float64)
    return np.expm1(values) if transform == "log1p" else values


def out_of_domain(value: float, transform: str) -> Optional[str]:
    """Why ``value`` cannot be transformed (None when it can).

    Example:
        >>> out_of_domain(-1.0, "log1p")
        'log1p(y) needs y > -1'
    """
    if transform == "log1p" and not value > -1:
        return "log1p(y) needs y > -1"
    return None


@dataclasses.dataclass(frozen=True)
class LabelScaling:
    """``z = (T(y) - mean) / std`` and back.

    Attributes:
        transform: ``none`` or ``log1p``.
        mean, std: the training split's mean and standard deviation of ``T(y)``
            (0 and 1 when the label is not standardized).
    """

    transform: str = "none"
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"label transform: expected one of {TRANSFORMS}, got {self.transform!r}")
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"label scaling: expected a finite mean and a std > 0, got {self.mean!r}, {self.std!r}")

    @classmethod
    def from_moments(cls, transform: str, standardize: bool, mean: Optional[float],
                     variance: Optional[float]) -> "LabelScaling":
        """The scaling for moments of ``T(y)``; a variance of 0 (a constant label) keeps
        a std of 1, as Keras's `Normalization` does."""
        if not standardize:
            return cls(transform)
        if mean is None or variance is None:
            raise ValueError("label scaling: the training split has no label statistics to standardize with")
        return cls(transform, float(mean), math.sqrt(variance) if variance > 0 else 1.0)

    @property
    def is_identity(self) -> bool:
        return self.transform == "none" and self.mean == 0.0 and self.std == 1.0

    def apply(self, values):
        """Label units → model units, in NumPy."""
        return (forward(values, self.transform) - self.mean) / self.std

    def invert(self, values):
        """Model units → label units, in NumPy."""
        return inverse(np.asarray(values, dtype=np.float64) * self.std + self.mean, self.transform)

    def to_json(self) -> dict:
        return {"transform": self.transform, "mean": self.mean, "std": self.std}
