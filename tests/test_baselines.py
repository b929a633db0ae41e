"""Each baseline forecaster against values worked out by hand, on signals built directly from a count history."""

from __future__ import annotations

import functools
import math
from dataclasses import fields
from typing import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trail.signals import ItemTrend, ItemWindow, TrendConfig, TrendSignals
from training.baselines import (
    EMA,
    FEATURE_NAMES,
    Forecaster,
    GradientBoosting,
    HoltWinters,
    LinearTrend,
    Markov,
    MostPop,
    RandomForecaster,
    default_forecasters,
    feature_matrix,
    feature_vector,
    linear_trend_forecast,
)

CONFIG = TrendConfig()


def make_signals(
    history: Sequence[float],
    *,
    item_id: str = "item",
    forecast: float | None = None,
    distinct_users: int | None = None,
    rank: int | None = None,
    previous_rank: int | None = None,
    category_count: float = 0.0,
    category_previous_count: float = 0.0,
    category: str | None = "toys",
) -> TrendSignals:
    """The signals of an item first seen at window 0 whose counts since are ``history`` (oldest first).

    Every field follows :meth:`trail.signals.ItemTrend.close` with the default :class:`TrendConfig`: River's
    ``EWMean`` starts at the first value and then moves ``fading · (x − mean)``; ``EWVar`` is the EW mean of x² minus
    the square of the EW mean. ``forecast`` (HoltWinters) is taken as given, the current count by default.
    """
    counts = [float(x) for x in history]
    if not counts:
        raise ValueError("history needs at least the current window's count")
    fast = slow = counts[0]
    slow_square = counts[0] ** 2
    slow_mean_before = slow_std_before = 0.0
    for position, count in enumerate(counts):
        if position > 0:
            slow_mean_before = slow
            slow_std_before = math.sqrt(max(slow_square - slow**2, 0.0))
            fast += CONFIG.fast_fading * (count - fast)
            slow += CONFIG.slow_fading * (count - slow)
            slow_square += CONFIG.slow_fading * (count**2 - slow_square)
    count = counts[-1]
    previous = counts[-2] if len(counts) > 1 else 0.0
    level_before = float(np.mean(counts[:-1])) if len(counts) > 1 else 0.0
    window = ItemWindow(
        item_id=item_id,
        window_index=len(counts) - 1,
        count=count,
        history=tuple(counts[-CONFIG.history_length:]),
        previous_count=previous,
        velocity=count,
        acceleration=count - previous,
        ewm_fast=fast,
        ewm_slow=slow,
        momentum=fast / slow if slow > 0 else 1.0,
        zscore=(count - slow_mean_before) / slow_std_before if slow_std_before > 1e-12 else 0.0,
        long_term_mean=level_before,
        level_ratio=(count + 1.0) / (level_before + 1.0),
        distinct_users=int(count) if distinct_users is None else distinct_users,
        age_windows=len(counts) - 1,
        forecast=count if forecast is None else forecast,
        idle_windows=_trailing_zeros(counts),
    )
    return TrendSignals(
        item=window, title=f"title of {item_id}", category=category, rank=rank, previous_rank=previous_rank,
        category_count=category_count, category_previous_count=category_previous_count,
    )


def _trailing_zeros(counts: Sequence[float]) -> int:
    zeros = 0
    for count in reversed(counts):
        if count != 0:
            break
        zeros += 1
    return zeros


def full_history_signals(history: Sequence[float], **kwargs: object) -> TrendSignals:
    """Like :func:`make_signals`, but the history is kept whole (as with a longer ``history_length``)."""
    signals = make_signals(history, **kwargs)  # type: ignore[arg-type]
    window = signals.item
    return TrendSignals(
        item=ItemWindow(**{f.name: getattr(window, f.name) for f in fields(window)} | {"history": tuple(history)}),
        title=signals.title, category=signals.category, rank=signals.rank, previous_rank=signals.previous_rank,
        category_count=signals.category_count, category_previous_count=signals.category_previous_count,
    )


def test_the_helper_agrees_with_the_real_tracker() -> None:
    for history in ([4, 2, 6], [0, 0, 3, 9, 1, 0], [5], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]):
        trend = ItemTrend(CONFIG, first_window=0)
        for index, count in enumerate(history):
            real = trend.close("item", index, float(count), distinct_users=int(count))
        built = make_signals(history, forecast=real.forecast).item
        for name in (f.name for f in fields(ItemWindow)):
            assert getattr(built, name) == pytest.approx(getattr(real, name)), (history, name)


