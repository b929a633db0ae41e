"""A PARE-style neural forecaster of the next window's count, for the evaluation baselines.

PARE (Popularity-Aware Recommendation Engine, Ji et al.) predicts an item's future popularity by encoding several
views of it in separate modules and fusing them with attention: a *popularity-history* module over the item's
recent popularity series, a *temporal* module over when the item is (its age and time context) and a
*side-information* module over what the item is (its category and other metadata); an attention layer weighs the
module vectors item by item and a head maps the fused vector to the predicted popularity.

What :class:`Pare` reproduces, on TRAIL's :class:`~trail.signals.TrendSignals`:

- **history module** — a GRU (hidden size ``dim``) over the last 8 window counts, ``log1p``, left-padded with zeros
  (the ``history_*`` columns of :func:`~training.baselines.feature_matrix`); its last hidden state is the module
  vector.
- **temporal module** — an embedding of the item's age in windows, bucketed on a log2 scale, concatenated with the
  trend-shape features (acceleration, EW means, momentum, z-score, long-term mean, level ratio, HoltWinters
  forecast) and passed through a two-layer MLP.
- **side-information module** — an embedding of the category, hashed with MD5 into ``category_buckets`` buckets
  (bucket 0 = no category; never Python's salted ``hash``), concatenated with distinct users, rank, inverse rank,
  rank change and category growth, through a two-layer MLP.
- **attention fusion** — additive attention with one learned query: ``e_k = q·tanh(W m_k + b)``, softmax over the
  three module vectors ``m_k``, weighted sum; a linear head gives ``log1p(next count)``. The weights are exposed by
  :meth:`Pare.attention_weights` (columns in :data:`MODULE_NAMES` order).

Simplifications: no item-ID embedding and no positional/seasonal calendar embedding (window lengths differ across
datasets, so "week of the year" is not defined in general); side information is the category and the
interaction-derived features, not text or images; popularity is the per-window count of the dataset's windows.
Training: Adam on the MSE of ``log1p(next count)`` plus, weighted by ``ranking_weight`` (0 switches it off), a
RankNet pairwise loss between items of the same window — every mini-batch holds examples of one window only.
Numeric inputs go through ``sign(x)·log1p(|x|)`` and are then standardised with training-set statistics (the
history with one mean and standard deviation for all 8 positions, so its shape is kept).

Fitting is seeded and deterministic: the torch RNG is forked and seeded for initialisation, shuffling uses a
seeded NumPy generator, and ``fit``/``predict`` run on ``threads`` intra-op threads (restored afterwards).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from trail.signals import TrendSignals

from .baselines import FEATURE_NAMES, HISTORY_FEATURES, feature_matrix

__all__ = ["MODULE_NAMES", "Pare", "PareInputs", "PareNetwork", "age_buckets", "category_buckets"]

FloatArray = NDArray[np.float64]
TrainingPairs = Sequence[tuple[TrendSignals, float]]

MODULE_NAMES: tuple[str, str, str] = ("history", "temporal", "side")

HISTORY_COLUMNS: tuple[str, ...] = tuple(f"history_{position}" for position in range(HISTORY_FEATURES))
TEMPORAL_COLUMNS: tuple[str, ...] = (
    "acceleration", "ewm_fast", "ewm_slow", "momentum", "zscore", "long_term_mean", "level_ratio", "forecast",
)
SIDE_COLUMNS: tuple[str, ...] = ("distinct_users", "rank", "inverse_rank", "rank_change", "category_growth")
AGE_BUCKETS = 8  # log2 buckets of the age in windows: 0, 1–2, 3–6, 7–14, …, 127+


def _columns(names: Sequence[str]) -> list[int]:
    return [FEATURE_NAMES.index(name) for name in names]


def _signed_log1p(values: FloatArray) -> FloatArray:
    return np.sign(values) * np.log1p(np.abs(values))


def age_buckets(age_windows: FloatArray) -> NDArray[np.int64]:
    """``min(floor(log2(age + 1)), AGE_BUCKETS − 1)`` for ages in windows (negative ages count as 0)."""
    ages = np.maximum(np.asarray(age_windows, dtype=np.float64), 0.0)
    return np.minimum(np.floor(np.log2(ages + 1.0)), AGE_BUCKETS - 1).astype(np.int64)


def category_buckets(categories: Sequence[str | None], buckets: int) -> NDArray[np.int64]:
    """Bucket 0 for no category, else ``1 + md5(category) mod (buckets − 1)``: stable across runs and machines."""
    if buckets < 2:
        raise ValueError(f"category buckets must be >= 2, got {buckets}")
    cache: dict[str | None, int] = {None: 0}
    out = np.empty(len(categories), dtype=np.int64)
    for position, category in enumerate(categories):
        bucket = cache.get(category)
        if bucket is None:
            digest = hashlib.md5(category.encode("utf-8")).digest()  # type: ignore[union-attr]
            bucket = 1 + int.from_bytes(digest[:8], "big") % (buckets - 1)
            cache[category] = bucket
        out[position] = bucket
    return out


@dataclass(frozen=True)
class Standardiser:
    """Per-column (or, for the history, one shared) mean and standard deviation from the training set."""

    mean: FloatArray
    std: FloatArray

    @classmethod
    def fit(cls, values: FloatArray, shared: bool = False) -> "Standardiser":
        axis = None if shared else 0
        mean = np.asarray(values.mean(axis=axis), dtype=np.float64)
        std = np.asarray(values.std(axis=axis), dtype=np.float64)
        return cls(mean, np.where(std > 1e-8, std, 1.0))

    def __call__(self, values: FloatArray) -> FloatArray:
        return (values - self.mean) / self.std


@dataclass(frozen=True)
class PareInputs:
    """The network's inputs for a list of signals, as tensors (float32 / int64)."""

    history: torch.Tensor  # (n, HISTORY_FEATURES, 1)
    temporal: torch.Tensor  # (n, len(TEMPORAL_COLUMNS))
    age: torch.Tensor  # (n,)
    side: torch.Tensor  # (n, len(SIDE_COLUMNS))
    category: torch.Tensor  # (n,)

    def __len__(self) -> int:
        return int(self.age.shape[0])

    def take(self, rows: torch.Tensor | slice) -> "PareInputs":
        return PareInputs(self.history[rows], self.temporal[rows], self.age[rows], self.side[rows],
                          self.category[rows])


