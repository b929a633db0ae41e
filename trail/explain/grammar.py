"""The claim grammar: which phrases are claims, and the judge that verifies each against the signals.

Grammar. :func:`split_sentences` ends a sentence at ``.!?`` before white space or at a line break, never inside a
number ("2.1x"), after an abbreviation followed by a lower-case letter or digit ("No. 3"), or inside the category
name or title. Each sentence has its category name masked (and a title or item id containing a digit), then these
patterns run in order, case-insensitively, each match blanked so later patterns cannot read it again:
``rank_move`` ("up 4 places", "3 spots lower", "up from #7", "down 3 from #4", "same place", "new on the board", "off the board");
``rank`` ("#3", "No. 3", "ranked 3rd", "the top spot", "top 10" = at most 10); ``forecast`` (a cue such as
expected/forecast/likely/should/will/next window, then a direction: "expected to keep rising"; or "a decline is
expected"); ``category`` ("category" or its name, then a direction, optionally "up 20%"; or a direction, then
"in the ... category"); ``level`` ("2.1x its usual level", "twice its long-term average", "40% above its usual
level", "below its usual level of 6.2"); ``breadth`` ("from 12 distinct users"); ``change`` ("up 40%", "a 40%
drop", "+40%", "doubled", "from 10 to 14", "10 -> 14", "up from 10", "fell to 3", "the previous 10", "14
interactions (last window)", "unchanged at 14", "rose", "is down"). Qualifiers bound numbers: "more than/over/at
least" (actual >= stated - tolerance), "less than/under/at most" (actual <= stated + tolerance), "about/nearly/~"
(tolerance x HEDGE_FACTOR). A negation ("not", "n't", "unlikely", "no longer") by a direction means any other one.

Tolerances. A direction of the recent change, the category or the long-term level holds when it matches the
steady band (:func:`trail.explain.forecast.band_direction`) or the sign of the difference ("up" and "steady" are
both true of 100 -> 105); "no change"/"unchanged"/"the same (number) as" need equality; the forecast must match the band
exactly. Percentages: within PERCENT_TOLERANCE_POINTS points or PERCENT_TOLERANCE_RELATIVE of the truth, with its
sign; counts and users: within COUNT_TOLERANCE; the long-term mean: COUNT_TOLERANCE or MEAN_TOLERANCE_RELATIVE;
ratios: RATIO_TOLERANCE_ABSOLUTE or RATIO_TOLERANCE_RELATIVE of ``level_ratio`` or ``count / long_term_mean``;
ranks and rank moves: exact.

Each rule is ``(kind, judge, patterns)``; :data:`RULES` holds them compiled, in matching order, and the first rule
to match a phrase reads it (the checker then blanks it). Real phrasings, the composer's and the model's:

>>> first = lambda text: next(kind for kind, _, pattern in RULES if pattern.search(text))
>>> [first(text) for text in ("it climbed 2 places to #1", "up 17% from 47 to 55 interactions",
...  "it is above its usual level of 23.9 (2.3x)", "from 40 distinct users", 'its "TIN" category is falling 14%',
...  "it is expected to hold steady next window")]
['rank_move', 'change', 'level', 'breadth', 'category', 'forecast']
"""

from __future__ import annotations

import math
import re
from typing import Callable

from trail.decoding import COUNT_UNIT_WORDS, USER_QUALIFIERS, USER_WORDS, word_alternation
from trail.signals import ItemWindow, TrendSignals

from .forecast import DIRECTIONS, FALL, RISE, STEADY, Forecast, band_direction, forecast_direction, sign_direction

__all__ = ["CLAIM_KINDS", "COUNT_TOLERANCE", "HEDGE_FACTOR", "MEAN_TOLERANCE_RELATIVE", "PERCENT_TOLERANCE_POINTS",
           "PERCENT_TOLERANCE_RELATIVE", "RATIO_TOLERANCE_ABSOLUTE", "RATIO_TOLERANCE_RELATIVE", "RULES", "format_count"]

