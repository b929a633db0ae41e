"""The online tracker's settings (:mod:`trail.signals`), in a module free of River so that configuration code (the
worker's settings, the CLI's defaults) can read them without importing the tracker."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrendConfig"]


@dataclass(frozen=True)
class TrendConfig:
    """Tracker settings; defaults chosen for weekly retail windows and daily Q&A windows alike."""

    history_length: int = 8  # K windows of history in the signals (TrendRec's EMA uses the last 8 steps)
    fast_fading: float = 0.5  # EWMean weight of the newest window in the fast mean (half-life ~1 window)
    slow_fading: float = 0.1  # ... in the slow mean and variance (half-life ~6.6 windows)
    holt_alpha: float = 0.5  # HoltWinters level smoothing
    holt_beta: float = 0.1  # HoltWinters trend smoothing (small: counts are noisy)
    board_size: int = 200  # exact global ranks for the top this many items per window
    evict_after_idle_windows: int = 12  # forget an item after this many consecutive empty windows

    def __post_init__(self) -> None:
        for name in ("fast_fading", "slow_fading", "holt_alpha", "holt_beta"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"TrendConfig.{name} must be in (0, 1], got {value}")
        for name in ("history_length", "board_size", "evict_after_idle_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrendConfig.{name} must be >= 1, got {getattr(self, name)}")
