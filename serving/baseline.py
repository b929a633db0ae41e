"""Baseline forecasters over the trend signals: the scorer until a TRAIL model is deployed, and the fallback
whenever the model is unavailable. They need no model files and cannot fail."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from trail.decoding import Decoding
from trail.errors import ConfigError
from trail.explain import Forecast
from trail.signals import TrendSignals

from .backend import ModelInfo, never

__all__ = ["BaselineBackend", "ema_forecast"]


def ema_forecast(history: Sequence[float], decay: float = 0.75) -> float:
    """TrendRec's EMA baseline: the exponentially weighted mean of the last steps, newest weight 1, each older
    step ``decay`` times the next (TrendRec uses 8 steps and 0.75)."""
    if not history:
        return 0.0
    weights = [decay ** age for age in range(len(history))]
    return sum(w * x for w, x in zip(weights, reversed(history))) / sum(weights)


@dataclass(frozen=True)
class BaselineBackend:
    """``method="ema"``: TrendRec's EMA over the signal history; ``"holt"``: the River HoltWinters forecast that
    the signals already carry. The score is log1p of the predicted count."""

    method: Literal["ema", "holt"] = "ema"
    decay: float = 0.75
    info: ModelInfo = field(init=False)

    def __post_init__(self) -> None:
        if self.method not in ("ema", "holt"):
            raise ConfigError(f"baseline method must be 'ema' or 'holt', got {self.method!r}")
        object.__setattr__(self, "info", ModelInfo(f"baseline-{self.method}", "1", "baseline"))

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        """(Microseconds per item: ``cancelled`` is not asked.)"""
        out = []
        for item in signals:
            predicted = ema_forecast(item.item.history, self.decay) if self.method == "ema" else item.item.forecast
            out.append(Forecast(predicted_count=predicted, score=math.log1p(max(predicted, 0.0))))
        return out

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        return [None] * len(signals)