CLAIM_KINDS = ("change", "level", "rank", "rank_move", "category", "breadth", "forecast")
PERCENT_TOLERANCE_POINTS = 2.0
PERCENT_TOLERANCE_RELATIVE = 0.05
COUNT_TOLERANCE = 0.5
MEAN_TOLERANCE_RELATIVE = 0.05
RATIO_TOLERANCE_ABSOLUTE = 0.1
RATIO_TOLERANCE_RELATIVE = 0.05
HEDGE_FACTOR = 3.0


# -- vocabulary ----------------------------------------------------------------------------------------------------
_RISE_VERBS = (r"ris[ei]\w*|rose|gr[eo]w\w*|climb\w*|gain\w*|increas\w*|jump\w*|surg(?:e|es|ed|ing)|spik(?:e|es|ed|ing)"
               r"|soar\w*|advanc\w*|rebound\w*|recover\w*|accelerat\w*")
_FALL_VERBS = (r"fall\w*|fell|drop\w*|declin\w*|decreas\w*|slip\w*|slid(?:e|es|ing)?|dip(?:s|ped|ping)?|shr[iau]nk\w*"
               r"|s[aiu]nk\w*|slump\w*|plung\w*|tumbl\w*|los(?:e|es|t|ing|s)|retreat\w*")
_SAME_AS = r"the\s+same(?:\s+(?:number|count|amount|total|level)(?:\s+of\s+interactions)?)?\s+as"
_STEADY_WORDS = (rf"steady|stable|flat|unchanged|no\s+change|(?:little|barely)\s+changed|{_SAME_AS}"
                 r"|h[oe]ld\w*\s+steady")
_RISE = rf"up|upward|higher|more|pick(?:s|ed|ing)?\s+up|{_RISE_VERBS}"
_FALL = rf"down|downward|lower|less|fewer|cool\w*|eas(?:e|es|ed|ing)|fad(?:e|es|ed|ing)|{_FALL_VERBS}"
_STEADY = rf"{_STEADY_WORDS}|the\s+same|similar|flatten\w*|level\w*\s+(?:off|out)|even\w*\s+out|plateau\w*|stabili[sz]\w*"
_CHANGE_WORD = (rf"{_RISE_VERBS}|{_FALL_VERBS}|{_STEADY_WORDS}|(?:is|was|are|were|went|go\w*|trend\w*|mov\w*|edg\w*"
                r"|tick\w*)\s+(?:up|down|higher|lower)")
_AT_LEAST, _AT_MOST = r"more\s+than|over|above|at\s+least|upwards\s+of", r"(?:less|fewer)\s+than|under|below|at\s+most"
_HEDGE = r"nearly|almost|about|around|roughly|approximately|approx\.?|some|close\s+to|~"
_WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "a single": 1}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_TOKENS = {
    "NUM": r"(?<![\w.])(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?)",
    "WNUM": "|".join(_WORD_NUMBERS).replace(" ", r"\s+"), "ORD": "|".join(_ORDINALS),
    "QUAL": rf"(?P<q>(?:{_AT_LEAST}|{_AT_MOST}|{_HEDGE})\s*)?",
    "DIR": f"{_STEADY}|{_RISE}|{_FALL}", "RISE": _RISE, "FALL": _FALL,
    "CDIR": rf"up|down|{_CHANGE_WORD}", "CWORD": _CHANGE_WORD,
    "UNIT": word_alternation(COUNT_UNIT_WORDS), "USERS": word_alternation(USER_WORDS),
    "USER_QUALIFIER": word_alternation(USER_QUALIFIERS),
    "LEVEL": r"(?:its\s+|the\s+|their\s+)?(?:own\s+)?(?:usual|typical|normal|average|long[- ]term|baseline|historical"
             r"|norm)(?:\s+(?:level|average|mean|rate|volume|baseline))?",
    "BOARD": r"board|chart|rankings?|list|leaderboard",
    "CAT": "\ue000+|\\bcategor(?:y|ies)\\b",
}
_CATEGORY_MARK, _OTHER_MARK = "\ue000", "\ue001"  # private-use characters: never words, digits or punctuation
_NEGATION = re.compile(r"\b(?:not|never|no\s+longer|unlikely|cannot)\b|n['’]t\b", re.IGNORECASE)
_HEDGED_BEFORE = re.compile(r"\b(?:roughly|largely|nearly|almost|broadly|virtually|practically|essentially|mostly"
                            r"|about|more\s+or\s+less)\s*$", re.IGNORECASE)
