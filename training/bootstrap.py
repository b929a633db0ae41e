"""Paired bootstrap over test windows: is one method's mean metric better than another's beyond the noise?

Both methods are scored on the same windows, so windows are resampled together (with replacement) and the
difference of the two means is recomputed on each resample. The 95% interval of that difference is what
"beats" must clear: an interval above zero means the first method is better on this kind of window, not only
on these windows.

>>> better = [0.70, 0.72, 0.69, 0.75, 0.71, 0.73]
>>> worse = [0.60, 0.65, 0.61, 0.66, 0.62, 0.64]
>>> result = paired_bootstrap(better, worse, resamples=2000)
>>> result.difference_low > 0
True
>>> paired_bootstrap(better, better, resamples=2000).difference
0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["PairedInterval", "paired_bootstrap"]


@dataclass(frozen=True)
class PairedInterval:
    mean_a: float
    low_a: float
    high_a: float
    mean_b: float
    low_b: float
    high_b: float
    difference: float  # mean_a - mean_b
    difference_low: float
    difference_high: float
    windows: int
    resamples: int

    def verdict(self, higher_is_better: bool = True) -> str:
        """``a better``, ``b better`` or ``within noise`` at the interval's level."""
        low, high = (self.difference_low, self.difference_high) if higher_is_better else \
            (-self.difference_high, -self.difference_low)
        return "a better" if low > 0 else "b better" if high < 0 else "within noise"


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> PairedInterval:
    """Percentile intervals of each mean and of their difference, windows resampled in pairs."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape or first.ndim != 1 or len(first) < 2:
        raise ValueError(f"paired values need the same windows (at least 2), got {first.shape} and {second.shape}")
    picks = np.random.default_rng(seed).integers(0, len(first), size=(resamples, len(first)))
    means_a, means_b = first[picks].mean(axis=1), second[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100

    def interval(values: np.ndarray) -> tuple[float, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    (low_a, high_a), (low_b, high_b) = interval(means_a), interval(means_b)
    low_d, high_d = interval(means_a - means_b)
    return PairedInterval(float(first.mean()), low_a, high_a, float(second.mean()), low_b, high_b,
                          float(first.mean() - second.mean()), low_d, high_d, len(first), resamples)