@dataclass(frozen=True)
class RawInputs:
    """Transformed but not yet standardised inputs (what the standardisers are fitted on)."""

    history: FloatArray
    temporal: FloatArray
    age: NDArray[np.int64]
    side: FloatArray
    category: NDArray[np.int64]


def raw_inputs(signals: Sequence[TrendSignals], buckets: int) -> RawInputs:
    """One vectorised pass: :func:`feature_matrix` columns through ``sign·log1p``, age and category buckets."""
    matrix = feature_matrix(signals)
    return RawInputs(
        history=np.log1p(np.maximum(matrix[:, _columns(HISTORY_COLUMNS)], 0.0)),
        temporal=_signed_log1p(matrix[:, _columns(TEMPORAL_COLUMNS)]),
        age=age_buckets(matrix[:, FEATURE_NAMES.index("age_windows")]),
        side=_signed_log1p(matrix[:, _columns(SIDE_COLUMNS)]),
        category=category_buckets([s.category for s in signals], buckets),
    )


def _mlp(inputs: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, dim), nn.ReLU(), nn.Linear(dim, dim))


class PareNetwork(nn.Module):
    """History GRU, temporal MLP and side-information MLP, fused by single-query additive attention."""

    def __init__(self, dim: int, category_buckets: int, embedding_dim: int = 8) -> None:
        super().__init__()
        self.history = nn.GRU(input_size=1, hidden_size=dim, batch_first=True)
        self.age_embedding = nn.Embedding(AGE_BUCKETS, embedding_dim)
        self.temporal = _mlp(embedding_dim + len(TEMPORAL_COLUMNS), dim)
        self.category_embedding = nn.Embedding(category_buckets, embedding_dim)
        self.side = _mlp(embedding_dim + len(SIDE_COLUMNS), dim)
        self.attention_key = nn.Linear(dim, dim)
        self.attention_query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.head = nn.Linear(dim, 1)

    def modules_and_weights(self, inputs: PareInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The module vectors, shape (n, 3, dim), and their attention weights, shape (n, 3)."""
        _, last_hidden = self.history(inputs.history)
        history = last_hidden[-1]
        temporal = self.temporal(torch.cat([self.age_embedding(inputs.age), inputs.temporal], dim=1))
        side = self.side(torch.cat([self.category_embedding(inputs.category), inputs.side], dim=1))
        stacked = torch.stack([history, temporal, side], dim=1)
        energies = torch.tanh(self.attention_key(stacked)) @ self.attention_query
        return stacked, torch.softmax(energies, dim=1)

    def forward(self, inputs: PareInputs) -> torch.Tensor:
        """Predicted ``log1p(next count)``, shape (n,)."""
        stacked, weights = self.modules_and_weights(inputs)
        fused = (weights.unsqueeze(-1) * stacked).sum(dim=1)
        return self.head(fused).squeeze(-1)


def ranknet_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean RankNet loss ``softplus(−(s_i − s_j))`` over the pairs with ``target_i > target_j``; 0 if all tie."""
    better = targets.unsqueeze(1) > targets.unsqueeze(0)
    if not bool(better.any()):
        return scores.sum() * 0.0
    return F.softplus(-(scores.unsqueeze(1) - scores.unsqueeze(0))[better]).mean()


def window_batches(windows: NDArray[np.int64], batch_size: int, rng: np.random.Generator) -> Iterator[NDArray[np.int64]]:
    """Row indices in mini-batches of one window each (shuffled within windows), the batches in random order."""
    order = np.lexsort((rng.random(len(windows)), windows))
    sorted_windows = windows[order]
    starts = np.flatnonzero(np.r_[True, sorted_windows[1:] != sorted_windows[:-1]])
    ends = np.r_[starts[1:], len(order)]
    batches = [order[begin:min(begin + batch_size, end)]
               for start, end in zip(starts, ends) for begin in range(start, end, batch_size)]
    for position in rng.permutation(len(batches)):
        yield batches[position]


class _Threads:
    """Context manager: ``torch.set_num_threads(n)`` inside, the previous value restored on exit."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.previous = torch.get_num_threads()

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.previous)


@dataclass
class Pare:
    """PARE-style forecaster (see the module docstring): fitted to ``log1p(next count)`` with MSE plus
    ``ranking_weight`` × within-window RankNet; predicts ``max(expm1(output), 0)``. ``fit`` replaces any earlier
    model. ``threads`` sets torch's intra-op threads during ``fit`` and ``predict`` (None: leave as is)."""

    seed: int = 0
    dim: int = 32
    category_buckets: int = 64
    epochs: int = 15
    batch_size: int = 512
    learning_rate: float = 3e-3
    ranking_weight: float = 0.5
    threads: int | None = 1
    name: str = field(default="pare", init=False)
    _network: PareNetwork | None = field(default=None, init=False, repr=False, compare=False)
    _scalers: tuple[Standardiser, Standardiser, Standardiser] | None = field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Pare.{name} must be >= 1, got {getattr(self, name)}")
        if self.category_buckets < 2:
            raise ValueError(f"Pare.category_buckets must be >= 2, got {self.category_buckets}")
        if self.learning_rate <= 0 or self.ranking_weight < 0:
            raise ValueError("Pare.learning_rate must be > 0 and ranking_weight >= 0")

    @property
    def fitted(self) -> bool:
        return self._network is not None

    # -- inputs ---------------------------------------------------------------------------------------------
    def _tensors(self, raw: RawInputs) -> PareInputs:
        assert self._scalers is not None
        history_scaler, temporal_scaler, side_scaler = self._scalers
        return PareInputs(
            history=torch.from_numpy(history_scaler(raw.history).astype(np.float32)).unsqueeze(-1),
            temporal=torch.from_numpy(temporal_scaler(raw.temporal).astype(np.float32)),
            age=torch.from_numpy(raw.age),
            side=torch.from_numpy(side_scaler(raw.side).astype(np.float32)),
            category=torch.from_numpy(raw.category),
        )

    # -- training -------------------------------------------------------------------------------------------
    def fit(self, train: TrainingPairs) -> None:
        if not train:
            raise ValueError("Pare.fit needs at least one example")
        signals = [s for s, _ in train]
        targets = np.array([label for _, label in train], dtype=np.float64)
        if not np.all(np.isfinite(targets)) or np.any(targets < 0):
            raise ValueError("next-window counts must be finite and non-negative")
        raw = raw_inputs(signals, self.category_buckets)
        self._scalers = (Standardiser.fit(raw.history, shared=True), Standardiser.fit(raw.temporal),
                         Standardiser.fit(raw.side))
        inputs = self._tensors(raw)
        log_targets = torch.from_numpy(np.log1p(targets).astype(np.float32))
        windows = np.array([s.item.window_index for s in signals], dtype=np.int64)
        with _Threads(self.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = PareNetwork(self.dim, self.category_buckets)
            with torch.no_grad():
                network.head.bias.fill_(float(log_targets.mean()))
            self._train(network, inputs, log_targets, windows)
        network.eval()
        self._network = network

    def _train(self, network: PareNetwork, inputs: PareInputs, targets: torch.Tensor,
               windows: NDArray[np.int64]) -> None:
        optimiser = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        rng = np.random.default_rng(self.seed)
        network.train()
        for _ in range(self.epochs):
            for rows in window_batches(windows, self.batch_size, rng):
                index = torch.from_numpy(rows)
                batch_targets = targets[index]
                predicted = network(inputs.take(index))
                loss = F.mse_loss(predicted, batch_targets)
                if self.ranking_weight > 0 and len(rows) > 1:
                    loss = loss + self.ranking_weight * ranknet_loss(predicted, batch_targets)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 5.0)
                optimiser.step()

    # -- inference ------------------------------------------------------------------------------------------
    def _inputs(self, signals: Sequence[TrendSignals]) -> PareInputs:
        if self._network is None:
            raise RuntimeError("Pare used before fit")
        return self._tensors(raw_inputs(signals, self.category_buckets))

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        if self._network is None:
            raise RuntimeError("Pare.predict called before fit")
        if not signals:
            return np.zeros(0, dtype=np.float64)
        inputs = self._inputs(signals)
        with _Threads(self.threads), torch.inference_mode():
            log_counts = self._network(inputs).double().numpy()
        return np.clip(np.expm1(np.nan_to_num(log_counts, nan=0.0, posinf=50.0, neginf=0.0)), 0.0, None)

    def attention_weights(self, signals: Sequence[TrendSignals]) -> FloatArray:
        """The fusion weights per item, shape ``(n, 3)``, columns in :data:`MODULE_NAMES` order; rows sum to 1."""
        if self._network is None:
            raise RuntimeError("Pare.attention_weights called before fit")
        if not signals:
            return np.zeros((0, len(MODULE_NAMES)), dtype=np.float64)
        inputs = self._inputs(signals)
        with _Threads(self.threads), torch.inference_mode():
            _, weights = self._network.modules_and_weights(inputs)
        return weights.double().numpy()
