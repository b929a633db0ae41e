"""The options of ``trail refresh`` (:mod:`training.refresh`), apart from the refresh itself so that the CLI can
show their defaults without importing the training stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trail.trend_config import TrendConfig
from trail.windows import WindowSpec

from .gate import GateMargins

__all__ = ["RefreshConfig"]


@dataclass(frozen=True)
class RefreshConfig:
    repository: Path = Path("triton_models")
    model_name: str = "trail"
    window: WindowSpec = field(default_factory=WindowSpec)  # as the worker closes them (TRAIL_WINDOW, lateness)
    trend: TrendConfig = field(default_factory=TrendConfig)  # the worker's (TRAIL_BOARD_SIZE, TRAIL_EVICT_AFTER)
    last_windows: int = 12  # windows read when no --since is given
    holdout_windows: int = 2
    from_scratch: bool = False
    backbone: str = "smollm2"  # only from scratch; a warm start keeps the serving model's
    steps: int = 40
    batch_size: int = 8
    per_window: int = 96
    candidates: int = 200
    learning_rate: float = 5e-4  # LoRA
    head_learning_rate: float = 1e-3  # score head and projections
    budget_minutes: float | None = None  # the whole run; training gets TRAIN_SHARE of it
    margins: GateMargins = field(default_factory=GateMargins)
    explain_per_window: int = 4
    shuffle_labels: bool = False  # a candidate made worse on purpose (to see the gate refuse it)
    triton_url: str | None = None
    runs: Path = Path(".trail-data/refresh")
    keep_versions: int = 3
    seed: int = 0
