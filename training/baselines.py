"""Forecasters of the next window's count from the trend signals: the baselines TRAIL is compared against.

They share one small vocabulary, :class:`Forecaster`: ``fit`` on ``(signals, next-window count)`` pairs (a no-op for
the untrained ones) and ``predict`` non-negative next-window counts for a list of signals, one per item, in order.

- :class:`RandomForecaster` — a uniformly random score per item (the floor for the ranking metrics; its "counts"
  are in [0, 1) and mean nothing for the regression metrics).
- :class:`MostPop` — next = this window's count.
- :class:`Markov` — TrendRec's Markov baseline: the next acceleration equals the last one, so
  next = count + acceleration = 2·count − previous count, clipped at 0.
- :class:`EMA` — TrendRec's EMA baseline: exponentially weighted mean of the last 8 counts, decay 0.75
  (:func:`serving.baseline.ema_forecast`).
- :class:`LinearTrend` — the least-squares line through the history, extrapolated one window, clipped at 0.
- :class:`HoltWinters` — River's HoltWinters one-step forecast, already carried by the signals
  (:class:`trail.signals.ItemTrend`).
- :class:`GradientBoosting` — scikit-learn's ``HistGradientBoostingRegressor`` on :func:`feature_vector`, trained
  on ``log1p`` of the next count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from serving.baseline import ema_forecast
from trail.features import FEATURE_NAMES, HISTORY_FEATURES, feature_matrix, feature_vector
from trail.signals import TrendSignals

__all__ = [
    "EMA",
    "FEATURE_NAMES",
    "HISTORY_FEATURES",
    "Forecaster",
    "GradientBoosting",
    "HoltWinters",
    "LinearTrend",
    "Markov",
    "MostPop",
    "RandomForecaster",
    "default_forecasters",
    "feature_matrix",
    "feature_vector",
    "linear_trend_forecast",
]

FloatArray = NDArray[np.float64]
TrainingPairs = Sequence[tuple[TrendSignals, float]]


@runtime_checkable
class Forecaster(Protocol):
    """Predicts each item's count in the next window from its signals at the close of this one."""

    @property
    def name(self) -> str:
        """Short identifier used in reports."""
        ...

    def fit(self, train: TrainingPairs) -> None:
        """Learn from ``(signals at window t, count at window t + 1)`` pairs; untrained forecasters ignore it."""
        ...

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        """Predicted next-window counts, one per item in order: a finite, non-negative float array."""
        ...


def _per_item(signals: Sequence[TrendSignals], forecast: Callable[[TrendSignals], float]) -> FloatArray:
    """``forecast`` applied to each item, clipped at 0."""
    predictions = np.fromiter((forecast(item) for item in signals), dtype=np.float64, count=len(signals))
    return np.clip(predictions, 0.0, None)


# -- untrained baselines --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomForecaster:
    """A uniform score in [0, 1) per item, fixed by ``(seed, window index, item id)``: the same seed gives the same
    scores whatever the order of the items or how often it is called, and new scores in each window."""

    seed: int = 0
    name: str = field(default="random", init=False)

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, self._score)

    def _score(self, signals: TrendSignals) -> float:
        key = f"{self.seed}\x1f{signals.item.window_index}\x1f{signals.item_id}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class MostPop:
    """Next = this window's count."""

    name: str = field(default="most_pop", init=False)

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, lambda s: s.item.count)


@dataclass(frozen=True)
class Markov:
    """TrendRec's Markov baseline: next acceleration = this acceleration, so next = max(count + acceleration, 0)."""

    name: str = field(default="markov", init=False)

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, lambda s: s.item.count + s.item.acceleration)


@dataclass(frozen=True)
class EMA:
    """TrendRec's EMA baseline: ``ema_forecast`` of the last ``steps`` counts with weight ``decay^age``
    (age 0 = this window)."""

    steps: int = 8
    decay: float = 0.75
    name: str = field(default="ema", init=False)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"EMA.steps must be >= 1, got {self.steps}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"EMA.decay must be in (0, 1], got {self.decay}")

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, lambda s: ema_forecast(s.item.history[-self.steps:], self.decay))


def linear_trend_forecast(history: Sequence[float]) -> float:
    """The least-squares line ``a + b·t`` through ``history`` at ``t = 0 … n−1``, evaluated at ``t = n``; a single
    point is its own forecast, no points forecast 0. Not clipped."""
    n = len(history)
    if n == 0:
        return 0.0
    if n == 1:
        return float(history[0])
    times = np.arange(n, dtype=np.float64)
    values = np.asarray(history, dtype=np.float64)
    time_mean, value_mean = times.mean(), values.mean()
    slope = float(np.dot(times - time_mean, values - value_mean) / np.dot(times - time_mean, times - time_mean))
    return float(value_mean + slope * (n - time_mean))


@dataclass(frozen=True)
class LinearTrend:
    """The history's least-squares line, one window ahead (:func:`linear_trend_forecast`), clipped at 0."""

    name: str = field(default="linear_trend", init=False)

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, lambda s: linear_trend_forecast(s.item.history))


@dataclass(frozen=True)
class HoltWinters:
    """River's HoltWinters one-step forecast, computed online in :mod:`trail.signals` (already >= 0)."""

    name: str = field(default="holt_winters", init=False)

    def fit(self, train: TrainingPairs) -> None:
        """Nothing to learn."""

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        return _per_item(signals, lambda s: s.item.forecast)


# -- the learned baseline -------------------------------------------------------------------------------------
@dataclass
class GradientBoosting:
    """``HistGradientBoostingRegressor`` (seeded) on :func:`feature_vector`, fitted to ``log1p(next count)``;
    predicts ``max(expm1(output), 0)``. ``fit`` replaces any earlier model. ``threads`` caps the OpenMP threads of
    ``fit`` and ``predict`` (None: scikit-learn's default, every core); on a busy machine 1 is often fastest."""

    seed: int = 0
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    threads: int | None = None
    name: str = field(default="gradient_boosting", init=False)
    _model: HistGradientBoostingRegressor | None = field(default=None, init=False, repr=False, compare=False)

    def fit(self, train: TrainingPairs) -> None:
        if not train:
            raise ValueError("GradientBoosting.fit needs at least one example")
        targets = np.array([label for _, label in train], dtype=np.float64)
        if not np.all(np.isfinite(targets)) or np.any(targets < 0):
            raise ValueError("next-window counts must be finite and non-negative")
        model = HistGradientBoostingRegressor(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.seed,
        )
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            model.fit(feature_matrix([signals for signals, _ in train]), np.log1p(targets))
        self._model = model

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        if self._model is None:
            raise RuntimeError("GradientBoosting.predict called before fit")
        if not signals:
            return np.zeros(0, dtype=np.float64)
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            log_counts = np.asarray(self._model.predict(feature_matrix(signals)), dtype=np.float64)
        return np.clip(np.expm1(log_counts), 0.0, None)


def default_forecasters(seed: int = 0) -> tuple[Forecaster, ...]:
    """Every baseline with its default settings, the random and learned ones seeded with ``seed``."""
    return (RandomForecaster(seed), MostPop(), Markov(), EMA(), LinearTrend(), HoltWinters(), GradientBoosting(seed))
