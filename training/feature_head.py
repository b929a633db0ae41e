"""The "no LLM" ablation: TRAIL's score head on the engineered features alone.

Everything but the language model is TRAIL's: the head's shape (an MLP of ``TrailConfig.head_hidden`` units whose
last layer starts at zero, so it begins as "next = this window"), the score losses (Huber regression on
``log1p`` plus the pairwise ranking term, weighted as :class:`training.losses.LossWeights`), the examples (per
window the top ``candidates`` by pre-rank, balanced by :func:`training.examples.subsample`), same-window batches,
AdamW with TRAIL's head learning rate and schedule, and at prediction the same split of work: the head scores the
pre-ranked candidates, EMA the rest. Only the LLM's hidden state is missing from the input.

So the gap between ``trail`` and ``trail_no-llm`` in a report is what the language model adds. The head trains
in seconds, so ``trail evaluate`` fits it on the training windows itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from trail.features import FEATURE_NAMES
from trail.signals import TrendSignals

from .baselines import FloatArray, TrainingPairs
from .checkpoint_files import ABLATION_PREFIX
from .examples import Example, subsample
from .llm_forecasters import _CandidateScorer
from .losses import LossWeights, score_terms
from .model import TrailConfig, head_inputs
from .train import TrainConfig, _learning_rate_factor, candidate_pool, make_batches

__all__ = ["FeatureHead"]


class _FeatureOnlyHead(nn.Module):
    def __init__(self, n_features: int, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_features, width), nn.GELU(), nn.Linear(width, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, features: torch.Tensor, current_log_count: torch.Tensor) -> torch.Tensor:
        return current_log_count + self.mlp(features).squeeze(-1)


@dataclass
class FeatureHead(_CandidateScorer):
    """``steps`` as many as the TRAIL checkpoint it is compared with (same budget), or more to see its ceiling;
    ``train_config`` that checkpoint's recipe (:meth:`recipe_of`)."""

    steps: int = TrainConfig.steps
    train_config: TrainConfig = field(default_factory=TrainConfig)
    width: int = TrailConfig.head_hidden
    label: str = f"{ABLATION_PREFIX}no-llm"
    steps_trained: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return self.label

    @staticmethod
    def recipe_of(checkpoint: Path) -> tuple[TrainConfig, int] | None:
        """The training recipe and steps completed that ``checkpoint``'s metadata records (None without one)."""
        path = Path(checkpoint) / "training_metadata.json"
        if not path.exists():
            return None
        metadata = json.loads(path.read_text())
        recorded = dict(metadata.get("train_config", {}))
        weights = LossWeights(**recorded.pop("weights", {}))
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in recorded.items() if k in known and k != "weights"}, weights=weights)
        return config, int(metadata.get("steps_completed") or config.steps)

    def fit(self, train: TrainingPairs) -> None:
        super().fit(train)  # the EMA fallback for items outside the candidates
        config, weights = self.train_config, self.train_config.weights
        torch.manual_seed(config.seed)
        examples = [Example(signals, float(label)) for signals, label in train]
        pool = subsample(candidate_pool(examples, config.candidates), config.per_window, seed=config.seed)
        batches = make_batches(pool, config.batch_size, config.seed)
        self.head = self._new_head()
        optimizer = torch.optim.AdamW(self.head.parameters(), lr=config.head_learning_rate,
                                      weight_decay=config.weight_decay)
        # TRAIL's schedule (warmup, cosine decay over the planned steps), stretched if this head trains longer
        schedule = replace(config, steps=max(config.steps, self.steps))
        self.head.train()
        for step in range(self.steps if batches else 0):
            batch = batches[step % len(batches)]  # cycles through the batches, as `trail train` does
            for group in optimizer.param_groups:
                group["lr"] = config.head_learning_rate * _learning_rate_factor(step, schedule)
            labels = torch.tensor([e.label for e in batch], dtype=torch.float32)
            scores = self.head(*self._head_inputs([e.signals for e in batch]))
            loss = sum((getattr(weights, name) * value for name, value in score_terms(scores, labels, weights).items()),
                       torch.zeros(()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0)
            optimizer.step()
            self.steps_trained = step + 1
        self.head.eval()

    def _new_head(self) -> nn.Module:
        """The untrained head; ``benchmarks/head_inputs.py`` overrides this and :meth:`_head_inputs` to try inputs
        the score head does not read."""
        return _FeatureOnlyHead(len(FEATURE_NAMES), self.width)

    def _head_inputs(self, signals: Sequence[TrendSignals]) -> tuple[torch.Tensor, ...]:
        return head_inputs(signals)

    def _llm_counts(self, signals: Sequence[TrendSignals]) -> FloatArray:
        with torch.no_grad():
            log_counts = self.head(*self._head_inputs(signals)).numpy().astype(np.float64)
        return np.clip(np.expm1(log_counts), 0.0, None)
