"""The LLM methods of the evaluation, behind the same :class:`~training.baselines.Forecaster` vocabulary.

Both work the way the worker does: per window, the cheap pre-rank (:func:`trail.tracker.prerank_score`) picks the
top ``candidates`` items, the LLM scores only those, and every other item gets the fallback baseline's forecast
(EMA, the worker's fallback). The LLM's cost per window is bounded; the ranking metrics at K ≤ 50 are decided
among the candidates in practice, and the regression metrics cover every item (most of them by the fallback).

- :class:`TrailForecaster` — a trained TRAIL checkpoint: the score head's prediction. Already trained, so ``fit``
  does nothing (``trail train`` is the fitting step; its time is in the checkpoint's metadata).
- :class:`ZeroShotLLM` — the base instruct model asked, in its chat format, for the next window's count; the first
  number of its greedy answer is the prediction (unparseable answers fall back to this window's count, and
  are counted).

Each can also explain: :meth:`explain` returns one text per item for a given predicted count.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trail.prompt import SYSTEM_PROMPT, render_prompt
from trail.signals import TrendSignals
from trail.tracker import prerank_order

from .baselines import EMA, FloatArray, Forecaster, TrainingPairs
from .checkpoint_files import TRAIL_METHOD
from .state_cache import cached_rows

__all__ = ["TrailForecaster", "ZeroShotLLM", "candidate_positions"]

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def candidate_positions(signals: Sequence[TrendSignals], candidates: int) -> list[int]:
    """Positions of the top ``candidates`` items by pre-rank score (ties by item id, as the worker breaks them)."""
    order = sorted(range(len(signals)), key=lambda i: prerank_order(signals[i].item))
    return order[:candidates]


@dataclass
class _CandidateScorer:
    """Shared plumbing: fallback for every item, then the LLM's numbers over the candidates."""

    candidates: int = 200
    fallback: Forecaster = field(default_factory=EMA)
    items_scored: int = field(default=0, init=False)
    seconds_scoring: float = field(default=0.0, init=False)

    def fit(self, train: TrainingPairs) -> None:
        self.fallback.fit(train)

    def predict(self, signals: Sequence[TrendSignals]) -> FloatArray:
        predictions = np.asarray(self.fallback.predict(signals), dtype=np.float64).copy()
        chosen = candidate_positions(signals, self.candidates)
        started = time.perf_counter()
        predictions[chosen] = self._llm_counts([signals[i] for i in chosen])
        self.seconds_scoring += time.perf_counter() - started
        self.items_scored += len(chosen)
        return predictions

    def _llm_counts(self, signals: Sequence[TrendSignals]) -> FloatArray:
        raise NotImplementedError

    @property
    def llm_items_per_second(self) -> float:
        return self.items_scored / self.seconds_scoring if self.seconds_scoring else 0.0


# Prompt states computed in this process, by (adapter digest, prompt): checkpoints that share their LLM and differ
# only in the score head (a head refit and the head it replaced) are scored with one set of forward passes.
_PROMPT_STATES: dict[tuple[str, str], torch.Tensor] = {}


@dataclass
class TrailForecaster(_CandidateScorer):
    checkpoint: Path = Path("models/online-retail")
    label: str = TRAIL_METHOD
    batch_size: int = 16
    # where prompt states are kept between runs, one entry per window's candidates (a refit's validation windows
    # are the same entries); None: none kept
    states_cache: Path | None = None
    states_reused: int = field(default=0, init=False)  # candidates whose prompt state another checkpoint computed
    states_from_disk: int = field(default=0, init=False)  # candidates whose prompt state an earlier run stored
    states_computed: int = field(default=0, init=False)  # prompts forwarded through the LLM here

    def __post_init__(self) -> None:
        from .model import TrailModel, llm_digest

        self.model = TrailModel.load(self.checkpoint)
        self.llm_digest = llm_digest(Path(self.checkpoint))

    @property
    def name(self) -> str:
        return self.label

    @property
    def llm_items_per_second(self) -> float:
        return self.states_computed / self.seconds_scoring if self.seconds_scoring else 0.0

    def _llm_counts(self, signals: Sequence[TrendSignals]) -> FloatArray:
        prompts = [self.model.config.render_prompt(s) for s in signals]
        missing = [p for p in dict.fromkeys(prompts) if (self.llm_digest, p) not in _PROMPT_STATES]
        self.states_reused += len(prompts) - len(missing)
        if missing:
            for prompt, state in zip(*self._missing_states(prompts, missing)):
                _PROMPT_STATES[(self.llm_digest, prompt)] = state
        states = torch.stack([_PROMPT_STATES[(self.llm_digest, p)] for p in prompts])
        log_counts = self.model.score_states(states, signals).astype(np.float64)
        return np.clip(np.expm1(log_counts), 0.0, None)

    def _missing_states(self, prompts: list[str], missing: list[str]) -> tuple[list[str], torch.Tensor]:
        """States for the ``missing`` prompts (with a cache, for the whole window's): computed, or read from the
        entry of this window's candidates that a refit or an earlier evaluation stored."""
        def forward(batch: list[str]) -> torch.Tensor:
            self.states_computed += len(batch)
            return self.model.prompt_states(batch, self.batch_size)

        if self.states_cache is None:
            return missing, forward(missing)
        computed_before = self.states_computed
        window_prompts = list(dict.fromkeys(prompts))  # the whole set: the key the entry is stored under
        states = cached_rows(self.states_cache, self.llm_digest, window_prompts, forward)
        if self.states_computed == computed_before:
            self.states_from_disk += len(missing)
        return window_prompts, states

    def explain(self, signals: Sequence[TrendSignals], predicted_counts: Sequence[float]) -> list[str]:
        return self.model.explain(signals, predicted_counts)


@dataclass
class ZeroShotLLM(_CandidateScorer):
    """The base instruct LLM, no fine-tuning, prompted in its chat format."""

    backbone: str = "smollm2"
    label: str = "zero_shot_llm"
    max_answer_tokens: int = 8
    unparseable: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        from .backbone import load_backbone

        loaded = load_backbone(self.backbone)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer

    @property
    def name(self) -> str:
        return self.label

    def _chat(self, user: str) -> torch.Tensor:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")

    @torch.no_grad()
    def _generate(self, user: str, max_new_tokens: int) -> str:
        input_ids = self._chat(user)
        output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                     max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=self.tokenizer.eos_token_id,
                                     pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip()

    def _llm_counts(self, signals: Sequence[TrendSignals]) -> FloatArray:
        counts = []
        for item in signals:
            answer = self._generate(render_prompt(item) + "\nHow many interactions will this item have in the next "
                                    "window? Answer with one number only.", self.max_answer_tokens)
            match = _NUMBER.search(answer)
            if match is None:
                self.unparseable += 1
                counts.append(item.item.count)
            else:
                counts.append(max(0.0, float(match.group().replace(",", "."))))
        return np.asarray(counts, dtype=np.float64)

    def explain(self, signals: Sequence[TrendSignals], predicted_counts: Sequence[float]) -> list[str]:
        return [self._generate(render_prompt(item) + f"\nThe forecast for the next window is {predicted:.0f} "
                               "interactions. Explain this forecast in 1-3 sentences, using only the facts above.",
                               72)
                for item, predicted in zip(signals, predicted_counts)]
