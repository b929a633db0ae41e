"""Composing grounded explanations: 1–3 sentences stating only what the signals show, in :data:`PHRASINGS`
wordings, and the list of every fact an explanation may state (:func:`stated_facts`, prompt format 2's cue)."""

from __future__ import annotations

import math

from trail.signals import ItemWindow, TrendSignals

from .forecast import FALL, RISE, STEADY, Forecast, band_direction, forecast_direction
from .grammar import format_count

__all__ = ["MAX_EXTRA_CLAUSES", "PHRASINGS", "compose", "stated_facts"]

MAX_EXTRA_CLAUSES = 2  # rank / level / category clauses, most salient first, in the composer's second sentence
PHRASINGS = 6  # compose(variant=0..5): 3 wordings of each clause x 2 ways of joining the extras

_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "change_percent": ("{up} {p}% from {a} to {b} interactions", "interactions {rose} {p}%, from {a} to {b}",
                       "{b} interactions this window, {up} {p}% on the previous {a}"),
    "change_counts": ("{up} from {a} to {b} interactions", "interactions {rose} from {a} to {b}",
                      "{b} interactions this window, {up} from {a}"),
    "change_steady": ("roughly steady, from {a} to {b} interactions", "interactions were roughly flat, from {a} to {b}",
                      "{b} interactions this window, little changed from {a}"),
    "change_same": ("no change at {b} interactions", "interactions were unchanged at {b}",
                    "{b} interactions this window, the same as the previous window"),
    "rank_off": ("it dropped off the board this window", "it fell out of the ranking", "it is no longer on the board"),
    "rank_new": ("it is new on the board at #{r}", "it enters the board at #{r}",
                 "it is a newcomer at #{r} this window"),
    "rank_same": ("it ranks #{r} this window, the same place as last window", "its rank is unchanged at #{r}",
                  "it holds the same spot, #{r}"),
    "rank_moved": ("it ranks #{r} this window, {up} {places}", "it {climbed} {places} to #{r}",
                   "it sits at #{r}, {up} from #{pr}"),
    "level_rise": ("it is at {x}x its usual level", "it runs at {x} times its long-term average",
                   "it is above its usual level of {mean}"),
    "level_fall": ("it is at {x}x its usual level", "it sits below its long-term average of {mean}",
                   "it is under its usual level ({x}x)"),
    "level_steady": ("it is in line with its usual level of {mean}", "it is close to its long-term average ({x}x)",
                     "it is at {x}x its usual level"),
    "category": ('its "{c}" category is {w}', 'demand across the "{c}" category is {w}',
                 'the "{c}" category as a whole is {w}'),
    "forecast_rise": ("it is expected to {go} next window", "the forecast points to growth next window",
                      "it is likely to climb next window"),
    "forecast_fall": ("it is expected to {go} next window", "the forecast points to a decline next window",
                      "it is likely to drop next window"),
    "forecast_steady": ("it is expected to hold steady next window", "the forecast points to a similar level next "
                        "window", "it is likely to level off next window"),
}


def _phrase(key: str, variant: int, **values: object) -> str:
    return _TEMPLATES[key][variant % 3].format(**values)


def _change_clause(direction: str, before: float, after: float, percent: float | None, variant: int) -> str:
    """``direction``: rise / fall (with ``percent`` when there is one), steady, or "same" (exactly equal)."""
    key = f"change_{direction}" if direction in (STEADY, "same") else (
        "change_counts" if percent is None else "change_percent")
    up, rose = ("up", "rose") if direction == RISE else ("down", "fell")
    return _phrase(key, variant, up=up, rose=rose, p=round(percent or 0.0), a=format_count(before), b=format_count(after))


def _true_change_clause(item: ItemWindow, variant: int) -> str:
    before, after = item.previous_count, item.count
    direction = band_direction(before, after)
    if direction == STEADY:
        return _change_clause("same" if after == before else STEADY, before, after, None, variant)
    return _change_clause(direction, before, after, abs(after - before) / before * 100 if before > 0 else None, variant)


def _rank_clause(rank: int | None, previous_rank: int | None, variant: int) -> str:
    moved = previous_rank - rank if rank is not None and previous_rank is not None else 0
    key = ("rank_off" if rank is None else "rank_new" if previous_rank is None else
           "rank_moved" if moved else "rank_same")
    places = f"{abs(moved)} place{'' if abs(moved) == 1 else 's'}"
    up, climbed = ("up", "climbed") if moved > 0 else ("down", "slipped")
    return _phrase(key, variant, r=rank, pr=previous_rank, places=places, up=up, climbed=climbed)


def _forecast_clause(direction: str, change_direction: str, variant: int) -> str:
    keep = direction == change_direction
    go = {RISE: "keep rising" if keep else "rise", FALL: "keep falling" if keep else "fall"}.get(direction, "")
    return _phrase(f"forecast_{direction}", variant, go=go)


