"""How an explanation's next token is chosen: greedy, or restricted so every number written is one of the facts.

Both decoders of TRAIL — the PyTorch model (``training/model.py``) and the ONNX runner that the embedded backend
and the Triton model share (``serving/trail_onnx.py``) — call :func:`next_token` on each row's logits, so a given
:class:`Decoding` gives the same text on either path.

Constrained decoding is a logits processor over digits. The facts of an item are the numbers its prompt and
forecast cue show (:func:`fact_numbers`); where the cue lists the item's facts (prompt format 2, after
:data:`FACTS_LABEL`), only the cue's numbers, so the calendar's and the count history's numbers cannot be written.
While the model writes a number, only digits (and a decimal point) that
keep it a prefix of some fact may follow, and the number may only end where it equals a fact. "rose 26%" can then
not be written unless 26 is a fact. A number right after a direction word ("rose", "up", "fell by") is the size of
a move, so there only the numbers the facts themselves write after one may follow (:func:`direction_numbers`: "up
17% from 47 to 55" allows "up 17", not "up 47"): the model of format 2 wrote "rose 0" for an item new this window
(0 to 59), a true number in the wrong place. Where the facts write no number after a direction word, the space
before a number cannot follow one either, so the model goes on with a word ("rose from 0 to 59", "rose to 59").
The forecast's direction is constrained too: after a forecast cue ("expected", "likely", "forecast", ...) the
first direction word of the sentence must be the forecast's own (:data:`DIRECTION_CLASSES`; the facts line says
which: "it is expected to fall next window"), the word the checker reads as the forecast claim. The model of
Stack Exchange wrote "the forecast points to a similar level" for a forecast fall in 47 of 160 candidates of 20
validation items. Other direction words are left to the checker, which rejects a wrong one: a context-free ban
cannot tell whose direction a word states.
Numbers are bound to their slot on both sides as well: right after "from" or "to" only a number the facts write
there may follow (:func:`preposition_numbers`; "down 71% from 1" for the facts' "from 17 to 5"), and after a number,
"interactions" (or another count word) and "users" may follow only a number the facts write before them
(:func:`unit_numbers`): the Stack Exchange model's commonest false text was "1.7 interactions this window", 1.7
being the forecast. The unit comes after the number, so it is the unit that is barred (also after one bare space).
The price: "5 interactions last window", true for a previous count of 5 and read so by the checker, cannot be
written constrained either; the model then says it as the facts do ("from 5 to 4"). A number after "from" that the
facts write there only as the distinct users ("from 1 distinct user") must go on as users
(:func:`users_only_after_from`).
Tokenizers whose digits are single tokens (SmolLM2, Llama) are constrained exactly; any other token that contains
a digit is never chosen in constrained mode.

A row's sampling generator is seeded by the decoding's ``seed`` alone, so a text does not depend on which other
rows share its batch.

This module is copied into every exported version folder (as ``trail_decoding.py``): it needs only numpy.

>>> sorted(fact_numbers("counts: 35 53 (now 53, change +18); forecast: 57.7"))
['18', '35', '53', '57.7']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

__all__ = ["CANDIDATE_DECODINGS", "DEFAULT_EXPLANATION_CANDIDATES", "DIRECTION_CLASSES", "DIRECTION_WORDS",
           "COUNT_UNIT_WORDS", "DRAFT_TOKENS", "FACTS_LABEL", "FORECAST_CUE_WORDS", "LEVEL_WORDS", "USER_QUALIFIERS",
           "USER_WORDS", "Decoding", "GREEDY", "NumberConstraint", "RowDecoder", "banned_words_of", "direction_numbers",
           "fact_numbers", "forecast_direction_of", "next_token", "preposition_numbers", "unit_numbers",
           "users_only_after_from", "word_alternation"]

SAMPLE_TEMPERATURE = 0.7
SAMPLE_TOP_K = 20
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
FACTS_LABEL = "\nfacts: "  # prompt format 2's cue lists every fact an explanation may state after this
# Words after which a number is the size of a move ("up 17%", "rose by 12", "down 2 places"); "by" may sit between.
DIRECTION_WORDS = frozenset(
    "up down rise rises rising rose risen fall falls falling fell fallen grow grows growing grew grown climb climbs "
    "climbing climbed slip slips slipping slipped gain gains gained lose loses losing lost jump jumps jumped drop "
    "drops dropping dropped increase increases increasing increased decrease decreases decreasing decreased "
    "decline declines declining declined surge surges surged".split())
# One-token words of each direction, as the checker's grammar reads them (trail/explain/grammar.py: _RISE, _FALL,
# _STEADY), and the cues after which the first of them is the forecast's direction (its forecast rule).
DIRECTION_CLASSES: Mapping[str, frozenset[str]] = {
    "rise": frozenset(
        "up upward upwards higher more rise rises rising rose risen grow grows growing grew grown climb climbs "
        "climbing climbed gain gains gaining gained increase increases increasing increased jump jumps jumping "
        "jumped surge surges surged surging spike spikes spiked soar soars soared soaring advance advances advanced "
        "rebound rebounds rebounded recover recovers recovered accelerate accelerates accelerated growth".split()),
    "fall": frozenset(
        "down downward downwards lower less fewer fall falls falling fell fallen drop drops dropping dropped decline "
        "declines declining declined decrease decreases decreasing decreased slip slips slipping slipped slide slides "
        "sliding dip dips dipped dipping shrink shrinks shrinking shrank shrunk sink sinks sank sunk slump slumps "
        "slumped plunge plunges plunged tumble tumbles tumbled lose loses losing lost retreat retreats retreated cool "
        "cools cooled cooling ease eases eased easing fade fades faded fading".split()),
    "steady": frozenset(  # "level off/out": banned, the model wrote "level out", then "level it" for a forecast fall
        "steady stable flat unchanged same similar flatten flattens flattening plateau plateaus stabilise stabilize "
        "stabilises stabilizes level levels leveling levelling off out".split()),
}
# Words that state the level against the usual one ("under its usual level"), and "same" ("the same as the previous
# window"): written for an item whose facts say otherwise, they are false whatever follows, so constrained decoding
# never writes them then (:func:`banned_words_of`).
LEVEL_WORDS: Mapping[str, frozenset[str]] = {"above": frozenset({"above", "over", "beyond", "exceeds", "exceeding"}),
                                              "below": frozenset({"below", "under", "beneath"})}
_LEVEL_FACT = re.compile(r"it is (?P<where>above|below|in line with) its usual level")
FORECAST_CUE_WORDS = frozenset(
    "expect expects expected expecting expectation expectations forecast forecasts forecasted predict predicts "
    "predicted prediction predictions project projects projected projection projections likely poised should will "
    "outlook".split())
# Words that make the number before them a count of interactions ("4 interactions") or of distinct users ("2
# distinct users"). The checker's grammar (trail/explain/grammar.py) builds its UNIT and USERS patterns from these
# sets, so what decoding binds and what the checker reads cannot drift apart.
COUNT_UNIT_WORDS = frozenset(
    "interaction interactions event events purchase purchases order orders sales view views click clicks answer "
    "answers vote votes comment comments post posts hits visit visits transaction transactions".split())
USER_WORDS = frozenset(
    "user users people persons customer customers shopper shoppers buyer buyers visitor visitors account accounts "
    "member members reader readers".split())
USER_QUALIFIERS = frozenset("distinct unique different separate individual".split())  # "2 distinct users"
_UNIT_CLASSES: Mapping[str, frozenset[str]] = {"count": COUNT_UNIT_WORDS, "users": USER_WORDS | USER_QUALIFIERS}


def word_alternation(words: Iterable[str]) -> str:
    """A regex alternation of whole ``words``, longest first (the checker's grammar builds its word classes so too)."""
    return "|".join(sorted(words, key=lambda word: (-len(word), word)))


_UNIT_NUMBER = {name: re.compile(rf"(\d+(?:\.\d+)?)\s+(?:(?:{word_alternation(USER_QUALIFIERS)})\s+)?"
                                 rf"(?:{word_alternation(words)})\b", re.I)
                for name, words in (("count", COUNT_UNIT_WORDS), ("users", USER_WORDS))}
_FROM_NUMBER = re.compile(rf"\bfrom\s+(\d+(?:\.\d+)?)(\s+(?:(?:{word_alternation(USER_QUALIFIERS)})\s+)?"
                          rf"(?:{word_alternation(USER_WORDS)})\b)?", re.I)
_BANNABLE_WORDS = frozenset({"same", *(word for words in LEVEL_WORDS.values() for word in words)})
_FORECAST_FACT = re.compile(r"expected to (?:keep )?(?P<d>rising|rise|falling|fall|hold steady) next window")
_CUE_BREAKS = frozenset(".;!?%")  # what ends the reach of a forecast cue (the grammar's gap excludes them)
PREPOSITIONS = ("from", "to")  # "down 71% from 17 to 5": the number after each is bound to what the facts write there
_PREPOSITION_NUMBER = {word: re.compile(rf"\b{word}\s+(\d+(?:\.\d+)?)", re.I) for word in PREPOSITIONS}
_DIRECTION_NUMBER = re.compile(rf"\b(?:{'|'.join(sorted(DIRECTION_WORDS))})\s+(?:by\s+)?(\d+(?:\.\d+)?)", re.I)


@dataclass(frozen=True)
class Decoding:
    """``constrained``: numbers restricted to the facts; ``seed`` 0: greedy, else top-k sampling with that seed."""

    constrained: bool = False
    seed: int = 0

    @property
    def label(self) -> str:
        """What a published explanation written this way is called (``source`` in the record)."""
        return "model-constrained" if self.constrained else "model"

    def to_list(self) -> list[int]:
        return [int(self.constrained), self.seed]

    @classmethod
    def from_list(cls, values: Iterable[int]) -> "Decoding":
        constrained, seed = (int(v) for v in values)
        return cls(bool(constrained), seed)


GREEDY = Decoding()
# Tried in order for the items whose text the checker has not fully verified yet: the model's own greedy text,
# then constrained greedy, then constrained samples.
SAMPLED_CANDIDATES = 6  # constrained samples after constrained greedy, the most TRAIL_EXPLANATION_CANDIDATES allows
CANDIDATE_DECODINGS = (GREEDY, Decoding(constrained=True),
                       *(Decoding(True, seed=seed) for seed in range(1, SAMPLED_CANDIDATES + 1)))
# The worker tries all of them by default: the first fully verified text ships, the composer only when none verifies.
# On 4 validation windows each (top 10, benchmarks/explain_share.py, README "Measured results") the six constrained
# samples raised the share of model-written texts from 35 to 38 of 40 on Online Retail (1.6x the explanation time:
# 13.7 s a window instead of 8.4 s) and from 21 to 39 of 40 on Stack Exchange (2.5x: 19.8 s instead of 8.0 s). Two
# rounds were the default while a round of 10 cost ~15-35 s; batched decoding with grouped heads made 8 rounds cost
# less than 2 did then. What samples add can read stilted ("It is under its usual level. ... It is under its usual
# trend."), but every claim in it is verified; TRAIL_EXPLANATION_CANDIDATES=2 keeps greedy and constrained greedy.
DEFAULT_EXPLANATION_CANDIDATES = len(CANDIDATE_DECODINGS)


# Prompt-lookup drafts (:func:`draft_from_source`): up to this many tokens proposed per step and verified in one
# forward. An explanation mostly rephrases its facts line, so long runs of it are copied; but on a CPU a step's cost
# grows with the positions it feeds, and a batch of 10 with 6-token drafts took 1.08x the time of one-token steps
# (and 1.17x in the release before: README, Measured results). Off by default; worth trying where a step costs the
# same whatever it feeds (a GPU). The tokens chosen are the same either way.
DRAFT_TOKENS = 0
_DRAFT_NGRAMS = (3, 2, 1)  # the longest tail of the text so far that is found in the source decides the draft


def draft_from_source(source: list[int], text: list[int], limit: int) -> list[int]:
    """Up to ``limit`` tokens that followed the latest occurrence, in ``source`` (the prompt and cue), of the
    longest tail (3, 2 or 1 tokens) of ``text`` (the tokens decoded so far, the last one included); [] if none.

    A draft is only a guess: the decoder verifies it (:meth:`RowDecoder.choose` on the logits at each drafted
    position) and keeps the tokens it would have chosen anyway, so the text is the same with or without drafts.

    >>> draft_from_source([5, 6, 7, 8, 9, 6, 7, 3], [1, 6, 7], 4)
    [3]
    >>> draft_from_source([5, 6, 7, 8, 9], [2, 6], 2)
    [7, 8]
    >>> draft_from_source([5, 6, 7], [4], 2)
    []
    """
    if limit <= 0:
        return []
    for n in _DRAFT_NGRAMS:
        if len(text) < n:
            continue
        tail = text[-n:]
        for start in range(len(source) - n, -1, -1):
            if source[start: start + n] == tail and start + n < len(source):
                return source[start + n: start + n + limit]
    return []


def fact_numbers(text: str) -> frozenset[str]:
    """Every number written in ``text`` (integers and decimals, without sign), as written."""
    return frozenset(_NUMBER.findall(text))


def direction_numbers(text: str) -> frozenset[str]:
    """The numbers ``text`` writes right after a direction word: the sizes of moves.

    >>> sorted(direction_numbers("up 17% from 47 to 55 interactions; it ranks #8, down 3 places from #5"))
    ['17', '3']
    >>> sorted(direction_numbers("up from 0 to 59 interactions; it is new on the board at #2"))
    []
    """
    return frozenset(_DIRECTION_NUMBER.findall(text))


def preposition_numbers(cue: str) -> dict[str, frozenset[str]]:
    """The numbers the facts line of a format-2 cue writes right after "from" and after "to" (not ranks: "#" is no
    digit), the only ones a constrained text may write there. The Stack Exchange model wrote "down 71% from 1" (1
    being the distinct users) for the facts' "down 71% from 17 to 5 interactions".

    >>> sorted((k, sorted(v)) for k, v in preposition_numbers(f"{FACTS_LABEL}down 71% from 17 to 5 interactions; "
    ...                                                      "from 1 distinct user; down 3 places from #1").items())
    [('from', ['1', '17']), ('to', ['5'])]
    """
    facts = cue.partition(FACTS_LABEL)[2]
    return {word: frozenset(pattern.findall(facts)) for word, pattern in _PREPOSITION_NUMBER.items()}


def forecast_direction_of(cue: str) -> str | None:
    """The forecast's direction ("rise", "fall", "steady") as the facts line of a format-2 cue states it.

    >>> forecast_direction_of(f"{FACTS_LABEL}up 17% from 47 to 55; it is expected to keep rising next window")
    'rise'
    >>> forecast_direction_of(f"{FACTS_LABEL}up from 0 to 11 interactions; it is expected to fall next window")
    'fall'
    """
    found = _FORECAST_FACT.search(cue.partition(FACTS_LABEL)[2])
    if found is None:
        return None
    word = found["d"]
    return "steady" if word == "hold steady" else "rise" if word.startswith("ris") else "fall"


def banned_words_of(cue: str) -> frozenset[str]:
    """Words a constrained explanation of these facts may not write: the level words of a side the item is not on
    (both sides when it is in line with its usual level or has none), and "same" unless a fact is the same.

    >>> sorted(banned_words_of(f"{FACTS_LABEL}up from 0 to 11 interactions; it is above its usual level of 2 (5.5x)"))
    ['below', 'beneath', 'same', 'under']
    """
    facts = cue.partition(FACTS_LABEL)[2]
    level = _LEVEL_FACT.search(facts)
    where = level["where"] if level else None
    banned = {word for side, words in LEVEL_WORDS.items() if side != where for word in words}
    if "same" not in facts and "no change" not in facts:
        banned.add("same")
    return frozenset(banned)


def unit_numbers(cue: str) -> dict[str, frozenset[str]]:
    """What the facts line of a format-2 cue writes right before a count word and a users word: the only numbers a
    constrained text may follow with one ("4 interactions" is read as this window's count, "2 users" as its
    distinct users).

    >>> sorted((k, sorted(v)) for k, v in unit_numbers(f"{FACTS_LABEL}down 20% from 5 to 4 interactions; from 2 "
    ...                                               "distinct users; it is expected to fall next window").items())
    [('count', ['4']), ('users', ['2'])]
    """
    facts = cue.partition(FACTS_LABEL)[2]
    return {name: frozenset(pattern.findall(facts)) for name, pattern in _UNIT_NUMBER.items()}


def users_only_after_from(cue: str) -> frozenset[str]:
    """The numbers the facts line writes after "from" only as the distinct users ("from 1 distinct user"), never as
    a count ("from 17 to 5"): written after "from", such a number must go on as users. The Stack Exchange model
    wrote "down 71% from 1" for the facts' "down 71% from 17 to 5 interactions; from 1 distinct user".

    >>> sorted(users_only_after_from(f"{FACTS_LABEL}down 71% from 17 to 5 interactions; from 1 distinct user"))
    ['1']
    >>> sorted(users_only_after_from(f"{FACTS_LABEL}up from 1 to 5 interactions; from 1 distinct user"))
    []
    """
    found = _FROM_NUMBER.findall(cue.partition(FACTS_LABEL)[2])
    return frozenset(n for n, users in found if users) - frozenset(n for n, users in found if not users)


def _word(token: str) -> str:
    """A token's text without the tokenizer's word-start marker (GPT-2's "Ġ", SentencePiece's "▁") or spaces."""
    return token.replace("Ġ", " ").replace("▁", " ").strip().lower()


@dataclass(frozen=True)
class NumberConstraint:
    """The digit tokens of a vocabulary, and which of them may follow a number in progress."""

    digit_ids: Mapping[int, str]  # token id → its digit string
    point_ids: frozenset[int]  # tokens that are exactly "."
    other_digit_ids: frozenset[int]  # tokens mixing digits with other characters: never chosen when constrained
    direction_ids: frozenset[int] = frozenset()  # one of DIRECTION_WORDS, with or without a word-start marker
    space_ids: frozenset[int] = frozenset()  # a bare space ("Ġ"), which a number follows in GPT-2-style vocabularies
    by_ids: frozenset[int] = frozenset()  # "by", as in "rose by 12"
    cue_ids: frozenset[int] = frozenset()  # one of FORECAST_CUE_WORDS
    # direction class → the tokens of the other classes' words that are not also its own (barred after a cue)
    off_class_ids: Mapping[str, list[int]] = field(default_factory=dict)
    cue_end_ids: frozenset[int] = frozenset()  # end a cue's reach: any class's word, a digit, ".", ";", "!", "?", "%"
    word_ids: Mapping[str, frozenset[int]] = field(default_factory=dict)  # each word banned_words_of may name
    unit_ids: Mapping[str, list[int]] = field(default_factory=dict)  # "count" / "users" → their words' tokens, sorted
    preposition_of: Mapping[int, str] = field(default_factory=dict)  # a token of "from" or "to" → that word

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int]) -> "NumberConstraint":
        digits, points, others, directions, spaces, bys = {}, set(), set(), set(), set(), set()
        cues, ends = set(), set()
        classes: dict[str, set[int]] = {name: set() for name in DIRECTION_CLASSES}
        bannable: dict[str, set[int]] = {word: set() for word in _BANNABLE_WORDS}
        units: dict[str, set[int]] = {name: set() for name in _UNIT_CLASSES}
        prepositions: dict[int, str] = {}
        for token, token_id in vocab.items():
            word = _word(token)
            if word in PREPOSITIONS:
                prepositions[token_id] = word
            for name, words in _UNIT_CLASSES.items():
                if word in words:
                    units[name].add(token_id)
            if word in bannable:
                bannable[word].add(token_id)
            for name, words in DIRECTION_CLASSES.items():
                if word in words:
                    classes[name].add(token_id)
            if word in FORECAST_CUE_WORDS:
                cues.add(token_id)
            if any(ch in _CUE_BREAKS for ch in token):
                ends.add(token_id)
            if token.isdigit() and token.isascii():
                digits[token_id] = token
            elif token == ".":
                points.add(token_id)
            elif any(ch.isdigit() for ch in token):
                others.add(token_id)
            elif word in DIRECTION_WORDS:
                directions.add(token_id)
            elif token and not word:
                spaces.add(token_id)
            elif word == "by":
                bys.add(token_id)
        every_class = set().union(*classes.values())
        off_class = {name: sorted(every_class - ids) for name, ids in classes.items()}
        return cls(digits, frozenset(points), frozenset(others), frozenset(directions), frozenset(spaces),
                   frozenset(bys), frozenset(cues), off_class, frozenset(ends | every_class | set(digits)),
                   {word: frozenset(ids) for word, ids in bannable.items()},
                   {name: sorted(ids) for name, ids in units.items()}, prepositions)


