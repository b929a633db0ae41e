"""The numeric view of an item's signals: one fixed-order feature vector, shared by the learned baselines and by
TRAIL's score head (so training, the worker and the exported model read the same numbers).

:func:`model_features` is the form the neural models take: every feature through ``sign(x)·log1p(|x|)``, which
needs no fitted statistics (nothing to keep in sync between a checkpoint and the serving code) and tames counts
that span five orders of magnitude.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from .signals import TrendSignals

__all__ = ["FEATURE_NAMES", "HISTORY_FEATURES", "feature_matrix", "feature_vector", "model_features"]

FloatArray = NDArray[np.float64]

HISTORY_FEATURES = 8

FEATURE_NAMES: tuple[str, ...] = (
    *(f"history_{position}" for position in range(HISTORY_FEATURES)),
    "acceleration",
    "ewm_fast",
    "ewm_slow",
    "momentum",
    "zscore",
    "long_term_mean",
    "level_ratio",
    "distinct_users",
    "age_windows",
    "forecast",
    "rank",
    "inverse_rank",
    "rank_change",
    "category_growth",
)


def feature_vector(signals: TrendSignals) -> FloatArray:
    """The :data:`FEATURE_NAMES` of one item, in that order.

    - ``history_0 … history_7``: the last 8 window counts, oldest first, left-padded with zeros, so ``history_7`` is
      always this window's count (a longer history keeps its newest 8).
    - ``acceleration`` … ``forecast``: the :class:`~trail.signals.ItemWindow` fields of those names.
    - ``rank``: this window's global rank (1 = top), 0 when the item is off the board; ``inverse_rank``: 1/rank,
      0 off the board; ``rank_change``: places climbed since the previous window, 0 when either rank is unknown.
    - ``category_growth``: (category count + 1) / (previous category count + 1).
    """
    item = signals.item
    newest = list(item.history[-HISTORY_FEATURES:])
    history = [0.0] * (HISTORY_FEATURES - len(newest)) + newest
    rank = signals.rank
    rank_change = signals.rank_change
    return np.array(
        [
            *history,
            item.acceleration,
            item.ewm_fast,
            item.ewm_slow,
            item.momentum,
            item.zscore,
            item.long_term_mean,
            item.level_ratio,
            item.distinct_users,
            item.age_windows,
            item.forecast,
            rank if rank is not None else 0.0,
            1.0 / rank if rank else 0.0,
            rank_change if rank_change is not None else 0.0,
            signals.category_growth,
        ],
        dtype=np.float64,
    )


def feature_matrix(signals: Sequence[TrendSignals]) -> FloatArray:
    """One :func:`feature_vector` per row; shape ``(len(signals), len(FEATURE_NAMES))``."""
    if not signals:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float64)
    return np.vstack([feature_vector(item) for item in signals])


def model_features(signals: Sequence[TrendSignals]) -> NDArray[np.float32]:
    """:func:`feature_matrix` through ``sign(x)·log1p(|x|)``, as float32: the score head's numeric input."""
    matrix = feature_matrix(signals)
    return (np.sign(matrix) * np.log1p(np.abs(matrix))).astype(np.float32)
