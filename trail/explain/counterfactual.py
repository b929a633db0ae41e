"""Counterfactual explanations: the composer's text with one claim falsified (contrastive negatives; every one
fails :func:`trail.explain.check`)."""

from __future__ import annotations

from trail.signals import TrendSignals

from .compose import _assemble, _change_clause, _clauses, _extras_by_salience, _forecast_clause, _rank_clause
from .forecast import FALL, RISE, Forecast, band_direction, forecast_direction

__all__ = ["COUNTERFACTUAL_KINDS", "counterfactual"]

COUNTERFACTUAL_KINDS = ("flip_direction", "wrong_magnitude", "wrong_rank", "flip_forecast")


def counterfactual(signals: TrendSignals, forecast: Forecast, kind: str, variant: int = 0) -> str:
    """The composer's text with one claim falsified (a kind of COUNTERFACTUAL_KINDS); it always fails :func:`check`.
    "wrong_rank" falls back to "flip_direction" when the rank is unknown."""
    if kind not in COUNTERFACTUAL_KINDS:
        raise ValueError(f"unknown counterfactual kind {kind!r}; expected one of {COUNTERFACTUAL_KINDS}")
    item, clauses, extras = signals.item, _clauses(signals, forecast, variant), _extras_by_salience(signals)
    before, after = item.previous_count, item.count
    kind = "flip_direction" if kind == "wrong_rank" and signals.rank is None else kind
    if kind == "flip_direction":  # the same numbers, the opposite direction (a rise for no change)
        percent = abs(after - before) / before * 100 if before > 0 and after != before else None
        clauses["change"] = _change_clause(FALL if after > before else RISE, before, after, percent, variant)
    elif kind == "wrong_magnitude" and before <= 0:
        clauses["change"] = _change_clause(RISE, before, after * 3 + 5, None, variant)
    elif kind == "wrong_magnitude":  # off by at least 30 points (rises) or 40 points (falls), counts to match
        actual = (after - before) / before * 100
        wrong = abs(actual) * 3 + 30 if actual >= 0 else -actual + 40 if actual >= -50 else -actual - 40
        sign = 1 if actual >= 0 else -1
        clauses["change"] = _change_clause(RISE if sign > 0 else FALL, before, before * (1 + sign * wrong / 100), wrong,
                                           variant)
    elif kind == "wrong_rank":
        clauses["rank"] = _rank_clause(signals.rank + 5, signals.previous_rank, variant)
        extras = ["rank"] + [extra for extra in extras if extra != "rank"]
    else:  # flip_forecast: the opposite direction (a rise for steady)
        actual = forecast_direction(after, forecast.predicted_count)
        flipped = FALL if actual == RISE else RISE
        clauses["forecast"] = _forecast_clause(flipped, band_direction(before, after), variant)
    return _assemble(clauses, extras, variant)
