"""Constrained decoding (trail.decoding) on synthetic logits: a number is written only if it is a fact."""

from __future__ import annotations

import numpy as np
import pytest

from trail.decoding import FACTS_LABEL, Decoding, NumberConstraint, RowDecoder, fact_numbers, next_token, unit_numbers

VOCAB = {**{str(d): d for d in range(10)}, ".": 10, " up": 11, "%": 12, " to": 13, "x": 14, "<eos>": 15, "1st": 16,
         "Ġrose": 17, "Ġ": 18, "Ġby": 19, "Ġfrom": 20}
TOKENS = {i: t for t, i in VOCAB.items()}
CONSTRAINT = NumberConstraint.from_vocab(VOCAB)


def _decode(preferences: list[list[str]], facts: set[str], decoding: Decoding = Decoding(constrained=True),
            row: RowDecoder | None = None) -> str:
    """At each step the model prefers the listed tokens in that order (the first is its favourite)."""
    row = row or RowDecoder(decoding, CONSTRAINT, frozenset(facts))
    text = ""
    for wanted in preferences:
        logits = np.zeros(len(VOCAB), dtype=np.float32)
        for rank, token in enumerate(wanted):
            logits[VOCAB[token]] = 10.0 - rank
        text += TOKENS[next_token(row, logits)]
    return text


def test_vocabulary_digits_points_and_mixed_tokens_are_found() -> None:
    assert dict(CONSTRAINT.digit_ids) == {d: str(d) for d in range(10)}
    assert CONSTRAINT.point_ids == {10} and CONSTRAINT.other_digit_ids == {16}
    assert CONSTRAINT.direction_ids == {11, 17} and CONSTRAINT.space_ids == {18} and CONSTRAINT.by_ids == {19}


def _row(facts: str) -> RowDecoder:
    return RowDecoder.for_item(Decoding(constrained=True), CONSTRAINT, "item: MUG", f"\nforecast: 59{FACTS_LABEL}{facts}\nwhy:")


def test_after_a_direction_word_only_the_size_of_a_move_may_follow() -> None:
    """What the format-2 model wrote for an item new this window: "rose 0" (0 is a fact, but not a move's size)."""
    new_item = "up from 0 to 59 interactions; it is new on the board at #2"
    assert _decode([["Ġrose"], ["Ġ", "Ġfrom"], ["Ġ"], ["0", "5"]], set(), row=_row(new_item)) == "ĠroseĠfromĠ0"
    assert _decode([["Ġrose"], ["Ġ", " to"], ["Ġ"], ["5", "0"], ["9"]], set(), row=_row(new_item)) == "Ġrose toĠ59"
    risen = "up 17% from 47 to 55 interactions"
    assert _decode([[" up"], ["Ġ"], ["4", "1"], ["7"], ["%"]], set(), row=_row(risen)) == " upĠ17%"
    assert _decode([["Ġrose"], ["Ġby"], ["Ġ"], ["4", "1"], ["7"]], set(), row=_row(risen)) == "ĠroseĠbyĠ17"
    # away from a direction word every fact may be written again
    assert _decode([["Ġfrom"], ["Ġ"], ["4"], ["7"]], set(), row=_row(risen)) == "ĠfromĠ47"


def test_a_number_that_is_not_a_fact_cannot_be_written() -> None:
    # the model wants "26%"; the facts are 36 and 52: its next choices that keep a fact are taken
    assert _decode([["2", "3", "5"], ["6", "%", "2"], ["%"]], {"36", "52"}) == "36%"
    assert _decode([["2", "5", "3"], ["6", "%", "2"], ["%"]], {"36", "52"}) == "52%"
    assert _decode([["2", "3", "5"], ["6", "%", "2"], ["%"]], {"36", "52"}, Decoding()) == "26%"  # unconstrained


def test_a_number_ends_only_where_it_equals_a_fact() -> None:
    # after "5" the model wants to stop; "5" is no fact, "57.7" is: "5", "7", ".", "7" are forced
    assert _decode([["5"], [" up", "7"], [" up", ".", "7"], [" up", "7"], [" up"]], {"57.7"}) == "57.7 up"
    # a fact may end in a sentence's full stop, and that stop is not read as a decimal point
    assert _decode([["3"], ["."], ["4", " up"]], {"3", "3.5"}) == "3. up"


def test_tokens_mixing_digits_and_letters_are_never_chosen_when_constrained() -> None:
    assert _decode([["1st", " up"]], {"1"}) == " up"


