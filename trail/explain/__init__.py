"""Grounded explanations: compose them from an item's :class:`TrendSignals`, and check any text against them.

:func:`compose` writes 1–3 sentences stating only facts true of the signals; :func:`check` reads any text (the
composer's or an LLM's) as claims and verifies each; :func:`counterfactual` falsifies one claim of the composer's
text (contrastive negatives: every one fails :func:`check`); :func:`stated_facts` lists every fact an explanation
may claim, each already computed (prompt format 2 gives them to the model).

One concept per module: ``forecast`` (the forecast and the steady band), ``grammar`` (claim phrases and their
judges, with the tolerances), ``check``, ``compose`` (it owns the phrasings' count), ``counterfactual``, ``style``
(a text that repeats itself).
"""

from .check import UNREAD_NUMBER, CheckResult, Claim, available_kinds, check, split_sentences
from .compose import MAX_EXTRA_CLAUSES, PHRASINGS, compose, stated_facts
from .counterfactual import COUNTERFACTUAL_KINDS, counterfactual
from .forecast import DIRECTIONS, FALL, RISE, STEADY, Forecast, forecast_direction
from .grammar import CLAIM_KINDS
from .style import repeated_clause

__all__ = ["CLAIM_KINDS", "COUNTERFACTUAL_KINDS", "DIRECTIONS", "FALL", "MAX_EXTRA_CLAUSES", "PHRASINGS", "RISE",
           "STEADY", "UNREAD_NUMBER", "CheckResult", "Claim", "Forecast", "available_kinds", "check", "compose",
           "counterfactual", "forecast_direction", "repeated_clause", "split_sentences", "stated_facts"]
