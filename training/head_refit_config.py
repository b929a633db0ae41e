"""The options of a score-head refit (:mod:`training.head_refit`), apart from the refit itself so that the CLI can
show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from .loss_weights import LossWeights

__all__ = ["SCHEDULES", "HeadRefitConfig"]

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class HeadRefitConfig:
    epochs: int = 30
    batch_size: int = 32  # same-window batches: the ranking terms compare items that competed for one list
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    candidates: int = 200  # per window, by pre-rank: what the worker scores
    # training examples per window, balanced rise/fall/level as the fine-tune's pool; 0: every candidate, in the
    # data's own mix (the balanced pool over-weights movers, which biases the regression the head learns)
    per_window: int = 96
    # The two caps bound the forward passes (~1 item/s on a slow 2-core CPU): what the shipped refits used.
    max_train_examples: int | None = 1200  # whole training windows kept evenly over the span, the newest first
    validation_every: int = 2  # validation windows kept: every n-th, counted from the newest
    schedule: str = "constant"  # the head's learning rate: "constant", or "cosine" down to 0 over the epochs
    hidden_noise: float = 0.0  # Gaussian noise on the hidden state while training, in units of each dimension's std
    # keep a refit epoch only if the paired bootstrap over validation windows puts its NDCG@20 gain over the head as
    # it came above zero (95%); otherwise the head as it came stays. Off by default: over the 4 validation weeks the
    # default refit uses, it called the shipped refit's gain confident (+0.026 [+0.015, +0.042]), and that head then
    # ranked worse on the test weeks. Four windows make too narrow an interval; it is worth a default with many more.
    confident_gain: bool = False
    # keep only epochs whose validation MAE (log1p counts) is at most this: a head that ranks better by regressing
    # worse than the best baseline is not a better forecast (None: any MAE). The head as it came stays the fallback.
    max_mae: float | None = None
    # heads trained side by side with seeds seed, seed+1, …, averaged and folded into one wider head
    # (training.head_ensemble); with more than one, only the average at the last epoch competes with the head as it
    # came: averaging replaces picking the best of noisy epochs
    ensemble: int = 1
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