def test_sampling_is_reproducible_by_seed_and_independent_of_other_rows() -> None:
    rng = np.random.default_rng(0)
    steps = [rng.normal(size=len(VOCAB)).astype(np.float32) for _ in range(30)]

    def sample(seed: int) -> list[int]:
        row = RowDecoder(Decoding(seed=seed))
        return [next_token(row, logits) for logits in steps]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


@pytest.mark.parametrize("text,expected", [("counts: 35 53 (change +18)", {"35", "53", "18"}),
                                           ("level x2.3, z -1.8; #4", {"2.3", "1.8", "4"})])
def test_fact_numbers(text: str, expected: set[str]) -> None:
    assert fact_numbers(text) == expected


def test_a_cue_that_lists_the_facts_is_the_only_source_of_numbers() -> None:
    """Prompt format 2: the calendar (2011, week 16) and the count history are in the prompt, the facts in the cue."""
    prompt = "item: MUG\ndate: 2011-04-18, week 16\ncounts: 35 53 47 55 (now 55, prev 47, change +8)"
    format_2 = RowDecoder.for_item(Decoding(constrained=True), CONSTRAINT, prompt,
                                   "\nforecast: 57.7\nfacts: up 17% from 47 to 55 interactions\nwhy:")
    assert format_2.facts == {"57.7", "17", "47", "55"}
    format_1 = RowDecoder.for_item(Decoding(constrained=True), CONSTRAINT, prompt, "\nforecast: 57.7\nwhy:")
    assert {"2011", "16", "35", "57.7"} <= format_1.facts



def _words_decoded(vocab: dict[str, int], decoding: Decoding, cue: str, preferences: list[list[str]]) -> list[str]:
    """Tokens chosen for an item with this cue when at each step the model prefers the listed tokens in order."""
    tokens = {i: t for t, i in vocab.items()}
    row = RowDecoder.for_item(decoding, NumberConstraint.from_vocab(vocab), "item: 3936", cue)
    written = []
    for wanted in preferences:
        logits = np.zeros(len(vocab), dtype=np.float32)
        for rank, token in enumerate(wanted):
            logits[vocab[token]] = 10.0 - rank
        written.append(tokens[next_token(row, logits)])
    return written


FORECAST_VOCAB = {"Ġexpected": 0, "Ġto": 1, "Ġsimilar": 2, "Ġdrop": 3, "Ġrise": 4, ".": 5, "Ġlevel": 6, "ĠIt": 7,
                  "Ġup": 8, "Ġsteady": 9}


@pytest.mark.parametrize("forecast, chosen",
                         [("fall", "Ġdrop"), ("keep rising", "Ġup"), ("hold steady", "Ġsimilar")])
def test_after_a_forecast_cue_the_first_direction_word_is_the_forecasts(forecast: str, chosen: str) -> None:
    """What the Stack Exchange model wrote for a forecast fall: "the forecast points to a similar level". After a
    cue the first direction word must be the facts' forecast direction; then, and in other sentences, any word."""
    cue = f"\nforecast: 3.8{FACTS_LABEL}up from 0 to 11 interactions; it is expected to {forecast} next window\nwhy:"
    preferences = [["Ġexpected"], ["Ġto"], ["Ġup", "Ġsimilar", "Ġrise", "Ġsteady", "Ġdrop"], ["Ġup"], ["."],
                   ["Ġsimilar"]]
    assert _words_decoded(FORECAST_VOCAB, Decoding(constrained=True), cue, preferences) == [
        "Ġexpected", "Ġto", chosen, "Ġup", ".", "Ġsimilar"]
    assert _words_decoded(FORECAST_VOCAB, Decoding(), cue, preferences) == [  # the model's own text
        "Ġexpected", "Ġto", "Ġup", "Ġup", ".", "Ġsimilar"]


LEVEL_VOCAB = {"Ġunder": 0, "Ġabove": 1, "Ġin": 2, "Ġthe": 3, "Ġsame": 4, "Ġa": 5}


@pytest.mark.parametrize("level, chosen", [("above its usual level of 2 (5.5x)", "Ġabove"),
                                           ("below its usual level of 20 (0.5x)", "Ġunder"),
                                           ("in line with its usual level of 11 (1.0x)", "Ġin")])
