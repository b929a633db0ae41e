"""How much each of TRAIL's loss terms (:mod:`training.losses`) counts. A module of its own, free of torch, so that
the CLI can show the defaults without importing the training stack."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LossWeights"]


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term; 0 switches a term off (and skips the forward passes only it needs)."""

    lm: float = 1.0
    regression: float = 1.0
    pairwise: float = 0.5
    listwise: float = 0.0  # ListNet top-one softmax within a window (off until it helps on validation windows)
    info_nce: float = 0.2
    margin: float = 0.5
    margin_nats: float = 2.0
    temperature: float = 0.1

    @property
    def contrastive(self) -> bool:
        return self.info_nce > 0 or self.margin > 0

    def __post_init__(self) -> None:
        for name in ("lm", "regression", "pairwise", "listwise", "info_nce", "margin", "margin_nats"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
