"""Signals + metadata → the model's text. Compact on purpose: prompt length is the main cost of an LLM scorer.

One line per aspect, numbers rounded to what matters, always in the same order, so the model sees a stable
layout. Every function takes the prompt format (:data:`PROMPT_FORMATS`) the model was trained on, and renders
that layout, so a model of an older format keeps serving while a newer one trains:

- format 1: the signals; the explanation cue is the forecast line.
- format 2: a calendar line (window start, ISO week; the weekday for windows shorter than a week) in the prompt,
  and in the cue every fact an explanation may claim, in the composer's own words and numbers
  (:func:`trail.explain.stated_facts`), so the model rephrases facts instead of computing them. The facts go in
  the cue, not the prompt: only the top K items are explained, while every candidate is scored on the prompt.

>>> from trail.signals import ItemWindow, TrendSignals
>>> window = ItemWindow("47566", 2154, 55.0, (35.0, 53.0, 47.0, 55.0), 47.0, 55.0, 8.0, 50.3, 30.3, 1.66, 1.76,
...                     22.95, 2.34, 40, 20, 58.3, 0)
>>> print(render_prompt(TrendSignals(window, "PARTY BUNTING", "BUNTING", 1, 3, 224.0, 199.0)))
item: PARTY BUNTING [BUNTING]
counts: 35 53 47 55 (now 55, prev 47, change +8)
trend: momentum 1.66, z 1.8, level x2.3, users 40, age 20
rank: #1 (prev #3); category 199->224

With the window's start known, format 2 adds the calendar:

>>> from trail.windows import WindowSpec
>>> spec = WindowSpec()
>>> signals = TrendSignals(window, "PARTY BUNTING", "BUNTING", 1, 3, 224.0, 199.0, spec.start_of(2154), spec.size_ms)
>>> print(render_prompt(signals, 2).splitlines()[1])
date: 2011-04-18, week 16
"""

from __future__ import annotations

from datetime import datetime, timezone

from .decoding import FACTS_LABEL
from .explain import Forecast, stated_facts
from .serving_contract import PROMPT_FORMAT, PROMPT_FORMATS, PromptFormatMismatch, check_prompt_format
from .signals import TrendSignals

__all__ = ["EXPLANATION_CUE", "PROMPT_FORMAT", "PROMPT_FORMATS", "PromptFormatMismatch",
           "SYSTEM_PROMPT", "calendar_line", "check_prompt_format", "explanation_cue", "forecast_cue",
           "render_explanation_prompt", "render_prompt"]

_WEEK_MS = 7 * 86_400_000

SYSTEM_PROMPT = (
    "You forecast an item's interactions in the next window and explain the forecast in 1-3 sentences, "
    "using only the facts given."
)
_MAX_TITLE_CHARS = 60
EXPLANATION_CUE = "\nwhy:"  # the explanation follows this, after a space


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def calendar_line(signals: TrendSignals) -> str | None:
    """``date: 2011-04-18, week 16`` (``date: 2011-03-02 Wed, week 9`` for windows shorter than a week); None when
    the window's start is unknown. Seasonality ("CHRISTMAS" in a title in week 48) is for the model to read."""
    if signals.window_start_ms is None:
        return None
    start = datetime.fromtimestamp(signals.window_start_ms / 1000, tz=timezone.utc)
    weekday = f" {start:%a}" if (signals.window_size_ms or _WEEK_MS) < _WEEK_MS else ""
    return f"date: {start:%Y-%m-%d}{weekday}, week {start.isocalendar().week}"


def render_prompt(signals: TrendSignals, prompt_format: int = PROMPT_FORMAT) -> str:
    item = signals.item
    title = " ".join(signals.title.split())[:_MAX_TITLE_CHARS] or signals.item_id
    category = f" [{signals.category}]" if signals.category else ""
    change = item.count - item.previous_count
    rank = "none" if signals.rank is None else f"#{signals.rank}"
    previous = "none" if signals.previous_rank is None else f"#{signals.previous_rank}"
    calendar = calendar_line(signals) if prompt_format >= 2 else None
    lines = [
        f"item: {title}{category}",
        *([calendar] if calendar else []),
        f"counts: {' '.join(_n(c) for c in item.history)} (now {_n(item.count)}, prev {_n(item.previous_count)}, "
        f"change {'+' if change >= 0 else ''}{_n(change)})",
        f"trend: momentum {item.momentum:.2f}, z {item.zscore:.1f}, level x{item.level_ratio:.1f}, "
        f"users {item.distinct_users}, age {item.age_windows}",
        f"rank: {rank} (prev {previous})"
        + (f"; category {_n(signals.category_previous_count)}->{_n(signals.category_count)}" if signals.category else ""),
    ]
    return "\n".join(lines)


def render_explanation_prompt(signals: TrendSignals, predicted_count: float, prompt_format: int = 1) -> str:
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
    return render_prompt(signals, prompt_format) + explanation_cue(signals, predicted_count, prompt_format)


def forecast_cue(predicted_count: float) -> str:
    """Format 1's lines between the signals and the explanation: the forecast, then the cue."""
    return f"\nforecast: {_n(round(float(predicted_count), 1))}{EXPLANATION_CUE}"


def explanation_cue(signals: TrendSignals, predicted_count: float, prompt_format: int = PROMPT_FORMAT) -> str:
    """The lines between the prompt and the explanation, in ``prompt_format``: the forecast, (format 2) the facts
    an explanation may claim, then the cue.

    >>> from trail.signals import ItemWindow, TrendSignals
    >>> window = ItemWindow("7", 3, 4.0, (2.0, 4.0), 2.0, 4.0, 2.0, 3.0, 2.5, 1.2, 1.5, 2.0, 1.67, 3, 2, 4.4, 0)
    >>> print(explanation_cue(TrendSignals(window, "MUG", None, None, None, 0.0, 0.0), 5.26, 2))
    <BLANKLINE>
    forecast: 5.3
    facts: up 100% from 2 to 4 interactions; from 3 distinct users; it is above its usual level of 2 (1.7x); it is expected to keep rising next window
    why:
    """
    if prompt_format == 1:
        return forecast_cue(predicted_count)
    facts = "; ".join(stated_facts(signals, Forecast(float(predicted_count))))
    return f"\nforecast: {_n(round(float(predicted_count), 1))}{FACTS_LABEL}{facts}{EXPLANATION_CUE}"
