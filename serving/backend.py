"""The one protocol every scorer speaks: score a batch of items, explain a batch of items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

from trail.decoding import Decoding
from trail.errors import TrailError
from trail.explain import Forecast
from trail.signals import TrendSignals

__all__ = ["Backend", "BackendUnavailable", "FallbackChain", "ModelInfo", "never"]


def never() -> bool:
    """The default ``cancelled`` check: nobody gives the work up."""
    return False


class BackendUnavailable(TrailError, RuntimeError):
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

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        """One forecast per item, in order: the predicted next-window count and the ranking score. A backend that
        scores in several batches asks ``cancelled`` between them and raises :class:`trail.errors.Cancelled` when
        it says so; one call is always scored by one model version."""
        ...

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        """One explanation per item, each decoded as its ``decodings`` entry says (default greedy); None: this
        backend does not write them (the composer will)."""
        ...


@dataclass
class FallbackChain:
    """The first backend of ``backends`` that answers; its info names whoever scored last."""

    backends: tuple[Backend, ...]
    _last: Backend | None = field(default=None, init=False, repr=False)

    @property
    def info(self) -> ModelInfo:
        return (self._last or self.backends[-1]).info

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        reasons = []
        for backend in self.backends:
            try:
                forecasts = backend.score(signals, cancelled)
            except BackendUnavailable as exc:
                reasons.append(str(exc))
                continue
            self._last = backend
            return forecasts
        raise BackendUnavailable("; ".join(reasons) or "no backend configured")

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        return (self._last or self.backends[-1]).explain(signals, forecasts, decodings)
