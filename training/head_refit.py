"""Refit TRAIL's score head on the fine-tuned LLM's frozen prompt states, choosing its epochs on validation windows.

Why: on these CPUs the joint fine-tune sees a few hundred examples (70 steps × 8), because every step runs the
LLM forward and backward over prompt, cue and explanation. The score head is a small MLP on the prompt's last
hidden state plus the numeric features; once the LoRA weights are fixed, that hidden state is a pure function of
the prompt. So it is computed once per example (a forward pass, no backward, no explanation tokens), and the head
then trains for many epochs over the whole candidate pool in seconds — the same losses, the same same-window
batches. The LLM, the projections and the explanations are untouched; only ``heads.safetensors`` changes.

Honest selection: each epoch is scored by NDCG@20 over the top ``candidates`` of every validation window (the
items the worker would score), and the epoch kept is the best one, the head as it came (epoch 0) included — a
refit can only be kept if it beats the head it replaces on validation windows. Test windows are never read here.
With an :class:`~training.int8_guard.Int8Guard`, only epochs whose head still ranks the export's verification items
like PyTorch on int8 LLM states compete: the kept head is one that ``trail export --quantize`` will accept.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trail.errors import ConfigError

from .bootstrap import paired_bootstrap
from .checkpoint_files import CONFIG_FILE
from .examples import Example, subsample
from .head_ensemble import ensemble_head
from .head_refit_config import SCHEDULES, HeadRefitConfig
from .int8_guard import Int8Guard
from .losses import score_terms
from .metrics import mae_log1p, ndcg_at_k
from .model import HEADS_FILE, ScoreHead, TrailConfig, TrailModel, head_inputs
from .state_cache import cached_rows
from .train import METADATA_FILE, candidate_pool

__all__ = ["SCHEDULES", "HeadRefitConfig", "PromptStates", "RefitResult", "confident_gain", "prompt_states",
           "refit_score_head"]


@dataclass
class PromptStates:
    """Per example, the frozen LLM's hidden state at the prompt's last token and what the head reads besides."""

    hidden: torch.Tensor  # (N, H)
    features: torch.Tensor  # (N, F)
    current_log: torch.Tensor  # (N,)
    labels: torch.Tensor  # (N,) true next counts
    windows: np.ndarray  # (N,) window index

    def rows(self, positions: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(np.asarray(positions), dtype=torch.long)
        return self.hidden[index], self.features[index], self.current_log[index]


@dataclass(frozen=True)
class RefitResult:
    chosen_epoch: int
    validation_ndcg20: list[float]  # per epoch, epoch 0 = the head before the refit
    validation_mae_log1p: list[float]
    train_examples: int
    train_windows: int
    validation_examples: int
    validation_windows: int
    seconds_states: float
    seconds_fit: float
    int8_spearman: list[float] | None = None  # per epoch, with a guard: the export's int8 check of that epoch's head
    # with ``confident_gain``: the best epoch's NDCG@20 gain over epoch 0 and its 95% paired-bootstrap interval
    gain_interval: tuple[float, float, float] | None = None


def prompt_states(model: TrailModel, examples: Sequence[Example], batch_size: int = 16,
                  cache: Path | None = None, llm_key: str = "") -> PromptStates:
    """One prompt-only forward per example, and what the head reads besides.

    ``cache``: a folder where the hidden states are kept, one file per (``llm_key``, a window's prompts) —
    ``llm_key`` must name the LLM weights (:func:`training.model.llm_digest`), so another adapter never reads them.
    A second refit of the same checkpoint (other epochs, rates, noise), and ``trail evaluate --windows validation``
    of any head on that LLM, then skip the forward passes, the slow part on a CPU.
    """
    signals = [e.signals for e in examples]
    prompts = [model.config.render_prompt(s) for s in signals]
    windows = np.array([e.window_index for e in examples])
    hidden = _cached_hidden(model, prompts, windows, batch_size, cache, llm_key)
    return PromptStates(hidden, *head_inputs(signals),
                        torch.tensor([e.label for e in examples], dtype=torch.float32), windows)


def _cached_hidden(model: TrailModel, prompts: list[str], windows: np.ndarray, batch_size: int, cache: Path | None,
                   llm_key: str) -> torch.Tensor:
    """The prompts' states, kept on disk one entry per window: the entries ``trail evaluate`` reads for the same
    windows' candidates (:func:`training.llm_forecasters.TrailForecaster`)."""
    if cache is None or not llm_key or not prompts:
        return model.prompt_states(prompts, batch_size)
    compute = lambda batch: model.prompt_states(batch, batch_size)  # noqa: E731
    hidden = torch.zeros((len(prompts), model.lm.get_base_model().config.hidden_size))
    for window in dict.fromkeys(windows.tolist()):
        positions = np.flatnonzero(windows == window)
        hidden[torch.from_numpy(positions)] = cached_rows(cache, llm_key, [prompts[p] for p in positions], compute)
    return hidden


def _thin_windows(examples: Sequence[Example], keep_every: int) -> list[Example]:
    windows = sorted({e.window_index for e in examples}, reverse=True)[::keep_every]
    kept = set(windows)
    return [e for e in examples if e.window_index in kept]


def _training_pool(train: Sequence[Example], config: HeadRefitConfig) -> list[Example]:
    pool = candidate_pool(train, config.candidates)
    if config.per_window:
        pool = subsample(pool, config.per_window, seed=config.seed)
    if config.max_train_examples is not None and len(pool) > config.max_train_examples:
        keep_every = -(-len(pool) // config.max_train_examples)  # ceil: whole windows, spread over the span
        pool = _thin_windows(pool, keep_every)
    return pool


def _validation_scores(head: ScoreHead, states: PromptStates) -> tuple[list[float], float]:
    """NDCG@20 per validation window (candidates only, oldest first) and MAE of log1p counts."""
    with torch.no_grad():
        predicted = head(*states.rows(np.arange(len(states.labels)))).numpy().astype(np.float64)
    counts = np.clip(np.expm1(predicted), 0.0, None)
    labels = states.labels.numpy().astype(np.float64)
    per_window = [ndcg_at_k(counts[states.windows == w], labels[states.windows == w], 20)
                  for w in np.unique(states.windows)]
    return per_window, mae_log1p(counts, labels)


def _window_batches(states: PromptStates, batch_size: int, rng: random.Random) -> list[np.ndarray]:
    batches: list[np.ndarray] = []
    for window in np.unique(states.windows):
        members = list(np.flatnonzero(states.windows == window))
        rng.shuffle(members)
        batches.extend(np.array(members[i: i + batch_size]) for i in range(0, len(members), batch_size)
                       if len(members[i: i + batch_size]) > 1)
    rng.shuffle(batches)
    return batches


def refit_score_head(model: TrailModel, train: Sequence[Example], validation: Sequence[Example],
                     config: HeadRefitConfig = HeadRefitConfig(), log=print, states_cache: Path | None = None,
                     llm_key: str = "", guard: Int8Guard | None = None) -> RefitResult:
    """Refit ``model.score_head``; it ends as the epoch with the best validation NDCG@20 (with ``config.ensemble``
    above 1: the members' average after the last epoch, a wider head, or the head as it came).

    ``states_cache`` / ``llm_key``: where prompt states are kept between refits (see :func:`prompt_states`).
    ``guard``: only epochs that pass it can be kept, and only those within ``config.max_mae`` (epoch 0, the head as
    it came, is the fallback either way).
    """
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {config.schedule!r}")
    torch.manual_seed(config.seed)
    model.eval()
    started = time.monotonic()
    pool = _training_pool(train, config)
    held_out = _thin_windows(candidate_pool(validation, config.candidates), config.validation_every)
    validation_windows = len({e.window_index for e in held_out})
    if config.confident_gain and validation_windows < 2:
        raise ConfigError(f"a confident gain needs at least 2 validation windows to resample, got {validation_windows}")
    log(f"prompt states: {len(pool)} training and {len(held_out)} validation examples ...")
    train_states = prompt_states(model, pool, cache=states_cache, llm_key=llm_key)
    validation_states = prompt_states(model, held_out, cache=states_cache, llm_key=llm_key)
    seconds_states = time.monotonic() - started
    log(f"prompt states took {seconds_states:.0f} s ({(len(pool) + len(held_out)) / seconds_states:.1f} items/s)")

    fit_started = time.monotonic()
    initial = model.score_head
    initial_state = {k: v.clone() for k, v in initial.state_dict().items()}
    # one member: the head itself, refit in place; several: copies of it, each with its own seed, averaged
    members = [initial] if config.ensemble == 1 else [copy.deepcopy(initial) for _ in range(config.ensemble)]
    best_head = initial
    per_window, mae = _validation_scores(initial, validation_states)
    ndcg = float(np.mean(per_window))
    history_ndcg, history_mae, history_windows, best_epoch = [ndcg], [mae], [per_window], 0
    history_int8 = [guard.spearman(initial)] if guard else []
    log(f"epoch 0 (head as trained): validation NDCG@20 {ndcg:.4f}, MAE {mae:.4f}{_int8_note(history_int8)}")
    batches_per_epoch = len(_window_batches(train_states, config.batch_size, random.Random(config.seed)))
    trainers = [_MemberTrainer(member, config, batches_per_epoch, seed=config.seed + k)
                for k, member in enumerate(members)]
    noise_scale = config.hidden_noise * train_states.hidden.std(dim=0, keepdim=True)
    for epoch in range(1, config.epochs + 1):
        for trainer in trainers:
            trainer.epoch(train_states, noise_scale)
        head = members[0] if len(members) == 1 else ensemble_head(members)
        per_window, mae = _validation_scores(head, validation_states)
        ndcg = float(np.mean(per_window))
        history_windows.append(per_window)
        history_ndcg.append(ndcg)
        history_mae.append(mae)
        if guard:
            history_int8.append(guard.spearman(head))
        # an ensemble is the average at the end of the schedule, not the best of its noisy epochs
        candidate = len(members) == 1 or epoch == config.epochs
        shippable = ((guard is None or history_int8[-1] >= guard.min_spearman)
                     and (config.max_mae is None or mae <= config.max_mae))
        if candidate and shippable and ndcg > history_ndcg[best_epoch]:
            best_epoch, best_head = epoch, copy.deepcopy(head)
        log(f"epoch {epoch}: validation NDCG@20 {ndcg:.4f}, MAE {mae:.4f}{_int8_note(history_int8)}"
            + (f" (the mean of {len(members)} heads)" if len(members) > 1 else ""))
    gain = None
    if config.confident_gain and best_epoch > 0:
        confident, gain = confident_gain(history_windows[best_epoch], history_windows[0], config.seed)
        log(f"epoch {best_epoch}'s NDCG@20 gain over epoch 0: {gain[0]:+.4f} [{gain[1]:+.4f}, {gain[2]:+.4f}] over "
            f"{validation_windows} windows: " + ("kept" if confident else "within noise, the head as it came stays"))
        if not confident:
            best_epoch = 0
    if best_epoch == 0:
        initial.load_state_dict(initial_state)
        best_head = initial
    _set_score_head(model, best_head)
    return RefitResult(chosen_epoch=best_epoch, validation_ndcg20=[round(v, 4) for v in history_ndcg],
                       validation_mae_log1p=[round(v, 4) for v in history_mae], train_examples=len(pool),
                       train_windows=len({e.window_index for e in pool}), validation_examples=len(held_out),
                       validation_windows=validation_windows, seconds_states=round(seconds_states, 1),
                       seconds_fit=round(time.monotonic() - fit_started, 1),
                       int8_spearman=[round(v, 4) for v in history_int8] if guard else None, gain_interval=gain)


class _MemberTrainer:
    """One head's optimiser, learning-rate schedule and batch order: an epoch of same-window batches at a time."""

    def __init__(self, head: ScoreHead, config: HeadRefitConfig, batches_per_epoch: int, seed: int) -> None:
        self.head, self.config = head, config
        self.rng = random.Random(seed)  # member 0's: the stream a single refit always used
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer,
                                                                    T_max=config.epochs * batches_per_epoch)
                         if config.schedule == "cosine" else None)

    def epoch(self, states: PromptStates, noise_scale: torch.Tensor) -> None:
        config = self.config
        self.head.train()
        for rows in _window_batches(states, config.batch_size, self.rng):
            hidden, features, current_log = states.rows(rows)
            if config.hidden_noise:
                hidden = hidden + noise_scale * torch.randn_like(hidden)
            scores = self.head(hidden, features, current_log)
            terms = score_terms(scores, states.labels[torch.as_tensor(rows)], config.weights)
            loss = sum((getattr(config.weights, name) * value for name, value in terms.items()), torch.zeros(()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0)
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
        self.head.eval()


def _set_score_head(model: TrailModel, head: ScoreHead) -> None:
    """``model``'s score head takes ``head``'s weights: in place where the width is the same, else ``head`` replaces
    it and the config records the new width (an ensemble is wider)."""
    width = head.mlp[0].out_features
    if width == model.config.head_hidden:
        model.score_head.load_state_dict(head.state_dict())
    else:
        model.score_head = head.eval()
        model.config = dataclasses.replace(model.config, head_hidden=width)


def confident_gain(refit: Sequence[float], before: Sequence[float], seed: int = 0
                   ) -> tuple[bool, tuple[float, float, float]]:
    """Whether the refit's per-window NDCG@20 beats the head's before it beyond the noise: the paired bootstrap's 95%
    lower bound of the mean gain is above zero. Also the gain and its interval, rounded for the record."""
    interval = paired_bootstrap(refit, before, seed=seed)
    gain = (round(interval.difference, 4), round(interval.difference_low, 4), round(interval.difference_high, 4))
    return interval.difference_low > 0, gain


def _int8_note(history_int8: list[float]) -> str:
    return f", int8 Spearman {history_int8[-1]:.4f}" if history_int8 else ""


def save_refit(model: TrailModel, checkpoint: Path, result: RefitResult, config: HeadRefitConfig,
               command: str) -> None:
    """Writes the refit heads into ``checkpoint`` and records the refit in its training metadata."""
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    config_path = checkpoint / CONFIG_FILE
    widened = TrailConfig.from_json(config_path.read_text()).head_hidden != model.config.head_hidden
    state = {k: v.detach().contiguous() for k, v in model.head_modules().state_dict().items()}
    save_file(state, str(checkpoint / HEADS_FILE))
    path = checkpoint / METADATA_FILE
    metadata = json.loads(path.read_text()) if path.exists() else {}
    if widened:  # an ensemble: the checkpoint's config (and its record of it) must build the wider head
        partial = config_path.with_suffix(".partial")
        partial.write_text(model.config.to_json() + "\n")
        partial.replace(config_path)
        if "model_config" in metadata:
            metadata["model_config"]["head_hidden"] = model.config.head_hidden
    metadata["head_refit"] = {"command": command, "config": {**asdict(config), "weights": asdict(config.weights)},
                              **asdict(result)}
    path.write_text(json.dumps(metadata, indent=2) + "\n")
