"""Would the score head rank better if it read the item's category, the calendar or its title directly?

Issue 13 asks, where the LLM adds nothing, to keep searching in "title semantics, category text, the date". The LLM
reads all three in the prompt; this asks whether the head would gain from reading them itself, as PARE reads a
hashed category. Measured on the no-LLM head (:class:`training.feature_head.FeatureHead`: TRAIL's head on the
features alone, the shipped checkpoint's recipe) because it trains in seconds; scored on the VALIDATION windows of
each dataset, so the test windows stay unread. Each variant adds one input to the plain head:

- ``category``: an 8-wide embedding of the category in PARE's md5 buckets (64; bucket 0 = none);
- ``calendar``: week of the year as sin/cos, plus the weekday one-hot for windows shorter than a week;
- ``title``: the mean of 8-wide embeddings of the title's words, each word in one of 1,024 md5 buckets;
- ``all``: the three together.

Each variant is trained with every seed, its NDCG@20 per validation window averaged over the seeds, and compared
with the plain head by a paired bootstrap over the windows::

    .venv/bin/python benchmarks/head_inputs.py          # both datasets, 10x the checkpoint's steps, seeds 0 1 2
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import torch
from torch import nn

from trail.features import FEATURE_NAMES
from trail.signals import TrendSignals
from training.bootstrap import paired_bootstrap
from training.evaluate import evaluate
from training.feature_head import FeatureHead
from training.model import head_inputs
from training.pare import category_buckets
from validation_windows import DATASETS, validation_problem
VARIANTS: dict[str, tuple[str, ...]] = {"plain": (), "category": ("category",), "calendar": ("calendar",),
                                         "title": ("title",), "all": ("category", "calendar", "title")}
CATEGORY_BUCKETS, TITLE_BUCKETS, EMBEDDING_DIM, TITLE_WORDS = 64, 1024, 8, 24
CALENDAR_COLUMNS = 2 + 7  # week of year (sin, cos), weekday one-hot
_DAY_MS = 86_400_000


def calendar_columns(signals: TrendSignals) -> list[float]:
    if signals.window_start_ms is None:
        return [0.0] * CALENDAR_COLUMNS
    start = datetime.fromtimestamp(signals.window_start_ms / 1000, tz=timezone.utc)
    angle = 2 * np.pi * start.isocalendar().week / 52.18
    daily = (signals.window_size_ms or 7 * _DAY_MS) < 7 * _DAY_MS
    return [float(np.sin(angle)), float(np.cos(angle)), *(float(daily and start.weekday() == d) for d in range(7))]


def title_buckets(signals: Sequence[TrendSignals]) -> torch.Tensor:
    """Per item the md5 buckets of its title's first words, right-padded with bucket 0 (which counts for nothing)."""
    words = [re.findall(r"[a-z0-9]+", (s.title or "").lower())[:TITLE_WORDS] for s in signals]
    rows = [list(category_buckets(w, TITLE_BUCKETS)) if w else [] for w in words]
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.int64)


class _WiderHead(nn.Module):
    """The plain feature head with the chosen extra inputs concatenated to the features."""

    def __init__(self, width: int, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.inputs = inputs
        extra = {"category": EMBEDDING_DIM, "calendar": CALENDAR_COLUMNS, "title": EMBEDDING_DIM}
        self.mlp = nn.Sequential(nn.Linear(len(FEATURE_NAMES) + sum(extra[i] for i in inputs), width), nn.GELU(),
                                 nn.Linear(width, 1))
        nn.init.zeros_(self.mlp[2].weight)  # starts as "next = this window", as the plain head does
        nn.init.zeros_(self.mlp[2].bias)
        # made after the MLP, and only when read: the plain variant draws exactly FeatureHead's initial weights
        if "category" in inputs:
            self.category = nn.Embedding(CATEGORY_BUCKETS, EMBEDDING_DIM)
        if "title" in inputs:
            self.title = nn.EmbeddingBag(TITLE_BUCKETS, EMBEDDING_DIM, mode="sum", padding_idx=0)

    def forward(self, features: torch.Tensor, current: torch.Tensor, category: torch.Tensor, calendar: torch.Tensor,
                title: torch.Tensor) -> torch.Tensor:
        parts = [features]
        if "category" in self.inputs:
            parts.append(self.category(category))
        if "calendar" in self.inputs:
            parts.append(calendar)
        if "title" in self.inputs:
            parts.append(self.title(title) / (title > 0).sum(dim=1, keepdim=True).clamp(min=1))
        return current + self.mlp(torch.cat(parts, dim=1)).squeeze(-1)


@dataclass
class WiderFeatureHead(FeatureHead):
    inputs: tuple[str, ...] = ()

    def _new_head(self) -> nn.Module:
        return _WiderHead(self.width, self.inputs)

    def _head_inputs(self, signals: Sequence[TrendSignals]) -> tuple[torch.Tensor, ...]:
        """Only the extra inputs this variant reads are built (an empty tensor stands for the others)."""
        unread = torch.empty(0)
        category = (torch.from_numpy(category_buckets([s.category for s in signals], CATEGORY_BUCKETS))
                    if "category" in self.inputs else unread)
        calendar = (torch.tensor([calendar_columns(s) for s in signals], dtype=torch.float32)
                    if "calendar" in self.inputs else unread)
        title = title_buckets(signals) if "title" in self.inputs else unread
        return (*head_inputs(signals), category, calendar, title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--steps-factor", type=int, default=10,
                        help="training steps per head, as a multiple of the checkpoint's (10: the no-LLM_10x head)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.datasets:
        validation, config, steps = validation_problem(name)
        per_window: dict[str, np.ndarray] = {}
        for variant, inputs in VARIANTS.items():
            heads = [WiderFeatureHead(steps=args.steps_factor * steps, train_config=replace(config, seed=seed),
                                      inputs=inputs, label=f"{variant} seed={seed}") for seed in args.seeds]
            results = evaluate(validation, heads)
            per_window[variant] = np.mean([[r.per_window[w]["ndcg@20"] for w in sorted(r.per_window)]
                                           for r in results], axis=0)
            by_seed = " ".join(f"{r.metrics['ndcg@20']:.4f}" for r in results)
            mae = np.mean([r.metrics["mae_log1p"] for r in results])
            print(f"{name:>14}  {variant:<9} NDCG@20 {per_window[variant].mean():.4f} (seeds: {by_seed})  "
                  f"MAE(log1p) {mae:.4f}", flush=True)
        for variant in VARIANTS:
            if variant != "plain":
                gain = paired_bootstrap(per_window[variant], per_window["plain"])
                print(f"{name:>14}  {variant:<9} - plain: {gain.difference:+.4f} [{gain.difference_low:+.4f}, "
                      f"{gain.difference_high:+.4f}] over {gain.windows} validation windows", flush=True)


if __name__ == "__main__":
    main()
