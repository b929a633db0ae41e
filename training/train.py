"""Fine-tuning TRAIL: seeded, resumable, checkpointed, every loss term switchable for ablations.

The training pool is what the worker would score: per training window, the top ``candidates`` items by the
tracker's cheap pre-rank (:func:`trail.tracker.prerank_score`), then at most ``per_window`` of them balanced
between rising, falling and level next counts (:func:`training.examples.subsample`). Batches never mix windows,
so the pairwise ranking term compares items that competed for the same list.

Each example's explanation target is :func:`trail.explain.compose` with the true next count as the forecast
(the model learns to state the forecast line it is given; serving gives it the score head's prediction), and its
negative is a :func:`trail.explain.counterfactual` of a random kind — a text that fails the checker.

Checkpoints (``checkpoint-<step>/`` under the output folder, the last ``keep_checkpoints`` kept) hold the model
files plus optimiser state and the step; ``resume=True`` continues from the newest one with the same batch order.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from trail.errors import ConfigError
from trail.explain import COUNTERFACTUAL_KINDS, PHRASINGS, Forecast, compose, counterfactual
from trail.tracker import prerank_order

from .examples import Example, subsample
from .losses import (
    LossWeights,
    explanation_lm_loss,
    info_nce_loss,
    likelihood_margin_loss,
    score_terms,
    sequence_log_likelihood,
)
from .model import Encoded, TrailConfig, TrailModel, explanation_target

__all__ = ["TrainConfig", "TrainingText", "candidate_pool", "make_batches", "loss_terms", "train"]

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
METADATA_FILE = "training_metadata.json"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch_size: int = 8
    per_window: int = 96
    candidates: int = 200
    learning_rate: float = 1e-3  # LoRA
    head_learning_rate: float = 2e-3  # score head and projections
    weight_decay: float = 0.0
    warmup_steps: int = 20
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    max_minutes: float | None = None  # stop (and save) when the next step would pass this budget
    checkpoint_every: int = 50
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class TrainingText:
    """One example with the texts its losses read."""

    example: Example
    prompt: str
    cue: str
    explanation: str
    counterfactual: str


def candidate_pool(examples: Sequence[Example], candidates: int) -> list[Example]:
    """Per window, the top ``candidates`` examples by pre-rank score (ties by item id, as the worker breaks them)."""
    by_window: dict[int, list[Example]] = {}
    for example in examples:
        by_window.setdefault(example.window_index, []).append(example)
    pool: list[Example] = []
    for window in sorted(by_window):
        ranked = sorted(by_window[window], key=lambda e: prerank_order(e.signals.item))
        pool.extend(ranked[:candidates])
    return pool


def make_batches(examples: Sequence[Example], batch_size: int, seed: int) -> list[list[Example]]:
    """Same-window batches of ``batch_size`` (a window's remainder is dropped), in a seeded random order."""
    rng = random.Random(seed)
    by_window: dict[int, list[Example]] = {}
    for example in examples:
        by_window.setdefault(example.window_index, []).append(example)
    batches: list[list[Example]] = []
    for window in sorted(by_window):
        members = list(by_window[window])
        rng.shuffle(members)
        batches.extend(members[i: i + batch_size] for i in range(0, len(members) - batch_size + 1, batch_size))
    rng.shuffle(batches)
    return batches


def texts_for(example: Example, rng: random.Random, model_config: TrailConfig) -> TrainingText:
    signals, forecast = example.signals, Forecast(example.label)
    variant = rng.randrange(PHRASINGS)
    kind = COUNTERFACTUAL_KINDS[rng.randrange(len(COUNTERFACTUAL_KINDS))]
    return TrainingText(example, model_config.render_prompt(signals), model_config.explanation_cue(signals, example.label),
                        compose(signals, forecast, variant), counterfactual(signals, forecast, kind, variant))


def loss_terms(model: TrailModel, texts: Sequence[TrainingText], weights: LossWeights) -> dict[str, torch.Tensor]:
    """Every switched-on loss term for one batch, and their weighted sum under ``"total"``."""
    eos = model.tokenizer.eos_token
    signals = [t.example.signals for t in texts]
    labels = torch.tensor([t.example.label for t in texts], dtype=torch.float32)
    prompts, cues = [t.prompt for t in texts], [t.cue for t in texts]
    positives = [explanation_target(t.explanation, eos) for t in texts]
    needs_text = weights.lm > 0 or weights.contrastive
    if weights.margin > 0:  # faithful and counterfactual continuations in one forward
        negatives = [explanation_target(t.counterfactual, eos) for t in texts]
        batch = model.encode(prompts + prompts, cues + cues, positives + negatives)
    elif needs_text:
        batch = model.encode(prompts, cues, positives)
    else:
        batch = model.encode(prompts)
    hidden = model.hidden_states(batch)
    n = len(texts)
    scores = model.score_from_hidden(hidden[:n], _rows(batch, n), signals)
    terms = score_terms(scores, labels, weights)
    if weights.lm > 0 or weights.margin > 0:
        token_log_probs, rows = model.continuation_log_probs(hidden, batch)
        if weights.lm > 0:
            terms["lm"] = explanation_lm_loss(token_log_probs[rows < n])
        if weights.margin > 0:
            likelihood = sequence_log_likelihood(token_log_probs, rows, 2 * n)
            terms["margin"] = likelihood_margin_loss(likelihood[:n], likelihood[n:], weights.margin_nats)
    if weights.info_nce > 0:  # explanations encoded on their own, so the signals can't leak into them
        alone = model.encode([""] * (2 * n), None, positives + [explanation_target(t.counterfactual, eos)
                                                                  for t in texts])
        text_hidden = model.hidden_states(alone)
        text_vectors = model.text_embedding(text_hidden, alone)
        terms["info_nce"] = info_nce_loss(model.signal_embedding(hidden[:n], _rows(batch, n)), text_vectors[:n],
                                          text_vectors[n:], weights.temperature)
    factors = {"regression": weights.regression, "pairwise": weights.pairwise, "listwise": weights.listwise,
               "lm": weights.lm, "margin": weights.margin, "info_nce": weights.info_nce}
    terms["total"] = sum((factors[name] * value for name, value in terms.items()), torch.zeros(()))
    return terms


def _rows(batch: Encoded, n: int) -> Encoded:
    """The batch restricted to its first ``n`` rows (the faithful half when counterfactuals ride along)."""
    return Encoded(batch.input_ids[:n], batch.attention_mask[:n], batch.score_index[:n],
                   batch.continuation_mask[:n], batch.lengths[:n])


def _optimizer(model: TrailModel, config: TrainConfig) -> torch.optim.Optimizer:
    head = [p for p in model.head_modules().parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    lora = [p for p in model.trainable_parameters() if id(p) not in head_ids]
    return torch.optim.AdamW([{"params": lora, "lr": config.learning_rate},
                              {"params": head, "lr": config.head_learning_rate}],
                             weight_decay=config.weight_decay)


def _learning_rate_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _checkpoints(out: Path) -> list[Path]:
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(model: TrailModel, optimizer: torch.optim.Optimizer, step: int, history: list[dict],
                     out: Path, keep: int) -> Path:
    folder = out / f"checkpoint-{step}"
    staging = out / f".checkpoint-{step}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save(staging)
    torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
    (staging / STATE_FILE).write_text(json.dumps({"step": step, "history": history}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def train(model_config: TrailConfig, config: TrainConfig, train_examples: Sequence[Example], out: Path,
          metadata: dict | None = None, resume: bool = False,
          on_step: Callable[[int, dict[str, float]], None] | None = None,
          init_from: Path | None = None) -> tuple[TrailModel, dict]:
    """Fine-tune on ``train_examples``; the final model is saved to ``out`` with ``training_metadata.json``.

    ``init_from``: warm start from that checkpoint's weights (its own config; ``model_config`` is then unused) with
    a fresh optimiser and schedule, as ``trail refresh`` continues the serving model on recent windows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    pool = subsample(candidate_pool(train_examples, config.candidates), config.per_window, seed=config.seed)
    batches = make_batches(pool, config.batch_size, config.seed)
    if not batches:
        raise ConfigError(f"no training batch: {len(pool)} pooled examples for batch size {config.batch_size}")
    start_step, history = 0, []
    existing = _checkpoints(out) if resume else []
    if existing:
        model = TrailModel.load(existing[-1])
    elif init_from is not None:
        model = TrailModel.load(init_from)
        model_config = model.config
    else:
        model = TrailModel.create(model_config, seed=config.seed)
    model.train()
    for parameter in model.head_modules().parameters():
        parameter.requires_grad_(True)
    optimizer = _optimizer(model, config)
    if existing:
        state = json.loads((existing[-1] / STATE_FILE).read_text())
        start_step, history = state["step"], state["history"]
        optimizer.load_state_dict(torch.load(existing[-1] / OPTIMIZER_FILE, weights_only=True))
    started = time.monotonic()
    step_seconds: list[float] = []
    step = start_step
    progress = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="train",
                    unit="step", dynamic_ncols=True, mininterval=5.0)
    stopped_early = False
    for step in progress:
        if config.max_minutes is not None and step_seconds:
            elapsed = time.monotonic() - started
            if elapsed + float(np.mean(step_seconds[-20:])) > config.max_minutes * 60:
                stopped_early = True
                break
        step_started = time.monotonic()
        rng = random.Random(config.seed * 1_000_003 + step)
        torch.manual_seed(config.seed * 1_000_003 + step)  # dropout too: a resumed run repeats the same steps
        batch = batches[step % len(batches)]
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * _learning_rate_factor(step, config)
        terms = loss_terms(model, [texts_for(example, rng, model.config) for example in batch], config.weights)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        optimizer.step()
        values = {name: float(value.detach()) for name, value in terms.items()}
        history.append({"step": step + 1, **values})
        step_seconds.append(time.monotonic() - step_started)
        progress.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
        if on_step is not None:
            on_step(step + 1, values)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_checkpoint(model, optimizer, step + 1, history, out, config.keep_checkpoints)
    else:
        step = config.steps
    progress.close()
    completed = len(history) and history[-1]["step"]
    model.eval()
    model.save(out)
    seconds = time.monotonic() - started
    summary = {
        **(metadata or {}),
        "model_config": json.loads(model_config.to_json()),
        "initialised_from": str(init_from) if init_from is not None and not existing else None,
        "train_config": {**asdict(config), "weights": asdict(config.weights)},
        "steps_completed": completed,
        "stopped_by_time_budget": stopped_early,
        "pool_examples": len(pool),
        "batches_per_epoch": len(batches),
        "examples_seen": completed * config.batch_size,
        "seconds_this_run": round(seconds, 1),
        "examples_per_second": round((len(history) - 0) * config.batch_size / seconds, 3) if seconds else None,
        "final_losses": _tail_mean(history),
        "first_losses": _head_mean(history),
    }
    (out / METADATA_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (out / "loss_history.json").write_text(json.dumps(history) + "\n")
    return model, summary


def _mean_of(rows: Sequence[dict]) -> dict[str, float]:
    keys = {k for row in rows for k in row if k != "step"}
    return {k: round(float(np.mean([row[k] for row in rows if k in row])), 4) for k in sorted(keys)}


def _tail_mean(history: Sequence[dict], n: int = 20) -> dict[str, float]:
    return _mean_of(history[-n:]) if history else {}


def _head_mean(history: Sequence[dict], n: int = 20) -> dict[str, float]:
    return _mean_of(history[:n]) if history else {}
