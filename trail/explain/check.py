"""Checking any text (the composer's or a model's): sentences, claims, and the verdict on each.

:func:`check` splits the text into sentences, masks the item's names, runs the grammar's rules
(:data:`trail.explain.grammar.RULES`) in order, and reports every claim with its verdict and reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from trail.signals import TrendSignals

from .forecast import Forecast
from .grammar import _CATEGORY_MARK, _OTHER_MARK, RULES

__all__ = ["UNREAD_NUMBER", "CheckResult", "Claim", "available_kinds", "check", "split_sentences"]

# The kind of the claim a number makes when no rule reads it ("it sits at 44"): unverified, so a text with one is
# never published as the model's. Not one of CLAIM_KINDS: the composer never writes one.
UNREAD_NUMBER = "unread_number"
_NUMBER = re.compile(r"[#+-]?\d+(?:[.,]\d+)*(?:%|x\b)?")


@dataclass(frozen=True)
class Claim:
    kind: str  # one of CLAIM_KINDS, or UNREAD_NUMBER
    text: str  # the words the claim was read from
    sentence: str
    verified: bool
    reason: str  # "verified: <truth>" or "expected <truth>, found '<text>'"


@dataclass(frozen=True)
class CheckResult:
    claims: tuple[Claim, ...]
    unverifiable: tuple[str, ...]  # sentences in which no claim was found
    available: frozenset[str] = frozenset()  # available_kinds(signals)

    @property
    def verified_count(self) -> int:
        return sum(claim.verified for claim in self.claims)

    @property
    def precision(self) -> float:
        """Verified claims / claims; 1.0 when there are no claims."""
        return self.verified_count / len(self.claims) if self.claims else 1.0

    @property
    def coverage(self) -> float:
        """|kinds with at least one claim in the text, verified or not, that are available| / |available|, where
        available = :func:`available_kinds` (every kind the composer could state for these signals)."""
        covered = {claim.kind for claim in self.claims} & self.available
        return len(covered) / len(self.available) if self.available else 1.0

    @property
    def all_verified(self) -> bool:
        return bool(self.claims) and all(claim.verified for claim in self.claims)

    @property
    def forecast_agrees(self) -> bool | None:
        """Whether every forecast claim matches the forecast direction; None when the text makes none."""
        verdicts = [claim.verified for claim in self.claims if claim.kind == "forecast"]
        return all(verdicts) if verdicts else None



def available_kinds(signals: TrendSignals) -> frozenset[str]:
    """The claim kinds the composer can state for these signals."""
    item, rank_known = signals.item, signals.rank is not None
    optional = {"rank": rank_known, "rank_move": rank_known or signals.previous_rank is not None,
                "level": item.long_term_mean > 0, "category": bool(signals.category),
                "breadth": item.distinct_users > 0}
    return frozenset({"change", "forecast"} | {kind for kind, known in optional.items() if known})



_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|\n")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "vs", "approx", "etc", "ca", "cf", "no", "nos", "mr", "mrs", "ms", "dr", "st",
                            "jr", "inc", "ltd", "co", "fig"})


def split_sentences(text: str, keep_whole: Sequence[str] = ()) -> list[str]:
    """Sentences of ``text``; never split inside a number ("2.1x"), after an abbreviation followed by a lower-case
    letter or digit ("No. 3"), or inside any of ``keep_whole`` (a category name such as "U.S. Books")."""
    protected = [m.span() for name in keep_whole if name.strip() for m in re.finditer(re.escape(name), text, re.I)]
    sentences, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        word = re.search(r"[\w.]*$", text[start:boundary.start()]).group(0).lower()
        following = text[boundary.end():].lstrip()[:1]
        abbreviation = boundary.group(0).startswith(".") and word in _ABBREVIATIONS and not following.isupper()
        if not abbreviation and not any(a <= boundary.start() < b for a, b in protected):
            sentences.append(text[start:boundary.end()])
            start = boundary.end()
    return [sentence.strip() for sentence in [*sentences, text[start:]] if sentence.strip()]


def _masked(sentence: str, signals: TrendSignals) -> str:
    """The sentence with the category name (and a title or item id containing a digit) blanked, same length."""
    names = [(signals.category or "", _CATEGORY_MARK)] + [  # a bare number as a name (item id "12") is not
        (name, _OTHER_MARK) for name in (signals.title, signals.item_id)  # masked: it would blank "12.4x"'s digits
        if re.search(r"[0-9#]", name or "") and not re.fullmatch(r"[#\d.,\s-]+", name or "")]
    for name, mark in sorted(names, key=lambda pair: -len(pair[0].strip())):
        if len(name.strip()) >= 2 or (mark == _CATEGORY_MARK and name.strip()):  # one-letter categories exist
            sentence = re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", lambda m: mark * len(m.group(0)), sentence,
                              flags=re.IGNORECASE)
    return sentence


def _claims_in(sentence: str, signals: TrendSignals, forecast: Forecast) -> list[Claim]:
    """Every rule in order over the masked sentence; what a rule reads is blanked before the next rule runs. A
    number left unread at the end is an unverified :data:`UNREAD_NUMBER` claim: a faithful text states no number
    the checker cannot tie to a signal (the model wrote "it sits at 44", 44 being its count)."""
    working, found = _masked(sentence, signals), []
    for kind, judge, pattern in RULES:
        pieces, end = [], 0
        for match in pattern.finditer(working):
            verdict = judge(match, signals, forecast)
            if verdict is not None:
                span = " ".join(sentence[match.start():match.end()].split())
                reason = f"verified: {verdict[1]}" if verdict[0] else f"expected {verdict[1]}, found '{span}'"
                found.append((match.start(), Claim(kind, span, sentence, verdict[0], reason)))
                pieces += [working[end:match.start()], " " * (match.end() - match.start())]
                end = match.end()
        working = "".join(pieces) + working[end:]
    for match in _NUMBER.finditer(working):  # what no rule read: a number the text claims and nothing verifies
        found.append((match.start(), Claim(UNREAD_NUMBER, match.group(0), sentence, False,
                                           f"no rule reads the number '{match.group(0)}'")))
    return [claim for _, claim in sorted(found, key=lambda pair: pair[0])]


def check(text: str, signals: TrendSignals, forecast: Forecast) -> CheckResult:
    """Parse ``text`` into claims and verify each against the signals and the forecast (never raises on text)."""
    names = [name for name in (signals.category, signals.title, signals.item_id) if name]
    claims: list[Claim] = []
    unverifiable: list[str] = []
    for sentence in split_sentences(text if isinstance(text, str) else str(text), keep_whole=names):
        found = _claims_in(sentence, signals, forecast)
        claims.extend(found)
        unverifiable.extend([] if found else [sentence])
    return CheckResult(tuple(claims), tuple(unverifiable), available_kinds(signals))