# -- the untrained baselines, by hand ------------------------------------------------------------------------
RISING = make_signals([2, 4, 3, 5], forecast=4.25)  # count 5, previous 3, acceleration +2


def test_most_pop_predicts_this_window_count() -> None:
    np.testing.assert_array_equal(MostPop().predict([RISING, make_signals([7, 0])]), [5.0, 0.0])


def test_markov_carries_the_acceleration_forward() -> None:
    # 5 + (5 − 3) = 7; falling [6, 1]: 1 + (1 − 6) = −4 → clipped to 0
    np.testing.assert_array_equal(Markov().predict([RISING, make_signals([6, 1])]), [7.0, 0.0])


def test_ema_by_hand() -> None:
    # newest first [5, 3, 4, 2], weights [1, 0.75, 0.5625, 0.421875]
    # Σ w·x = 5 + 2.25 + 2.25 + 0.84375 = 10.34375; Σ w = 2.734375 → ×64: 662 / 175
    assert EMA().predict([RISING])[0] == pytest.approx(662 / 175)


def test_ema_uses_only_the_last_eight_steps() -> None:
    # a ninth, oldest count of 1000 is ignored: 8 equal counts of 2 → 2
    nine = full_history_signals([1000, 2, 2, 2, 2, 2, 2, 2, 2])
    assert len(nine.item.history) == 9
    assert EMA().predict([nine])[0] == pytest.approx(2.0)


def test_linear_trend_by_hand() -> None:
    # t = 0..3, mean t 1.5; y = [2, 4, 3, 5], mean y 3.5
    # Σ(t−t̄)(y−ȳ) = 2.25 − 0.25 − 0.25 + 2.25 = 4; Σ(t−t̄)² = 5 → slope 0.8; at t = 4: 3.5 + 0.8 · 2.5 = 5.5
    assert LinearTrend().predict([RISING])[0] == pytest.approx(5.5)
    assert linear_trend_forecast([1, 2, 3]) == pytest.approx(4.0)  # an exact line goes on
    assert linear_trend_forecast([7]) == 7.0  # a single point is its own forecast
    assert linear_trend_forecast([]) == 0.0
    # [9, 5, 1] falls by 4 a window → −3, clipped to 0 by the forecaster
    assert linear_trend_forecast([9, 5, 1]) == pytest.approx(-3.0)
    assert LinearTrend().predict([make_signals([9, 5, 1])])[0] == 0.0


def test_holt_winters_returns_the_signals_forecast() -> None:
    assert HoltWinters().predict([RISING])[0] == 4.25
    trend = ItemTrend(CONFIG, first_window=0)
    for index, count in enumerate([3.0, 5.0, 8.0, 12.0]):
        window = trend.close("item", index, count)
    real = TrendSignals(window, "", None, None, None, 0.0, 0.0)
    assert HoltWinters().predict([real])[0] == window.forecast > 12.0  # a rising series is forecast to go on rising


def test_random_forecaster_is_deterministic_per_seed_and_order_free() -> None:
    items = [make_signals([i, i + 1], item_id=f"item-{i}") for i in range(20)]
    first = RandomForecaster(seed=3).predict(items)
    np.testing.assert_array_equal(first, RandomForecaster(seed=3).predict(items))
    np.testing.assert_array_equal(RandomForecaster(seed=3).predict(items[::-1]), first[::-1])
    assert not np.array_equal(first, RandomForecaster(seed=4).predict(items))
    assert np.all((first >= 0) & (first < 1))
    assert len(set(first.tolist())) == len(items)


# -- the learned baseline -----------------------------------------------------------------------------------
def test_feature_vector_layout() -> None:
    signals = make_signals([2, 4, 3, 5], forecast=4.25, rank=3, previous_rank=7, category_count=9,
                           category_previous_count=4, distinct_users=2)
    features = dict(zip(FEATURE_NAMES, feature_vector(signals)))
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == feature_vector(signals).size == 22
    # the history is left-padded to 8, newest last
    assert [features[f"history_{i}"] for i in range(8)] == [0, 0, 0, 0, 2, 4, 3, 5]
    assert features["acceleration"] == 2.0
    assert features["forecast"] == 4.25
    assert features["distinct_users"] == 2
    assert features["age_windows"] == 3
    assert features["long_term_mean"] == 3.0  # mean of 2, 4, 3
    assert features["rank"] == 3 and features["inverse_rank"] == pytest.approx(1 / 3)
    assert features["rank_change"] == 4  # climbed from 7 to 3
    assert features["category_growth"] == 2.0  # (9 + 1) / (4 + 1)