def _clauses(signals: TrendSignals, forecast: Forecast, variant: int) -> dict[str, str]:
    item = signals.item
    change_direction = band_direction(item.previous_count, item.count)
    clauses = {"change": _true_change_clause(item, variant),
               "forecast": _forecast_clause(forecast_direction(item.count, forecast.predicted_count), change_direction,
                                            variant)}
    if item.distinct_users > 0:
        preposition, adjective = ("from", "among", "by")[variant % 3], ("distinct", "unique")[variant // 3 % 2]
        noun = "user" if item.distinct_users == 1 else "users"
        clauses["breadth"] = f"{preposition} {item.distinct_users} {adjective} {noun}"
    if signals.rank is not None or signals.previous_rank is not None:
        clauses["rank"] = _rank_clause(signals.rank, signals.previous_rank, variant)
    if item.long_term_mean > 0:
        clauses["level"] = _phrase(f"level_{band_direction(item.long_term_mean, item.count)}", variant,
                                   x=f"{item.level_ratio:.1f}", mean=format_count(item.long_term_mean))
    if signals.category:
        direction = band_direction(signals.category_previous_count, signals.category_count)
        word = {RISE: ("rising", "growing", "trending up"), FALL: ("falling", "shrinking", "trending down"),
                STEADY: ("steady", "flat", "holding steady")}[direction][variant % 3]
        clauses["category"] = _phrase("category", variant, c=signals.category, w=word)
    return clauses


def _extras_by_salience(signals: TrendSignals) -> list[str]:
    """rank / level / category, most salient first: a notable rank, then a level far from 1x, then a moving category."""
    item, scores = signals.item, {}
    if signals.rank is not None:
        notable = signals.previous_rank is None or signals.rank <= 10 or abs(signals.rank_change or 0) >= 3
        scores["rank"] = 3.0 if notable else 1.0
    elif signals.previous_rank is not None:
        scores["rank"] = 1.5
    if item.long_term_mean > 0:
        scores["level"] = 2.0 * abs(math.log(item.level_ratio)) if item.level_ratio > 0 else 0.0
    if signals.category:
        moving = band_direction(signals.category_previous_count, signals.category_count) != STEADY
        scores["category"] = 1.2 if moving else 0.4
    return sorted(scores, key=lambda kind: -scores[kind])


def _assemble(clauses: dict[str, str], extras: list[str], variant: int) -> str:
    """Sentence 1: the change (and breadth); 2: up to MAX_EXTRA_CLAUSES extras; 3: the forecast."""
    first = clauses["change"] + (", " + clauses["breadth"] if "breadth" in clauses else "")
    chosen = [clauses[kind] for kind in extras if kind in clauses][:MAX_EXTRA_CLAUSES]
    middle = [(", and " if variant // 3 % 2 == 0 else "; ").join(chosen)] if chosen else []
    return " ".join(part[:1].upper() + part[1:] + "." for part in [first, *middle, clauses["forecast"]])


def compose(signals: TrendSignals, forecast: Forecast, variant: int = 0) -> str:
    """A 1–3 sentence explanation stating only what the signals show; ``variant`` picks the phrasing."""
    return _assemble(_clauses(signals, forecast, variant), _extras_by_salience(signals), variant)


def stated_facts(signals: TrendSignals, forecast: Forecast) -> tuple[str, ...]:
    """Every fact an explanation may claim about these signals, each a phrase the checker verifies, with every
    number already computed: the change with its percent and direction, distinct users, the rank and its move,
    the long-term level and the ratio to it, the category's direction and percent, and the forecast's direction.

    Prompt format 2 lists them in the explanation cue, so a faithful text only has to choose and rephrase facts,
    never compute one (the format-1 model wrote "rose 26%" for 36 -> 52)."""
    item, clauses = signals.item, _clauses(signals, forecast, 0)
    facts = [clauses["change"]]
    if item.distinct_users > 0:
        facts.append(f"from {item.distinct_users} distinct user{'' if item.distinct_users == 1 else 's'}")
    if signals.rank is not None and signals.previous_rank is not None and signals.rank != signals.previous_rank:
        facts.append(clauses["rank"] + f" from #{signals.previous_rank}")
    elif "rank" in clauses:
        facts.append(clauses["rank"])
    if item.long_term_mean > 0:
        where = {RISE: "above", FALL: "below", STEADY: "in line with"}[band_direction(item.long_term_mean, item.count)]
        facts.append(f"it is {where} its usual level of {format_count(item.long_term_mean)} ({item.level_ratio:.1f}x)")
    if signals.category:
        before, after = signals.category_previous_count, signals.category_count
        direction = band_direction(before, after)
        word = {RISE: "rising", FALL: "falling", STEADY: "steady"}[direction]
        percent = f" {round(abs(after - before) / before * 100)}%" if direction != STEADY and before > 0 else ""
        facts.append(f'its "{signals.category}" category is {word}{percent}')
    facts.append(clauses["forecast"])
    return tuple(facts)
