"""Grounded explanations: whatever the composer writes verifies, every counterfactual fails, any text is safe."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trail.explain import (
    CLAIM_KINDS,
    COUNTERFACTUAL_KINDS,
    PHRASINGS,
    UNREAD_NUMBER,
    Forecast,
    available_kinds,
    check,
    compose,
    counterfactual,
    forecast_direction,
    split_sentences,
    stated_facts,
)
from trail.signals import ItemWindow, TrendSignals

CATEGORIES = [None, "Books", "Home & Garden", "python", "Kitchen Tools", "U.S. Stationery", "Toys 3+", "C", "OTHER", "HOLDER"]
TITLES = ["", "Red mug", "WHITE HANGING HEART T-LIGHT HOLDER", "Top 10 recipes, #3 is 2.5x faster"]


def make_signals(count: float = 14.0, previous_count: float = 10.0, long_term_mean: float = 6.0,
                 rank: int | None = 3, previous_rank: int | None = 7, category: str | None = "Books",
                 category_count: float = 150.0, category_previous_count: float = 120.0, distinct_users: int = 12,
                 predicted: float = 18.0, title: str = "Red mug", item_id: str = "item-85123A",
                 ) -> tuple[TrendSignals, Forecast]:
    """Signals with every field filled consistently from a few numbers (history: ..., previous, count)."""
    history = (long_term_mean, previous_count, count)
    ewm_fast = 0.5 * count + 0.5 * previous_count
    ewm_slow = 0.1 * count + 0.9 * long_term_mean
    item = ItemWindow(
        item_id=item_id, window_index=40, count=count, history=history, previous_count=previous_count,
        velocity=count, acceleration=count - previous_count, ewm_fast=ewm_fast, ewm_slow=ewm_slow,
        momentum=ewm_fast / ewm_slow if ewm_slow > 0 else 1.0, zscore=0.0, long_term_mean=long_term_mean,
        level_ratio=(count + 1.0) / (long_term_mean + 1.0), distinct_users=distinct_users,
        age_windows=12 if long_term_mean > 0 else 0, forecast=predicted, idle_windows=0 if count > 0 else 1,
    )
    signals = TrendSignals(item=item, title=title, category=category, rank=rank, previous_rank=previous_rank,
                           category_count=category_count, category_previous_count=category_previous_count)
    return signals, Forecast(predicted_count=predicted, score=0.7)


def _count(related_to: float | None = None) -> st.SearchStrategy[float]:
    free = st.one_of(st.integers(0, 400).map(float), st.floats(0, 400).map(lambda x: round(x, 2)))
    if related_to is None:
        return free
    near = st.floats(-0.08, 0.08).map(lambda r: round(max(0.0, related_to * (1 + r)), 2))
    return st.one_of(free, st.just(related_to), near)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[TrendSignals, Forecast]:
    count = draw(_count())
    previous = draw(_count(related_to=count))
    mean = draw(st.one_of(st.just(0.0), _count(related_to=count)))
    rank = draw(st.one_of(st.none(), st.integers(1, 200))) if count > 0 else None
    previous_rank = draw(st.one_of(st.none(), st.integers(1, 200), st.just(rank) if rank else st.none()))
    category = draw(st.sampled_from(CATEGORIES))
    category_previous = draw(_count())
    category_now = count + draw(_count(related_to=category_previous))
    users = draw(st.integers(0, max(0, int(count))))
    predicted = draw(_count(related_to=count))
    return make_signals(count, previous, mean, rank, previous_rank, category, category_now, category_previous, users,
                        predicted, title=draw(st.sampled_from(TITLES)))


def sentences(text: str, signals: TrendSignals) -> list[str]:
    return split_sentences(text, keep_whole=[name for name in (signals.category, signals.title) if name])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 5))
def test_composed_explanations_verify(scenario: tuple[TrendSignals, Forecast], variant: int) -> None:
    signals, forecast = scenario
    text = compose(signals, forecast, variant)
    result = check(text, signals, forecast)
    failed = [claim.reason for claim in result.claims if not claim.verified]
    assert 1 <= len(sentences(text, signals)) <= 3, text
    assert result.all_verified and result.precision == 1.0, (text, failed)
    assert result.forecast_agrees is True, text
    assert result.unverifiable == (), (text, result.unverifiable)
    assert {"change", "forecast"} <= {claim.kind for claim in result.claims}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_stated_facts_each_verify_and_cover_every_available_kind(scenario: tuple[TrendSignals, Forecast]) -> None:
    """Prompt format 2's cue lists these facts: each must be a verified claim, and together they state every kind
    of claim the composer could make (so the model never has to compute a fact)."""
    signals, forecast = scenario
    facts = stated_facts(signals, forecast)
    kinds = set()
    for fact in facts:
        result = check(fact, signals, forecast)
        assert result.claims and result.all_verified, (fact, [c.reason for c in result.claims if not c.verified])
        kinds |= {claim.kind for claim in result.claims}
    assert kinds >= available_kinds(signals) - ({"rank"} if signals.rank is None else set()), (facts, kinds)
    whole = check("; ".join(facts) + ".", signals, forecast)
    assert whole.all_verified, [c.reason for c in whole.claims if not c.verified]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 5))
def test_every_counterfactual_fails(scenario: tuple[TrendSignals, Forecast], variant: int) -> None:
    signals, forecast = scenario
    for kind in COUNTERFACTUAL_KINDS:
        text = counterfactual(signals, forecast, kind, variant)
        result = check(text, signals, forecast)
        assert not result.all_verified and result.precision < 1.0, (kind, text)
        if kind == "flip_forecast":
            assert result.forecast_agrees is False, text


def test_counterfactuals_change_one_claim_only() -> None:
    signals, forecast = make_signals()
    truth = compose(signals, forecast)
    texts = {kind: counterfactual(signals, forecast, kind) for kind in COUNTERFACTUAL_KINDS}
    assert texts["flip_direction"].startswith("Down 40% from 10 to 14 interactions")
    assert texts["wrong_rank"] != truth and "#8" in texts["wrong_rank"]
    assert "expected to fall" in texts["flip_forecast"]
    for text in texts.values():
        failing = [claim for claim in check(text, signals, forecast).claims if not claim.verified]
        assert len(failing) >= 1 and {claim.kind for claim in failing} <= set(CLAIM_KINDS)
    with pytest.raises(ValueError, match="unknown counterfactual kind"):
        counterfactual(signals, forecast, "make_it_up")


def test_wrong_rank_without_a_rank_flips_the_direction() -> None:
    signals, forecast = make_signals(rank=None, previous_rank=None)
    assert counterfactual(signals, forecast, "wrong_rank") == counterfactual(signals, forecast, "flip_direction")


def test_hand_written_true_sentence_verifies() -> None:
    signals, forecast = make_signals()
    result = check("Interactions rose 40% from 10 to 14, and it now ranks #3, up 4 places.", signals, forecast)
    assert result.all_verified and result.precision == 1.0
    assert {claim.kind for claim in result.claims} == {"change", "rank", "rank_move"}
    assert result.forecast_agrees is None


def test_false_direction_fails_with_expected_and_found() -> None:
    signals, forecast = make_signals()
    result = check("Interest is down 50% this week.", signals, forecast)
    (claim,) = result.claims
    assert claim.kind == "change" and not claim.verified and not result.all_verified
    assert "expected" in claim.reason and "found 'is down 50%'" in claim.reason and "+40.0%" in claim.reason


def test_rank_claim_without_a_rank_is_unverified() -> None:
    signals, forecast = make_signals(rank=None, previous_rank=None)
    result = check("It is #3 on the board this window.", signals, forecast)
    assert [(claim.kind, claim.verified) for claim in result.claims] == [("rank", False)]
    assert "not on the board" in result.claims[0].reason


def test_text_without_claims_is_unverifiable() -> None:
    signals, forecast = make_signals()
    result = check("This is a lovely mug. People like it!", signals, forecast)
    assert result.claims == ()
    assert result.unverifiable == ("This is a lovely mug.", "People like it!")
    assert result.precision == 1.0 and not result.all_verified and result.forecast_agrees is None
    assert result.coverage == 0.0 and result.verified_count == 0


@settings(max_examples=300, deadline=None)
@given(st.text(), scenarios())
def test_any_text_never_raises(text: str, scenario: tuple[TrendSignals, Forecast]) -> None:
    result = check(text, *scenario)
    assert 0.0 <= result.precision <= 1.0 and 0.0 <= result.coverage <= 1.0


@pytest.mark.parametrize("text", [
    "", "   ", "...", "1.2.3 ## 99999999999999999999999999999999999999% x", "٣٤ → ٥", "#", "#0.", "~%",
    "up " + "9" * 400 + "% from " + "1" * 400 + " to 2", "\x00\ue000\ue001 category", "No. e.g. vs. 2.1x.",
    "It will, it will, it will.", "top-99999999999999999999999 " * 50,
])
def test_garbage_never_raises(text: str) -> None:
    signals, forecast = make_signals()
    check(text, signals, forecast)
    check(text, *make_signals(rank=None, previous_rank=None, category=None, count=0.0, previous_count=0.0,
                              long_term_mean=0.0, distinct_users=0))


def test_at_least_three_distinct_phrasings() -> None:
    signals, forecast = make_signals()
    texts = {compose(signals, forecast, variant) for variant in range(6)}
    assert len(texts) >= 3
    assert compose(signals, forecast, 4) == compose(signals, forecast, 4)  # deterministic


def test_composed_example_reads_well() -> None:
    signals, forecast = make_signals()
    assert compose(signals, forecast, 0) == (
        "Up 40% from 10 to 14 interactions, from 12 distinct users. It ranks #3 this window, up 4 places, and it is "
        "at 2.1x its usual level. It is expected to keep rising next window.")


@pytest.mark.parametrize(("current", "predicted", "direction"), [
    (10, 11.5, "steady"), (10, 11.51, "rise"), (10, 8.5, "steady"), (10, 8.49, "fall"), (0, 0.5, "steady"),
    (0, 0.6, "rise"), (100, 110, "steady"), (100, 111, "rise"), (100, 89, "fall"),
])
def test_forecast_direction_band(current: float, predicted: float, direction: str) -> None:
    assert forecast_direction(current, predicted) == direction


def test_sentence_splitting_keeps_decimals_ranks_and_names() -> None:
    assert split_sentences("It is 2.1x its usual level. It ranks #3. Expected to rise!") == [
        "It is 2.1x its usual level.", "It ranks #3.", "Expected to rise!"]
    assert split_sentences("Ranked No. 3 vs. last week, e.g. up 40%.\nNext: 14.5 interactions") == [
        "Ranked No. 3 vs. last week, e.g. up 40%.", "Next: 14.5 interactions"]
    assert split_sentences('Its "U.S. Stationery" category is rising. Fine.', keep_whole=["U.S. Stationery"]) == [
        'Its "U.S. Stationery" category is rising.', "Fine."]
    assert split_sentences("") == []


VERIFIED_PARAPHRASES = [
    "Interactions jumped 40 percent week over week (10 -> 14).",
    "It went up from 10 to 14 interactions.",
    "14 interactions this window versus 10 interactions last window.",
    "Activity grew by about 40%, with 12 unique users engaging.",
    "More than twice its typical level, and it climbed four spots to No. 3.",
    "It is well above its long-term average of 6.",
    "It ranks 3rd this week, in the top 10.",
    "The model predicts further growth next window.",
    "More growth is expected.",
    "Demand in the books category is rising.",
    "The Books category as a whole is up 25%.",
    "It is not expected to fall next window.",
    "A 40% increase on the previous window.",
    "This item jumped from #7 to #3 on the leaderboard.",
    "It climbed to No. 3 and ranks third overall.",
]
FALSE_PARAPHRASES = [
    ("Interactions halved.", "change"),
    ("It fell to 3 interactions.", "change"),
    ("Interactions were unchanged.", "change"),
    ("It is up 400%.", "change"),
    ("It is 5x its usual level.", "level"),
    ("It is below its usual level.", "level"),
    ("It dropped 2 places.", "rank_move"),
    ("It is new on the board.", "rank_move"),
    ("It holds the top spot.", "rank"),
    ("It ranks fourth.", "rank"),
    ("It fell to #3.", "rank_move"),
    ("Forecasts point to a decline.", "forecast"),
    ("It is expected to level off.", "forecast"),
    ("The Toys category is rising.", "category"),
    ("The books category is shrinking.", "category"),
    ("Bought by 40 distinct users.", "breadth"),
    ("Over 20 customers bought it.", "breadth"),
]


@pytest.mark.parametrize("text", VERIFIED_PARAPHRASES)
def test_paraphrases_of_true_claims_verify(text: str) -> None:
    signals, forecast = make_signals()
    result = check(text, signals, forecast)
    assert result.all_verified, [claim.reason for claim in result.claims] or result.unverifiable


@pytest.mark.parametrize(("text", "kind"), FALSE_PARAPHRASES)
def test_paraphrases_of_false_claims_fail(text: str, kind: str) -> None:
    signals, forecast = make_signals()
    failing = [claim for claim in check(text, signals, forecast).claims if not claim.verified]
    assert [claim.kind for claim in failing] == [kind], check(text, signals, forecast)


def test_forecast_agreement_and_coverage() -> None:
    signals, forecast = make_signals()
    assert check("Expected to keep rising.", signals, forecast).forecast_agrees is True
    assert check("Expected to fall next window.", signals, forecast).forecast_agrees is False
    assert available_kinds(signals) == frozenset(CLAIM_KINDS)
    result = check(compose(signals, forecast), signals, forecast)
    covered = {"change", "breadth", "rank", "rank_move", "level", "forecast"}
    assert result.coverage == pytest.approx(len(covered) / len(CLAIM_KINDS))
    bare, bare_forecast = make_signals(rank=None, previous_rank=None, category=None, long_term_mean=0.0,
                                       distinct_users=0)
    assert available_kinds(bare) == {"change", "forecast"}
    assert check(compose(bare, bare_forecast), bare, bare_forecast).coverage == 1.0


def test_steady_words_use_the_band_and_no_change_means_equal() -> None:
    signals, forecast = make_signals(count=105.0, previous_count=100.0)
    assert check("Roughly steady at 105 interactions.", signals, forecast).all_verified
    assert check("Up 5% from 100 to 105.", signals, forecast).all_verified
    assert not check("No change this window.", signals, forecast).all_verified
    same, same_forecast = make_signals(count=100.0, previous_count=100.0)
    assert check("No change this window.", same, same_forecast).all_verified
    assert not check("It rose this window.", same, same_forecast).all_verified
    near, near_forecast = make_signals(count=37.0, previous_count=35.0)
    for exact in ("37 interactions this window, the same number as the previous window.",
                  "37 interactions this window, the same as the previous window.", "Interactions were unchanged."):
        assert not check(exact, near, near_forecast).all_verified, exact
    assert check("Interactions were roughly steady, from 35 to 37.", near, near_forecast).all_verified
    assert check("37 interactions this window, the same number as the previous window.", same, same_forecast
                 ).all_verified is False  # 100 -> 100: the count is wrong
    assert check("100 interactions this window, the same number as the previous window.", same, same_forecast
                 ).all_verified


GRAMMAR_WORDS = ["up", "down", "from", "to", "#3", "No.", "4", "0", "2.1x", "40%", "-12%", "places", "spots", "higher",
                 "the", "top", "spot", "10", "new", "on", "board", "off", "same", "place", "expected", "will", "not",
                 "rise", "fall", "steady", "category", "Books", '"Toys"', "in", "its", "usual", "level", "of", "times",
                 "twice", "above", "below", "(1.0x)", "distinct", "users", "one", "a single", "more than", "about",
                 "doubled", "halved", "->", "→", "previous", "interactions", "last", "window", "unchanged", "at",
                 "rose", "fell", "is", "no longer", ",", ";", ".", "3rd", "ranked", "top-5", "growth", "decline"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(GRAMMAR_WORDS), max_size=30).map(" ".join), scenarios())
def test_grammar_shaped_garbage_never_raises(text: str, scenario: tuple[TrendSignals, Forecast]) -> None:
    result = check(text, *scenario)
    assert all(claim.kind in (*CLAIM_KINDS, UNREAD_NUMBER) and claim.reason for claim in result.claims)


def test_a_bare_number_after_a_change_verb_is_the_size_of_the_change() -> None:
    """Seen in `make run`: "Interactions rose 0" for 0 -> 62 read as no claim. It is one, and false."""
    signals, forecast = make_signals(count=62.0, previous_count=0.0)
    assert not check("Interactions rose 0, among 33 unique users.", signals, forecast).all_verified
    assert check("Interactions rose 62, among 12 unique users.", signals, forecast).all_verified
    signals, forecast = make_signals(count=14.0, previous_count=10.0)
    assert check("Interactions rose by 4.", signals, forecast).all_verified
    assert not check("Interactions fell by 4.", signals, forecast).all_verified


def test_a_percent_change_from_a_rank_is_not_a_rank_move() -> None:
    """A constrained sample wrote "up 200% from #30" for 1 -> 3 interactions, #30 -> #7: the change and the previous
    rank both true, the sentence saying the count grew from 30. After a percent, "from #30" is the start of the change
    (a rank there is the wrong number), not the rank move "up from #30"."""
    signals, forecast = make_signals(count=3.0, previous_count=1.0, rank=7, previous_rank=30)
    assert not check("3 interactions this window, up 200% from #30.", signals, forecast).all_verified
    assert check("3 interactions this window, up 200%. It climbed from #30 to #7.", signals, forecast).all_verified


def test_a_percent_change_from_the_previous_count_is_read_and_both_numbers_checked() -> None:
    """The Stack Exchange model's commonest paraphrase of "down 36% from 11 to 7 interactions": "7 interactions this
    window, down 36% from 11", true but unread ("11" matched no rule) until the percent rule took "from 11" as the
    previous count. Both numbers are checked, and a "from 11 to 7" after the percent stays the counts rule's."""
    signals, forecast = make_signals(count=7.0, previous_count=11.0)
    assert check("7 interactions this window, down 36% from 11.", signals, forecast).all_verified
    assert check("Down 36%, from 11.", signals, forecast).all_verified
    assert check("It fell 36% from 11 to 7 interactions.", signals, forecast).all_verified
    for wrong in ("7 interactions this window, down 36% from 12.", "7 interactions this window, up 36% from 11.",
                  "7 interactions this window, down 50% from 11.", "It fell 36% from 11 to 8 interactions."):
        assert not check(wrong, signals, forecast).all_verified, wrong


