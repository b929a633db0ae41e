"""The one protocol every scorer speaks: score a batch of items, explain a batch of items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from trail.explain import Forecast
from trail.signals import TrendSignals

__all__ = ["Backend", "BackendUnavailable", "ModelInfo"]


class BackendUnavailable(RuntimeError):
    """The backend cannot answer now (server down, model not loaded); the caller falls back."""


@dataclass(frozen=True)
class ModelInfo:
    """Which scorer produced a list: named in every published record."""

    name: str  # e.g. "trail-smollm2" or "baseline-ema"
    version: str
    backend: str  # "baseline", "onnx", "triton"


@runtime_checkable
class Backend(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    def score(self, signals: Sequence[TrendSignals]) -> list[Forecast]:
        """One forecast per item, in order: the predicted next-window count and the ranking score."""
        ...

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast]) -> list[str | None]:
        """One explanation per item (None: this backend does not write them; the composer will)."""
        ...
