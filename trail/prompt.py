"""Signals + metadata → the model's text. Compact on purpose: prompt length is the main cost of an LLM scorer.

One line per aspect, numbers rounded to what matters, always in the same order, so the model sees a stable
layout; the explanation grammar in :mod:`trail.explain` uses the same facts, so everything a faithful
explanation can claim is visible in the prompt.

>>> from trail.signals import ItemWindow, TrendSignals
>>> window = ItemWindow("47566", 2154, 55.0, (35.0, 53.0, 47.0, 55.0), 47.0, 55.0, 8.0, 50.3, 30.3, 1.66, 1.76,
...                     22.95, 2.34, 40, 20, 58.3, 0)
>>> print(render_prompt(TrendSignals(window, "PARTY BUNTING", "BUNTING", 1, 3, 224.0, 199.0)))
item: PARTY BUNTING [BUNTING]
counts: 35 53 47 55 (now 55, prev 47, change +8)
trend: momentum 1.66, z 1.8, level x2.3, users 40, age 20
rank: #1 (prev #3); category 199->224
"""

from __future__ import annotations

from .serving_contract import PROMPT_FORMAT, TOKEN_LIMITS, PromptFormatMismatch, check_prompt_format
from .signals import TrendSignals

__all__ = ["EXPLANATION_CUE", "MAX_CUE_TOKENS", "PROMPT_FORMAT", "PromptFormatMismatch", "SYSTEM_PROMPT",
           "check_prompt_format", "forecast_cue", "render_explanation_prompt", "render_prompt"]

SYSTEM_PROMPT = (
    "You forecast an item's interactions in the next window and explain the forecast in 1-3 sentences, "
    "using only the facts given."
)
_MAX_TITLE_CHARS = 60
EXPLANATION_CUE = "\nwhy:"  # the explanation follows this, after a space
MAX_CUE_TOKENS = TOKEN_LIMITS.max_cue_tokens  # the forecast line and the cue are cut to this many tokens


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def render_prompt(signals: TrendSignals) -> str:
    item = signals.item
    title = " ".join(signals.title.split())[:_MAX_TITLE_CHARS] or signals.item_id
    category = f" [{signals.category}]" if signals.category else ""
    change = item.count - item.previous_count
    rank = "none" if signals.rank is None else f"#{signals.rank}"
    previous = "none" if signals.previous_rank is None else f"#{signals.previous_rank}"
    lines = [
        f"item: {title}{category}",
        f"counts: {' '.join(_n(c) for c in item.history)} (now {_n(item.count)}, prev {_n(item.previous_count)}, "
        f"change {'+' if change >= 0 else ''}{_n(change)})",
        f"trend: momentum {item.momentum:.2f}, z {item.zscore:.1f}, level x{item.level_ratio:.1f}, "
        f"users {item.distinct_users}, age {item.age_windows}",
        f"rank: {rank} (prev {previous})"
        + (f"; category {_n(signals.category_previous_count)}->{_n(signals.category_count)}" if signals.category else ""),
    ]
    return "\n".join(lines)


def render_explanation_prompt(signals: TrendSignals, predicted_count: float) -> str:
    """The prompt the explanation is generated from: the signals, then the forecast it must agree with.

    Conditioning on the predicted count (the score head's output when serving, the true next count in training)
    is what keeps the text's forecast claim in line with the score.

    >>> from trail.signals import ItemWindow, TrendSignals
    >>> window = ItemWindow("7", 3, 4.0, (2.0, 4.0), 2.0, 4.0, 2.0, 3.0, 2.5, 1.2, 1.5, 0.5, 1.6, 3, 2, 4.4, 0)
    >>> print(render_explanation_prompt(TrendSignals(window, "MUG", None, None, None, 0.0, 0.0), 5.26))
    item: MUG
    counts: 2 4 (now 4, prev 2, change +2)
    trend: momentum 1.20, z 1.5, level x1.6, users 3, age 2
    rank: none (prev none)
    forecast: 5.3
    why:
    """
    return render_prompt(signals) + forecast_cue(predicted_count)


def forecast_cue(predicted_count: float) -> str:
    """The lines between the signals and the explanation: the forecast, then the cue."""
    return f"\nforecast: {_n(round(float(predicted_count), 1))}{EXPLANATION_CUE}"