def test_level_out_is_a_steady_forecast() -> None:
    """Banned from writing "level off" after a cue for a forecast fall, a constrained sample wrote "It is expected to
    level out next window", which no rule read as a claim: it is the same steady forecast, and false here."""
    signals, forecast = make_signals(count=5.0, previous_count=27.0)
    falling = Forecast(predicted_count=2.8, score=1.3)
    for steady in ("It is expected to level out next window.", "It is expected to even out next window."):
        assert not check(steady, signals, falling).all_verified, steady
    assert check("It is expected to fall next window.", signals, falling).all_verified


def test_a_number_no_rule_reads_is_an_unverified_claim() -> None:
    """Published as the model's in an earlier release: "it sits at 44" (44 is the count, said as nothing the checker
    reads). A number the checker cannot tie to a signal makes the text unverified; the rest is still judged."""
    signals, forecast = make_signals(count=44.0, previous_count=40.0)
    result = check("44 interactions this window, from 12 unique users, it sits at 44.", signals, forecast)
    unread = [claim for claim in result.claims if claim.kind == UNREAD_NUMBER]
    assert [claim.text for claim in unread] == ["44"] and not unread[0].verified
    assert not result.all_verified and result.verified_count == len(result.claims) - 1
    assert check("44 interactions this window, from 12 unique users.", signals, forecast).all_verified
    # a title or category holding digits is masked, not read as a number
    titled = TrendSignals(signals.item, "Top 10 recipes", "Toys 3+", signals.rank, signals.previous_rank,
                          signals.category_count, signals.category_previous_count)
    assert check('Top 10 recipes: 44 interactions this window; its "Toys 3+" category is rising.', titled,
                 forecast).all_verified


