"""Ranking and regression metrics for the predictions of one window, in plain numpy.

Every function takes 1-D arrays of equal length, one entry per item tracked at the close of the window, in the
same item order. Ranking metrics order items by a predicted score, highest first, with ties broken by item position
(a stable sort), so every run agrees. ``k`` larger than the number of items means "all of them".

- :func:`mae_log1p`, :func:`rmse_log1p`: errors of the predicted next-window counts on the log1p scale.
- :func:`spearman`: rank correlation with average ranks for ties.
- :func:`ndcg_at_k`, :func:`recall_at_k`: how well the top of the ranking matches the true next-window counts.
- :func:`acceleration_at_k`, :func:`normalised_acceleration_at_k`: TrendRec's measure — how much the predicted
  top-k actually accelerates in the next window — raw, and rescaled so that a random top-k scores 0 and the best
  possible top-k scores 1.

:func:`window_metrics` computes all of them for one window; :func:`average` means them over windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AtK",
    "WindowMetrics",
    "acceleration_at_k",
    "average",
    "average_ranks",
    "mae_log1p",
    "ndcg_at_k",
    "normalised_acceleration_at_k",
    "random_acceleration_at_k",
    "recall_at_k",
    "rmse_log1p",
    "spearman",
    "top_k",
    "window_metrics",
]

FloatArray = NDArray[np.float64]


# -- input checks ---------------------------------------------------------------------------------------------
def _vector(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds non-finite values")
    return array


def _pair(first: ArrayLike, second: ArrayLike, names: tuple[str, str]) -> tuple[FloatArray, FloatArray]:
    a, b = _vector(first, names[0]), _vector(second, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {a.shape[0]} != {b.shape[0]}")
    return a, b


def _non_negative(array: FloatArray, name: str) -> FloatArray:
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative counts")
    return array


def _check_k(k: int) -> int:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


def top_k(scores: ArrayLike, k: int) -> NDArray[np.intp]:
    """Indices of the ``min(k, n)`` highest scores, highest first; equal scores keep their index order."""
    array = _vector(scores, "scores")
    order = np.argsort(-array, kind="stable")
    return order[: _check_k(k)]


# -- regression on the log1p scale ----------------------------------------------------------------------------
def _log1p_errors(pred: ArrayLike, true: ArrayLike) -> FloatArray:
    predicted, actual = _pair(pred, true, ("pred", "true"))
    if predicted.size == 0:
        raise ValueError("no items to score")
    _non_negative(actual, "true")
    return np.log1p(np.clip(predicted, 0.0, None)) - np.log1p(actual)


def mae_log1p(pred: ArrayLike, true: ArrayLike) -> float:
    """``mean(|log1p(max(pred, 0)) − log1p(true)|)``; ``true`` must be non-negative counts."""
    return float(np.mean(np.abs(_log1p_errors(pred, true))))


def rmse_log1p(pred: ArrayLike, true: ArrayLike) -> float:
    """``sqrt(mean((log1p(max(pred, 0)) − log1p(true))²))``; ``true`` must be non-negative counts."""
    return float(np.sqrt(np.mean(np.square(_log1p_errors(pred, true)))))


# -- rank correlation -----------------------------------------------------------------------------------------
def average_ranks(values: ArrayLike) -> FloatArray:
    """1-based ranks in ascending order; tied values all get the mean of the positions they occupy.

    A group of ``c`` equal values preceded by ``s`` smaller ones occupies positions ``s+1 … s+c``, so each gets
    ``(s + 1 + s + c) / 2``.
    """
    array = _vector(values, "values")
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    return ((starts + 1 + ends) / 2.0)[inverse]


def spearman(pred: ArrayLike, true: ArrayLike) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks (:func:`average_ranks`) of both sides.

    0.0 when either side is constant (its ranks have no variance), which includes fewer than two items.
    """
    predicted, actual = _pair(pred, true, ("pred", "true"))
    if predicted.size < 2 or np.unique(predicted).size < 2 or np.unique(actual).size < 2:
        return 0.0
    rank_pred = average_ranks(predicted)
    rank_true = average_ranks(actual)
    rank_pred -= rank_pred.mean()
    rank_true -= rank_true.mean()
    rho = float(np.dot(rank_pred, rank_true) / math.sqrt(np.dot(rank_pred, rank_pred) * np.dot(rank_true, rank_true)))
    return min(1.0, max(-1.0, rho))