_EXACT_STEADY = re.compile(rf"no\s+change|unchanged|the\s+same|{_SAME_AS}", re.IGNORECASE)
_RISE_RE, _FALL_RE, _STEADY_RE = (re.compile(p, re.IGNORECASE) for p in (_RISE, _FALL, _STEADY))


def _rx(pattern: str) -> re.Pattern[str]:
    for name, value in _TOKENS.items():
        pattern = pattern.replace(f"<{name}>", f"(?:{value})")
    return re.compile(pattern, re.IGNORECASE)


def _words(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def _number(text: str) -> float:
    try:
        return float({**_WORD_NUMBERS, **_ORDINALS}.get(_words(text), _words(text).replace(",", "")))
    except ValueError:
        return math.nan




def format_count(value: float) -> str:
    """A count as the composer writes it: whole numbers without decimals, else one decimal."""
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def _direction_word(word: str | None) -> str | None:
    words = _words(word)
    if not words or _STEADY_RE.fullmatch(words):
        return STEADY if words else None
    last = words.split()[-1]
    return FALL if _FALL_RE.fullmatch(last) else RISE if _RISE_RE.fullmatch(last) else None


def _agrees(stated: float, actual: float, qualifier: str | None, absolute: float, relative: float) -> bool:
    tolerance, words = max(absolute, relative * abs(actual)), _words(qualifier)
    if words and re.fullmatch(_AT_LEAST, words):
        return actual >= stated - tolerance
    if words and re.fullmatch(_AT_MOST, words):
        return actual <= stated + tolerance
    return abs(actual - stated) <= tolerance * (HEDGE_FACTOR if words else 1.0)


def _negated(match: re.Match[str]) -> bool:
    before = re.split(r"[,;:(]", match.string[max(0, match.start() - 30):match.start()])[-1]
    return bool(_NEGATION.search(before + match.group(0)))


def _direction_holds(match: re.Match[str], group: str, claimed: str | None, before: float, after: float) -> bool:
    negated = _negated(match)
    if _EXACT_STEADY.fullmatch(_words(match[group])) and not negated and not _HEDGED_BEFORE.search(
            match.string[:match.start(group)]):
        return after == before
    allowed = DIRECTIONS - {claimed} if negated else {claimed}
    return band_direction(before, after) in allowed or sign_direction(before, after) in allowed


# -- judges: (verified, the truth) for one match, or None when the match is no claim after all ---------------------
Verdict = tuple[bool, str]


def _rank_truth(s: TrendSignals) -> str:
    now = f"#{s.rank}" if s.rank is not None else "not on the board"
    return f"rank {now} (previous: {f'#{s.previous_rank}' if s.previous_rank is not None else 'not on the board'})"


def _judge_rank(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    g = m.groupdict()
    if g.get("top"):  # "top 10": at most 10
        return s.rank is not None and s.rank <= _number(g["top"]), _rank_truth(s)
    stated = _number(g.get("n") or g.get("o") or "1")  # no number: "the top spot"
    return s.rank is not None and s.rank == stated, _rank_truth(s)


def _judge_rank_move(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    g, moved = m.groupdict(), s.rank_change
    direction = _direction_word(g.get("d"))
    if g.get("prev"):  # "up from #7": the previous rank, the direction when given, and the places when given
        ok = s.previous_rank is not None and s.previous_rank == _number(g["prev"])
        ok = ok and (direction is None or moved is not None and sign_direction(0, moved) == direction)
        ok = ok and (not g.get("n") or moved == _number(g["n"]) * (-1 if direction == FALL else 1))
    elif g.get("to"):  # "climbed to #3": the rank, and the direction (entering the board counts as a climb)
        ok = s.rank is not None and s.rank == _number(g["to"])
        ok = ok and (direction == RISE if moved is None else sign_direction(0, moved) == direction)
    elif g.get("n"):
        ok = moved is not None and moved == _number(g["n"]) * (-1 if direction == FALL else 1)
    elif g.get("same"):
        ok = moved == 0
    elif g.get("new"):
        ok = s.rank is not None and s.previous_rank is None
    else:  # off the board
        ok = s.rank is None and s.previous_rank is not None
    return ok, _rank_truth(s)


def _judge_forecast(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    claimed, actual = _direction_word(m["d"]), forecast_direction(s.item.count, f.predicted_count)
    allowed = DIRECTIONS - {claimed} if _negated(m) else {claimed}
    return actual in allowed, f"forecast {actual} ({format_count(s.item.count)} now, {f.predicted_count:.1f} predicted)"


_NAMED_CATEGORY = re.compile(r"\b(?:the|its|in|of)\s+[\"“']?([^\s\"”',.;:]+(?:\s+[^\s\"”',.;:]+){0,2}?)[\"”']?\s+"
                             r"categor|\bcategor(?:y|ies)\s+[\"“]([^\"”]+)[\"”]", re.IGNORECASE)
_GENERIC_WORDS = frozenset({"the", "a", "an", "its", "their", "own", "wider", "broader", "whole", "overall", "same",
                            "parent", "entire", "item's", "larger", "general", "product", "main", "this", "that"})


def _other_category_named(masked_sentence: str) -> str | None:
    """A category name in the sentence that is not the item's (the item's own name is masked), if any."""
    found = None if _CATEGORY_MARK in masked_sentence else _NAMED_CATEGORY.search(masked_sentence)
    words = (found.group(1) or found.group(2)).split() if found else []
    return " ".join(word for word in words if word.lower() not in _GENERIC_WORDS) or None


def _judge_category(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict | None:
    g, before, after = m.groupdict(), s.category_previous_count, s.category_count
    if re.search(r"\b(?:it|item|this|which|product)\b", g.get("gap") or "", re.IGNORECASE):
        return None  # the direction is about the item, not the category
    if not s.category:
        return False, "no category for this item"
    truth = f'category "{s.category}" {band_direction(before, after)} ({format_count(before)} -> {format_count(after)})'
    other = _other_category_named(m.string)
    ok = other is None and _direction_holds(m, "d", _direction_word(g["d"]), before, after)
    if g.get("p"):
        ok = ok and before > 0 and _agrees(_number(g["p"]), abs(after - before) / before * 100, g.get("q"),
                                           PERCENT_TOLERANCE_POINTS, PERCENT_TOLERANCE_RELATIVE)
    return ok, truth if other is None else f"{truth}, not {other!r}"


_RATIO_WORDS = {"twice": 2.0, "double": 2.0, "triple": 3.0, "half": 0.5}


def _level_direction(word: str) -> str:
    """above/over/higher than... -> rise; below/under/lower than... -> fall; in line with/near/at... -> steady."""
    if re.search(r"above|over|higher|more|exceed|beyond", word, re.IGNORECASE):
        return RISE
    return FALL if re.search(r"below|under|lower|less|beneath|short", word, re.IGNORECASE) else STEADY


def _judge_level(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    g, item, checks = m.groupdict(), s.item, []
    ratios = [item.level_ratio] + ([item.count / item.long_term_mean] if item.long_term_mean > 0 else [])
    claimed = _level_direction(g["d"]) if g.get("d") else None
    if g.get("r") or g.get("w"):
        stated = _number(g["r"]) if g.get("r") else _RATIO_WORDS[g["w"].lower()]
        checks.append(any(_agrees(stated, r, g.get("q"), RATIO_TOLERANCE_ABSOLUTE, RATIO_TOLERANCE_RELATIVE)
                          for r in ratios))
    if g.get("p"):
        checks.append(any((r > 1) == (claimed == RISE) and _agrees(_number(g["p"]), abs(r - 1) * 100, g.get("q"),
                          PERCENT_TOLERANCE_POINTS, PERCENT_TOLERANCE_RELATIVE) for r in ratios))
    elif claimed is not None:
        checks.append(_direction_holds(m, "d", claimed, item.long_term_mean, item.count))
    if g.get("v"):
        checks.append(_agrees(_number(g["v"]), item.long_term_mean, None, COUNT_TOLERANCE, MEAN_TOLERANCE_RELATIVE))
    mean = f"{item.long_term_mean:.2f}"
    return all(checks), f"{item.level_ratio:.2f}x its usual level ({format_count(item.count)} vs a long-term mean of {mean})"


def _judge_breadth(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    users = s.item.distinct_users
    return _agrees(_number(m["n"]), users, m["q"], COUNT_TOLERANCE, 0.0), f"{users} distinct users"


def _change_truth(item: ItemWindow) -> str:
    before, after = item.previous_count, item.count
    return f"{format_count(before)} -> {format_count(after)} interactions ({band_direction(before, after)})"


def _judge_percent(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict | None:
    g, item = m.groupdict(), s.item
    if g.get("x"):
        direction, stated = {"doubled": (RISE, 100.0), "tripled": (RISE, 200.0), "trebled": (RISE, 200.0),
                             "quadrupled": (RISE, 300.0), "halved": (FALL, 50.0)}[g["x"].lower()]
    else:
        signed = {"+": RISE, "-": FALL, "−": FALL}.get(g["s"] or "")
        direction = _direction_word(g.get("d") or g.get("noun")) or signed
        stated = _number(g["p"])
        if direction is None and not g.get("noun"):
            return None  # "40% of users": no change claimed
    before, after = item.previous_count, item.count
    if before <= 0:
        return False, f"no percentage change from a previous count of 0 ({_change_truth(item)})"
    actual = (after - before) / before * 100.0
    ok = _agrees(stated, abs(actual), g.get("q"), PERCENT_TOLERANCE_POINTS, PERCENT_TOLERANCE_RELATIVE)
    if g.get("a"):
        ok = ok and _agrees(_number(g["a"]), before, None, COUNT_TOLERANCE, 0.0)
    return ok and direction in (None, STEADY, sign_direction(before, after)), f"{actual:+.1f}% ({_change_truth(item)})"


def _judge_counts(m: re.Match[str], s: TrendSignals, f: Forecast) -> Verdict:
    g, item = m.groupdict(), s.item
    checks = [_agrees(_number(g[key]), actual, None, COUNT_TOLERANCE, 0.0)
              for key, actual in (("a", item.previous_count), ("b", item.count)) if g.get(key)]
    if g.get("delta"):
        checks.append(_agrees(_number(g["delta"]), abs(item.count - item.previous_count), None, COUNT_TOLERANCE, 0.0))
    if g.get("d"):
        checks.append(_direction_holds(m, "d", _direction_word(g["d"]), item.previous_count, item.count))
    return all(checks), _change_truth(item)


Judge = Callable[[re.Match[str], TrendSignals, Forecast], "Verdict | None"]
_GRAMMAR: tuple[tuple[str, Judge, tuple[str, ...]], ...] = (  # in matching order; see the module docstring
    ("rank_move", _judge_rank_move, (
        # "down 3 from #4", the facts' "down 3 places from #4" without its unit: the move and the previous rank
        r"\b(?P<d><RISE>|<FALL>)\s+(?:by\s+)?(?P<n>[0-9]+|<WNUM>)\s+(?:(?:places?|spots?|positions?)\s+)?from\s+"
        r"(?:#\s*|no\.\s*|number\s+)(?P<prev>[0-9]+)\b",
        r"(?:\b(?P<d><RISE>|<FALL>)\s+)?(?<!%\s)(?<!%)\b(?:from|previously(?:\s+at)?"
        r"|last\s+window\s+at)\s+(?:#\s*|no\.\s*|number\s+)(?P<prev>[0-9]+)\b",
        r"\b(?P<d><RISE>|<FALL>)\s+to\s+(?:#\s*|no\.\s*|number\s+)(?P<to>[0-9]+)\b",
        r"\b(?P<d><RISE>|<FALL>|mov(?:e|es|ed|ing)\s+(?:up|down))\s+(?:by\s+)?(?P<n>[0-9]+|<WNUM>)\s+(?:places?"
        r"|spots?|positions?|ranks?|notch(?:es)?|rungs?)\b",
        r"\b(?P<n>[0-9]+|<WNUM>)\s+(?:places?|spots?|positions?|ranks?)\s+(?P<d>higher|lower|up|down)\b",
        r"(?P<same>\b(?:same|unchanged|steady|held|holds?|kept|keeps|keeping|holding)\s+(?:its\s+|the\s+|at\s+)?"
        r"(?:rank|place|spot|position)\b|\b(?:rank|place|spot|position)\s+(?:is\s+|was\s+)?unchanged\b"
        r"|\bno\s+change\s+in\s+(?:rank|position|place)\b)",
        r"(?P<new>\bnew\s+(?:on|to)\s+the\s+(?:<BOARD>)\b|\bnew\s+entr(?:y|ant)\b|\bnewcomer\b|\bdebut(?:s|ed|ing)?\b"
        r"|\bent(?:er|ers|ered|ering)\s+the\s+(?:<BOARD>)\b)",
        r"(?P<off>\b(?:(?:dropped|drops|fell|fallen|falls|slipped)\s+(?:off|out\s+of)|no\s+longer\s+on|off)\s+the\s+"
        r"(?:<BOARD>)\b)")),
    ("rank", _judge_rank, (
        r"\b(?:the\s+)?top\s+(?:spot|item|position|place)\b|\bnumber\s+one\b|\bfirst\s+place\b",
        r"(?:#\s*|\bno\.\s*|\bnumber\s+|\brank(?:ed|s|ing)?\s+(?:at\s+|as\s+)?(?:#\s*|no\.\s*)?)(?:(?P<n>[0-9]+)"
        r"(?:st|nd|rd|th)?|(?P<o><ORD>))\b",
        r"\b(?:(?P<n>[0-9]+)(?:st|nd|rd|th)|(?P<o><ORD>))\s+(?:place|spot|position|most)\b",
        r"\btop[\s-]*(?P<top>[0-9]+)\b")),
    ("forecast", _judge_forecast, (
        r"\b(?:expect(?:s|ed|ing|ations?)?|forecast(?:s|ed)?|predict(?:s|ed|ions?)?|project(?:s|ed|ions?)?|likely"
        r"|unlikely|poised|set\s+to|should|will|won['’]t|outlook|next\s+(?:window|week|day|period|month))\b"
        r"[^.;!?0-9%]{0,40}?\b(?P<d><DIR>)\b",
        r"\b(?P<d><DIR>)\s+(?:is|are|looks?|seems?|appears?)\s+(?:also\s+|still\s+)?(?:expected|forecast|predicted"
        r"|projected|likely|set|poised)\b")),
    ("category", _judge_category, (
        r"(?:<CAT>)[\"”'’]?(?P<gap>[^.;!?,0-9%]{0,40}?)\b(?P<d><DIR>)\b(?:\s+(?:by\s+)?<QUAL>(?P<p><NUM>)\s*%)?",
        r"\b(?P<d><DIR>)\b(?P<gap>[^.;!?,0-9%]{0,30}?)\b(?:in|across|for|within|throughout)\s+(?:the\s+|its\s+)?"
        r"(?:[\w'-]+\s+){0,2}?[\"“']?(?:<CAT>)")),
    ("level", _judge_level, (
        r"<QUAL>(?:(?P<r><NUM>)\s*(?:x|×|times)|(?P<w>twice|double|triple|half))\s+(?:(?:higher|more|above)\s+than"
        r"\s+)?<LEVEL>",
        r"<QUAL>(?P<p><NUM>)\s*(?:%|percent)\s+(?P<d>above|over|higher\s+than|more\s+than|below|under|lower\s+than"
        r"|less\s+than)\s+<LEVEL>",
        r"\b(?P<d>above|over|higher\s+than|more\s+than|exceed(?:s|ed|ing)?|beyond|below|under|lower\s+than"
        r"|less\s+than|beneath|short\s+of|in\s+line\s+with|near|close\s+to|around|at|matching|matches|on\s+par\s+with"
        r"|similar\s+to|consistent\s+with)\s+<LEVEL>(?:\s+(?:of|at)\s+(?P<v><NUM>))?(?:\s*\(\s*(?P<r><NUM>)\s*"
        r"(?:x|×|times)\s*\))?")),
    ("breadth", _judge_breadth, (
        r"(?:\b(?:by|from|among|across)\s+)?<QUAL>(?P<n><NUM>|\bone|\ba\s+single)\s+(?:(?:<USER_QUALIFIER>)\s+)?"
        r"(?:<USERS>)\b",)),
    ("change", _judge_percent, (
        r"(?:\b(?P<d><CDIR>)\s+(?:by\s+)?)?<QUAL>(?P<s>[+\-−])?(?P<p><NUM>)\s*(?:%|percent\b|per\s*cent\b|pct\b)"
        r"(?:\s+(?P<noun>increase|rise|jump|gain|growth|surge|spike|climb|drop|decline|fall|decrease|dip|slump|loss"
        r"|higher|lower|more|fewer|less|change|swing|move)\b)?"
        # "down 36% from 11": the previous count (a "from 11 to 7" that follows is the counts rule's)
        r"(?:,?\s+from\s+(?P<a><NUM>)(?![\d.,]*\d)(?!\s*(?:(?:<UNIT>)\s+)?(?:to\s|→|->))(?!\s*(?:%|x\b|×)))?",
        r"<QUAL>\b(?P<x>doubled|tripled|trebled|quadrupled|halved)\b")),
    ("change", _judge_counts, (
        r"(?:\b(?P<d><CDIR>)\s+)?\bfrom\s+(?P<a><NUM>)\s+(?:(?:<UNIT>)\s+)?(?:to|→|->)\s+(?P<b><NUM>)"
        r"(?:\s+(?:<UNIT>)\b)?",
        r"(?P<a><NUM>)\s*(?:→|->)\s*(?P<b><NUM>)",
        r"\b(?P<d><CDIR>)\s+from\s+(?P<a><NUM>)",
        r"\b(?!up\s)(?P<d><CDIR>)\s+to\s+(?P<b><NUM>)",
        r"\b(?:previous|prior)\s+(?:window['’]?s\s+)?(?P<a><NUM>)",
        r"\b(?P<d>held|holding|holds|steady|stable|flat|unchanged)\s+at\s+(?P<b><NUM>)",
        r"(?P<a><NUM>)\s+(?:<UNIT>)\s+(?:in\s+)?(?:the\s+)?(?:last|previous|prior)\s+(?:window|week|day|period|one)\b",
        r"(?P<b><NUM>)\s+(?:<UNIT>)\b",
        # "rose 0", "fell by 12": a bare number after a change verb is the size of the change
        r"\b(?P<d><CWORD>)\s+(?:by\s+)?(?P<delta><NUM>)(?![\d.,]*\s*(?:%|percent\b|per\s*cent\b|pct\b|x\b|×|times\b"
        r"|(?:<UNIT>)))",
        r"\b(?P<d><CWORD>)\b")),
)
RULES = tuple((kind, judge, _rx(pattern)) for kind, judge, patterns in _GRAMMAR for pattern in patterns)