def test_feature_vector_off_the_board_and_long_histories() -> None:
    features = dict(zip(FEATURE_NAMES, feature_vector(make_signals([1, 2]))))
    assert features["rank"] == features["inverse_rank"] == features["rank_change"] == 0.0
    assert features["category_growth"] == 1.0
    long = full_history_signals(list(range(1, 11)))  # 10 counts: the newest 8 are kept
    assert feature_vector(long)[:8].tolist() == [3, 4, 5, 6, 7, 8, 9, 10]
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))


def doubling_examples(size: int, seed: int) -> list[tuple[TrendSignals, float]]:
    """Random histories whose next count is exactly twice the current one."""
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(size):
        length = int(rng.integers(1, 9))
        history = rng.integers(0, 40, size=length).astype(float).tolist()
        examples.append((make_signals(history, item_id=f"item-{seed}-{index}"), 2.0 * history[-1]))
    return examples


@functools.cache
def fitted_gradient_boosting(seed: int = 0) -> GradientBoosting:
    model = GradientBoosting(seed=seed, max_iter=100, threads=1)  # one thread: fast and quiet on a shared machine
    model.fit(doubling_examples(400, seed=1))
    return model


def test_gradient_boosting_learns_a_doubling_better_than_most_pop() -> None:
    held_out = doubling_examples(200, seed=2)
    signals = [s for s, _ in held_out]
    truth = np.array([label for _, label in held_out])
    boosted_mae = float(np.mean(np.abs(fitted_gradient_boosting().predict(signals) - truth)))
    most_pop_mae = float(np.mean(np.abs(MostPop().predict(signals) - truth)))
    assert boosted_mae < 0.25 * most_pop_mae, (boosted_mae, most_pop_mae)


def test_gradient_boosting_is_deterministic_for_a_seed() -> None:
    signals = [s for s, _ in doubling_examples(50, seed=3)]
    again = GradientBoosting(seed=0, max_iter=100, threads=1)
    again.fit(doubling_examples(400, seed=1))
    np.testing.assert_array_equal(again.predict(signals), fitted_gradient_boosting().predict(signals))


def test_gradient_boosting_refuses_to_predict_unfitted_or_fit_on_nothing() -> None:
    model = GradientBoosting()
    assert not model.fitted
    with pytest.raises(RuntimeError, match="before fit"):
        model.predict([RISING])
    with pytest.raises(ValueError, match="at least one"):
        model.fit([])
    with pytest.raises(ValueError, match="non-negative"):
        model.fit([(RISING, -1.0)])


# -- what every forecaster promises --------------------------------------------------------------------------
def every_forecaster() -> list[Forecaster]:
    untrained = [f for f in default_forecasters(seed=0) if not isinstance(f, GradientBoosting)]
    return [*untrained, fitted_gradient_boosting()]


def test_every_forecaster_speaks_the_protocol_with_a_distinct_name() -> None:
    forecasters = every_forecaster()
    assert all(isinstance(f, Forecaster) for f in forecasters)
    assert len({f.name for f in forecasters}) == len(forecasters) == 7
    for forecaster in forecasters[:-1]:
        forecaster.fit(doubling_examples(5, seed=0))  # a no-op for the untrained ones
    assert MostPop().predict([RISING])[0] == 5.0


def test_empty_input_gives_an_empty_array() -> None:
    for forecaster in every_forecaster():
        assert forecaster.predict([]).shape == (0,), forecaster.name


histories = st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=8)


@settings(deadline=None, max_examples=60)
@given(st.lists(histories, min_size=1, max_size=12), st.floats(min_value=0, max_value=1e4))
def test_every_forecaster_returns_non_negative_finite_counts_one_per_item(
    item_histories: list[list[float]], forecast: float
) -> None:
    signals = [make_signals(h, item_id=f"item-{i}", forecast=forecast, rank=i + 1 if i % 2 else None)
               for i, h in enumerate(item_histories)]
    for forecaster in every_forecaster():
        predictions = forecaster.predict(signals)
        assert predictions.shape == (len(signals),), forecaster.name
        assert predictions.dtype == np.float64
        assert np.all(np.isfinite(predictions)) and np.all(predictions >= 0), forecaster.name