# -- top-k ranking ------------------------------------------------------------------------------------------
def _discounts(length: int) -> FloatArray:
    return 1.0 / np.log2(np.arange(1, length + 1) + 1.0)  # rank r (1-based) → 1 / log2(r + 1)


def ndcg_at_k(pred_scores: ArrayLike, true_counts: ArrayLike, k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` by predicted score, with linear gain.

    ``DCG@k = Σ_{r=1}^{min(k,n)} true_count[item at rank r] / log2(r + 1)``, items ranked by ``pred_scores``
    (ties by index). ``IDCG@k`` is the same sum over the true counts sorted descending. ``NDCG@k = DCG/IDCG``,
    0.0 when ``IDCG`` is 0 (no item has a positive true count). Gain is the raw count, not ``2^count − 1``.
    """
    scores, counts = _pair(pred_scores, true_counts, ("pred_scores", "true_counts"))
    _non_negative(counts, "true_counts")
    chosen = top_k(scores, k)
    ideal = np.sort(counts)[::-1][: chosen.size]
    discounts = _discounts(chosen.size)
    ideal_dcg = float(np.dot(ideal, discounts))
    if ideal_dcg <= 0.0:
        return 0.0
    return float(np.dot(counts[chosen], discounts)) / ideal_dcg


def recall_at_k(pred_scores: ArrayLike, true_counts: ArrayLike, k: int) -> float:
    """``|predicted top-k ∩ true top-k| / k'``.

    The predicted top-k is the ``min(k, n)`` highest ``pred_scores`` (ties by index). The true top-k is the
    ``k' = min(k, p)`` highest ``true_counts`` among the ``p`` items with a true count > 0 (ties by index). 0.0 when
    no item has a positive true count.
    """
    scores, counts = _pair(pred_scores, true_counts, ("pred_scores", "true_counts"))
    _non_negative(counts, "true_counts")
    positives = int(np.count_nonzero(counts > 0))
    if positives == 0:
        return 0.0
    relevant_k = min(_check_k(k), positives)
    true_top = top_k(counts, relevant_k)  # every one of these has a positive count
    hits = np.intersect1d(top_k(scores, k), true_top).size
    return hits / relevant_k


# -- TrendRec's acceleration ---------------------------------------------------------------------------------
def acceleration_at_k(pred_scores: ArrayLike, true_next_acceleration: ArrayLike, k: int) -> float:
    """Σ true next-window acceleration (next count − current count) over the predicted top ``min(k, n)``."""
    scores, acceleration = _pair(pred_scores, true_next_acceleration, ("pred_scores", "true_next_acceleration"))
    return float(np.sum(acceleration[top_k(scores, k)]))


def random_acceleration_at_k(true_next_acceleration: ArrayLike, k: int) -> float:
    """Expected :func:`acceleration_at_k` of a uniformly random top-k: ``min(k, n) · mean(acceleration)``.

    Exact: each item is in a random ``k'``-subset of ``n`` with probability ``k'/n``, so the expected sum is
    ``(k'/n) · Σ acceleration``. 0.0 for no items.
    """
    acceleration = _vector(true_next_acceleration, "true_next_acceleration")
    if acceleration.size == 0:
        return 0.0
    return min(_check_k(k), acceleration.size) * float(np.mean(acceleration))


def normalised_acceleration_at_k(
    pred_scores: ArrayLike,
    true_next_acceleration: ArrayLike,
    k: int,
    random_value: float | None = None,
) -> float:
    """``(acceleration@k − random) / (oracle − random)``.

    ``oracle`` is the sum of the ``min(k, n)`` largest true accelerations (the best any ranking can do);
    ``random`` is ``random_value`` when given, else the exact expectation for a uniformly random top-k
    (:func:`random_acceleration_at_k`). 1.0 for the oracle ranking, 0.0 in expectation for a random one, negative
    when worse than random. 0.0 when ``oracle == random`` (within floating-point tolerance: every ranking is
    then equally good, e.g. all accelerations equal or ``k >= n``).
    """
    scores, acceleration = _pair(pred_scores, true_next_acceleration, ("pred_scores", "true_next_acceleration"))
    chosen = top_k(scores, k)
    oracle = float(np.sum(np.sort(acceleration)[::-1][: chosen.size]))
    random = random_acceleration_at_k(acceleration, k) if random_value is None else float(random_value)
    if math.isclose(oracle, random, rel_tol=1e-9, abs_tol=1e-9):
        return 0.0
    return (float(np.sum(acceleration[chosen])) - random) / (oracle - random)


# -- one window, many windows -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AtK:
    """The top-k metrics of one window at one ``k``."""

    k: int
    ndcg: float
    recall: float
    acceleration: float
    normalised_acceleration: float


@dataclass(frozen=True)
class WindowMetrics:
    """Every metric of one window. Regression metrics use the predicted counts; ranking metrics the scores."""

    items: int
    mae_log1p: float
    rmse_log1p: float
    spearman: float
    at_k: tuple[AtK, ...]

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"mae_log1p", "rmse_log1p", "spearman", "ndcg@10", "recall@10", "accel@10",
        "norm_accel@10", …}`` (the item count is left out: it is not a metric)."""
        flat = {"mae_log1p": self.mae_log1p, "rmse_log1p": self.rmse_log1p, "spearman": self.spearman}
        for at in self.at_k:
            flat[f"ndcg@{at.k}"] = at.ndcg
            flat[f"recall@{at.k}"] = at.recall
            flat[f"accel@{at.k}"] = at.acceleration
            flat[f"norm_accel@{at.k}"] = at.normalised_acceleration
        return flat


def window_metrics(
    pred_count: ArrayLike,
    pred_score: ArrayLike,
    true_count: ArrayLike,
    current_count: ArrayLike,
    ks: Sequence[int] = (10, 20, 50),
) -> WindowMetrics:
    """All metrics for one window.

    ``pred_count``: predicted next-window counts (MAE/RMSE on log1p); ``pred_score``: the ranking score (Spearman
    against ``true_count``, NDCG, recall, acceleration); ``true_count``: the actual next-window counts;
    ``current_count``: this window's counts, so the true next acceleration is ``true_count − current_count``.
    """
    counts_pred, scores = _pair(pred_count, pred_score, ("pred_count", "pred_score"))
    counts_true, counts_now = _pair(true_count, current_count, ("true_count", "current_count"))
    if counts_pred.shape != counts_true.shape:
        raise ValueError(f"pred_count and true_count differ in length: {counts_pred.size} != {counts_true.size}")
    next_acceleration = counts_true - counts_now
    at_k = tuple(
        AtK(
            k=k,
            ndcg=ndcg_at_k(scores, counts_true, k),
            recall=recall_at_k(scores, counts_true, k),
            acceleration=acceleration_at_k(scores, next_acceleration, k),
            normalised_acceleration=normalised_acceleration_at_k(scores, next_acceleration, k),
        )
        for k in ks
    )
    return WindowMetrics(
        items=int(counts_true.size),
        mae_log1p=mae_log1p(counts_pred, counts_true),
        rmse_log1p=rmse_log1p(counts_pred, counts_true),
        spearman=spearman(scores, counts_true),
        at_k=at_k,
    )


def average(windows: Sequence[WindowMetrics]) -> dict[str, float]:
    """The unweighted mean of each metric over windows (every window counts once, whatever its size).

    All windows must have been computed with the same ``ks``.
    """
    if not windows:
        raise ValueError("no windows to average")
    flats = [window.as_dict() for window in windows]
    keys = list(flats[0])
    if any(list(flat) != keys for flat in flats[1:]):
        raise ValueError("windows were computed with different ks")
    return {key: float(np.mean([flat[key] for flat in flats])) for key in keys}