def test_a_numeric_item_id_masks_no_number_of_the_text() -> None:
    """Stack Exchange and MovieLens ids are bare numbers: masking id "14" blanked the count 14 (and the "14" of
    "14.2x"), so a false number went unread, or the unread-number rule failed the composer's own text."""
    signals, forecast = make_signals(count=14.0, previous_count=10.0)
    numbered = TrendSignals(dataclasses.replace(signals.item, item_id="14"), "", signals.category, signals.rank,
                            signals.previous_rank, signals.category_count, signals.category_previous_count)
    for variant in range(PHRASINGS):
        result = check(compose(numbered, forecast, variant), numbered, forecast)
        assert result.all_verified, result.claims
    assert not check("14 interactions this window, it sits at 14.", numbered, forecast).all_verified


def test_a_rank_move_from_the_previous_rank_checks_the_places_too() -> None:
    """The Stack Exchange model shortened the facts' "down 3 places from #4" to "down 3 from #4": true, but the 3 was
    read by no rule. Both the places and the previous rank are checked."""
    signals, forecast = make_signals(rank=7, previous_rank=4)
    assert check("It ranks #7 this window, down 3 from #4.", signals, forecast).all_verified
    assert check("It ranks #7 this window, down 3 places from #4.", signals, forecast).all_verified
    for wrong in ("It ranks #7 this window, down 2 from #4.", "It ranks #7 this window, up 3 from #4.",
                  "It ranks #7 this window, down 3 from #5."):
        assert not check(wrong, signals, forecast).all_verified, wrong
