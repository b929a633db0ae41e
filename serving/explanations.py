"""The explanation a user sees: the model's own text when the checker verifies every claim in it, else the composer's.

For the top items of a window the backend decodes in rounds (:data:`trail.decoding.CANDIDATE_DECODINGS`): first
greedy, then, for the items whose text was not fully verified, constrained greedy, then constrained samples. Each
round is one batched call. An item keeps the first candidate :func:`trail.explain.check` fully verifies and that
does not say one clause twice (:func:`trail.explain.repeated_clause`), and its
``source`` says how it was written: ``model`` (greedy), ``model-constrained`` (a constrained candidate),
``composer-fallback`` (no candidate verified) or ``composer`` (the backend writes no text, e.g. a baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from trail.decoding import CANDIDATE_DECODINGS, Decoding
from trail.errors import Cancelled
from trail.explain import PHRASINGS, CheckResult, Forecast, check, compose, repeated_clause
from trail.signals import TrendSignals
from trail.trending_record import EXPLANATION_SOURCES

from .backend import Backend, BackendUnavailable, never

__all__ = ["EXPLANATION_SOURCES", "Explanation", "explain_verified"]


@dataclass(frozen=True)
class Explanation:
    text: str
    source: str  # one of EXPLANATION_SOURCES
    check: CheckResult
    candidates_tried: int  # model texts decoded for this item (0: the backend wrote none)


def explain_verified(backend: Backend, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                     variants: Sequence[int], decodings: Sequence[Decoding] = CANDIDATE_DECODINGS,
                     cancelled: Callable[[], bool] = never) -> list[Explanation]:
    """One explanation per item; ``variants``: the composer phrasing each item falls back to. ``cancelled`` is asked
    before each round after the first: True raises :class:`trail.errors.Cancelled` (the worker is stopping, and a
    window's eight rounds should not hold its stop up)."""
    chosen: list[Explanation | None] = [None] * len(signals)
    tried = [0] * len(signals)
    writes_text = True
    for round_index, decoding in enumerate(decodings):
        waiting = [i for i, e in enumerate(chosen) if e is None]
        if not waiting or not writes_text:
            break
        if round_index and cancelled():
            raise Cancelled(f"explanations given up after {round_index} of {len(decodings)} rounds: stopping")
        try:
            texts = backend.explain([signals[i] for i in waiting], [forecasts[i] for i in waiting],
                                    [decoding] * len(waiting))
        except BackendUnavailable:
            break
        for i, text in zip(waiting, texts):
            if text is None:
                writes_text = False
                continue
            tried[i] += 1
            result = check(text, signals[i], forecasts[i])
            if text and result.all_verified and repeated_clause(text) is None:
                chosen[i] = Explanation(text, decoding.label, result, tried[i])
    out = []
    for i, explanation in enumerate(chosen):
        if explanation is None:
            text = compose(signals[i], forecasts[i], variant=variants[i] % PHRASINGS)
            explanation = Explanation(text, "composer-fallback" if tried[i] else "composer",
                                      check(text, signals[i], forecasts[i]), tried[i])
        out.append(explanation)
    return out