@dataclass
class RowDecoder:
    """One sequence's decoding state: the number being written and the sampling generator."""

    decoding: Decoding
    constraint: NumberConstraint | None = None
    facts: frozenset[str] = frozenset()
    move_facts: frozenset[str] | None = None  # the numbers allowed right after a direction word; None: any fact
    forecast_direction: str | None = None  # the facts' forecast direction (a key of DIRECTION_CLASSES); None: free
    banned_words: frozenset[str] = frozenset()  # never written (banned_words_of)
    unit_facts: Mapping[str, frozenset[str]] | None = None  # unit_numbers; None: any number may precede a unit
    preposition_facts: Mapping[str, frozenset[str]] | None = None  # preposition_numbers; None: any fact after one
    users_after_from: frozenset[str] = frozenset()  # users_only_after_from: after "from", these go on as users
    number: str = ""  # digits (and at most one ".") written since the last other character
    after_direction: bool = False  # the last word was a direction word (then maybe "by", a space, digits)
    after_forecast_cue: bool = False  # a forecast cue, and no direction word, digit or sentence end since
    after_preposition: str | None = None  # the last word was "from" or "to" (then maybe a space, digits)
    spaced_number: str = ""  # a complete number followed by one bare space: what a unit after the space counts
    _prefixes: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _move_prefixes: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _preposition_prefixes: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _banned_ids: list[int] = field(default_factory=list, init=False, repr=False)
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_item(cls, decoding: Decoding, constraint: NumberConstraint, prompt: str, cue: str) -> "RowDecoder":
        """The decoder of one item's explanation: constrained to the numbers of its prompt and cue if asked."""
        if not decoding.constrained:
            return cls(decoding)
        if FACTS_LABEL in cue:
            return cls(decoding, constraint, fact_numbers(cue), direction_numbers(cue),
                       forecast_direction=forecast_direction_of(cue), banned_words=banned_words_of(cue),
                       unit_facts=unit_numbers(cue), preposition_facts=preposition_numbers(cue),
                       users_after_from=users_only_after_from(cue))
        return cls(decoding, constraint, fact_numbers(prompt + cue))

    def __post_init__(self) -> None:
        if self.decoding.constrained and self.constraint is None:
            raise ValueError("constrained decoding needs the vocabulary's NumberConstraint")
        self._prefixes = _prefixes_of(self.facts)
        self._move_prefixes = (self._prefixes if self.move_facts is None or self.move_facts == self.facts
                               else _prefixes_of(self.move_facts))
        self._preposition_prefixes = {word: _prefixes_of(numbers) for word, numbers in
                                      (self.preposition_facts or {}).items()}
        if self.decoding.seed:
            self._rng = np.random.default_rng(self.decoding.seed)
        if self.constraint is not None:
            self._banned_ids = sorted({i for word in self.banned_words
                                       for i in self.constraint.word_ids.get(word, frozenset())})

    def allowed_mask(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` with every token that would break the constraint set to -inf (a copy)."""
        constraint = self.constraint
        assert constraint is not None
        out = logits.astype(np.float32, copy=True)
        number = self.number
        moving = self.after_direction and self.move_facts is not None
        facts, prefixes = (self.move_facts, self._move_prefixes) if moving else (self.facts, self._prefixes)
        if not moving and self.after_preposition is not None and self.preposition_facts is not None:
            moving = True  # a number right after "from" / "to" is bound like the size of a move
            facts = self.preposition_facts.get(self.after_preposition, frozenset())
            prefixes = self._preposition_prefixes.get(self.after_preposition, frozenset())
        complete = number.rstrip(".") in facts if number else True
        blocked = [i for i, digit in constraint.digit_ids.items() if number + digit not in prefixes]
        if number and not number.endswith(".") and not (number + "." in prefixes or complete):
            blocked += constraint.point_ids
        if moving and not number and not prefixes:  # no number to write there: no space to write one after
            blocked += constraint.space_ids
        if not complete:  # in the middle of a number: only its continuations
            allowed = self._continuations(number, prefixes)
            masked = np.full_like(out, -np.inf)
            masked[allowed] = out[allowed]
            return masked
        out[blocked] = -np.inf
        out[list(constraint.other_digit_ids)] = -np.inf
        out[self._banned_ids] = -np.inf
        if self.after_forecast_cue and self.forecast_direction is not None:  # the forecast claim's direction word
            out[constraint.off_class_ids[self.forecast_direction]] = -np.inf
        # "1.7 interactions": not a count ("4" and a bare space are followed by a unit just the same)
        pending = number if number and not number.endswith(".") else self.spaced_number
        if pending and self.unit_facts is not None:
            for name, numbers in self.unit_facts.items():
                if pending not in numbers:
                    out[constraint.unit_ids.get(name, [])] = -np.inf
        if number and self.after_preposition == "from" and number in self.users_after_from:
            # "from 1" where 1 is only the users: it goes on as users ("from 1 distinct user"), or as a longer fact
            kept = np.full_like(out, -np.inf)
            keep = self._continuations(number, prefixes) + constraint.unit_ids.get("users", [])
            kept[keep] = out[keep]
            return kept
        return out

    def _continuations(self, number: str, prefixes: frozenset[str]) -> list[int]:
        """The tokens that make ``number`` a longer prefix of an allowed number: a digit, or a first point."""
        assert self.constraint is not None
        going_on = [i for i, digit in self.constraint.digit_ids.items() if number + digit in prefixes]
        if not number.endswith(".") and number + "." in prefixes:
            going_on += self.constraint.point_ids
        return going_on

    def choose(self, logits: np.ndarray) -> int:
        scores = self.allowed_mask(logits) if self.decoding.constrained else logits
        if self._rng is None:
            return int(np.argmax(scores))
        top = np.argsort(-scores, kind="stable")[:SAMPLE_TOP_K]
        weights = (scores[top] - scores[top[0]]) / SAMPLE_TEMPERATURE
        probabilities = np.exp(weights.astype(np.float64))
        probabilities[~np.isfinite(weights)] = 0.0
        cumulative = np.cumsum(probabilities / probabilities.sum())
        return int(top[min(int(np.searchsorted(cumulative, self._rng.random(), side="right")), len(top) - 1)])

    def advance(self, token_id: int) -> None:
        """Record the chosen token (keeps track of the number in progress)."""
        if self.constraint is None:
            return
        constraint = self.constraint
        if token_id in constraint.cue_ids:
            self.after_forecast_cue = True
        elif token_id in constraint.cue_end_ids:
            self.after_forecast_cue = False
        digit = constraint.digit_ids.get(token_id)
        if digit is not None:
            self.number += digit
            self.spaced_number = ""
        elif token_id in constraint.point_ids and self.number and "." not in self.number:
            self.number += "."
        else:
            self.after_direction = token_id in constraint.direction_ids or (
                self.after_direction and not self.number
                and (token_id in constraint.space_ids or token_id in constraint.by_ids))
            self.after_preposition = constraint.preposition_of.get(token_id) or (
                self.after_preposition if not self.number and token_id in constraint.space_ids else None)
            self.spaced_number = self.number if token_id in constraint.space_ids and not self.number.endswith(".") \
                else ""
            self.number = ""


def _prefixes_of(numbers: Iterable[str]) -> frozenset[str]:
    return frozenset(number[:n] for number in numbers for n in range(1, len(number) + 1))


def next_token(row: RowDecoder, logits: np.ndarray) -> int:
    """Choose the row's next token from its last-position logits and record it."""
    token = row.choose(logits)
    row.advance(token)
    return token