def test_level_words_of_the_wrong_side_and_a_false_same_are_never_written(level: str, chosen: str) -> None:
    """The Stack Exchange model wrote "it is under its usual level (5.6x)" and "the same as the previous window" for
    items new this window; constrained, neither can be written where the facts say otherwise."""
    cue = f"\nforecast: 3.8{FACTS_LABEL}up from 0 to 11 interactions; it is {level}; it is expected to fall next window"

    def decode(decoding: Decoding, preferences: list[list[str]]) -> list[str]:
        return _words_decoded(LEVEL_VOCAB, decoding, cue, preferences)

    assert decode(Decoding(constrained=True), [["Ġunder", "Ġabove", "Ġin"]]) == [chosen]
    assert decode(Decoding(constrained=True), [["Ġthe"], ["Ġsame", "Ġa"]]) == ["Ġthe", "Ġa"]
    assert decode(Decoding(), [["Ġunder"], ["Ġsame"]]) == ["Ġunder", "Ġsame"]  # the model's own text


UNIT_VOCAB = {"1": 0, "4": 1, "7": 2, ".": 3, "Ġinteractions": 4, "Ġusers": 5, "Ġdistinct": 6, "Ġthis": 7, "Ġ": 8,
              "Ġx": 9, "5": 10, "interactions": 11}


def test_only_the_count_may_be_followed_by_interactions_and_only_the_users_by_users() -> None:
    """The Stack Exchange model's commonest false text after the constraints above: "1.7 interactions this window",
    1.7 being the forecast and 4 the count. The number is chosen before its unit, so the unit is what is barred: a
    number the facts do not write before "interactions" (or "users") cannot be followed by it."""
    cue = (f"\nforecast: 1.7{FACTS_LABEL}down 20% from 5 to 4 interactions; from 1 distinct user; it is expected to "
           "fall next window\nwhy:")
    assert unit_numbers(cue) == {"count": frozenset({"4"}), "users": frozenset({"1"})}
    wants_unit = [["Ġinteractions", "Ġusers", "Ġdistinct", "Ġthis"]]

    def decode(decoding: Decoding, number: list[str]) -> list[str]:
        return _words_decoded(UNIT_VOCAB, decoding, cue, [[digit] for digit in number] + wants_unit)

    constrained = Decoding(constrained=True)
    assert decode(constrained, ["1", ".", "7"]) == ["1", ".", "7", "Ġthis"]  # the forecast: no unit after it
    assert decode(constrained, ["5"]) == ["5", "Ġthis"]  # the previous count
    assert decode(constrained, ["4"]) == ["4", "Ġinteractions"]
    assert decode(constrained, ["1"]) == ["1", "Ġusers"]
    assert decode(Decoding(), ["1", ".", "7"]) == ["1", ".", "7", "Ġinteractions"]  # the model's own text
    spaced = [["1"], ["."], ["7"], ["Ġ"], ["interactions", "Ġthis"]]  # a bare space, then the unit without one
    assert _words_decoded(UNIT_VOCAB, constrained, cue, spaced) == ["1", ".", "7", "Ġ", "Ġthis"]


PREPOSITION_VOCAB = {"1": 0, "7": 1, "5": 2, "Ġfrom": 3, "Ġto": 4, "Ġ": 5, "Ġits": 6, "Ġdistinct": 7}


def test_a_number_after_from_or_to_is_one_the_facts_write_there() -> None:
    """"down 71% from 1" for the facts' "down 71% from 17 to 5 interactions; from 1 distinct user": after "from"
    only 17 or 1 may be written, after "to" only 5; elsewhere every fact."""
    cue = f"\nforecast: 1.7{FACTS_LABEL}down 71% from 17 to 5 interactions; from 1 distinct user\nwhy:"
    wants = [["Ġ"], ["7", "5", "1"], ["Ġits"]]

    def decode(decoding: Decoding, word: str) -> list[str]:
        return _words_decoded(PREPOSITION_VOCAB, decoding, cue, [[word]] + wants)

    constrained = Decoding(constrained=True)
    # 7 starts no number written after "from"; and 1 is there only as the users, so "from 1" goes on as users
    assert _words_decoded(PREPOSITION_VOCAB, constrained, cue, [["Ġfrom"], ["Ġ"], ["7", "5", "1"],
                                                                ["Ġits", "Ġdistinct", "7"]]) == [
        "Ġfrom", "Ġ", "1", "Ġdistinct"]
    assert _words_decoded(PREPOSITION_VOCAB, constrained, cue, [["Ġfrom"], ["Ġ"], ["1"], ["Ġits", "7"]]) == [
        "Ġfrom", "Ġ", "1", "7"]  # or as a longer fact: 17, the previous count
    assert decode(constrained, "Ġto") == ["Ġto", "Ġ", "5", "Ġits"]
    assert decode(constrained, "Ġits") == ["Ġits", "Ġ", "7", "1"]  # elsewhere any fact: 7 only as the start of 71
    assert decode(Decoding(), "Ġfrom") == ["Ġfrom", "Ġ", "7", "Ġits"]  # the model's own text
