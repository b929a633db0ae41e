"""The window metrics against values worked out by hand on tiny lists, plus properties that must hold for any input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from training.metrics import (
    AtK,
    WindowMetrics,
    acceleration_at_k,
    average,
    average_ranks,
    mae_log1p,
    ndcg_at_k,
    normalised_acceleration_at_k,
    random_acceleration_at_k,
    recall_at_k,
    rmse_log1p,
    spearman,
    top_k,
    window_metrics,
)

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


# -- regression on log1p --------------------------------------------------------------------------------------
def test_mae_and_rmse_log1p_by_hand() -> None:
    # pred [0, 1, 3, -2] → clipped [0, 1, 3, 0] → log1p [0, ln2, ln4, 0]
    # true [1, 0, 3, 0]                          → log1p [ln2, 0, ln4, 0]
    # errors [-ln2, ln2, 0, 0]: MAE = 2·ln2 / 4 = ln2 / 2; RMSE = sqrt(2·ln2² / 4) = ln2 / sqrt(2)
    pred, true = [0, 1, 3, -2], [1, 0, 3, 0]
    assert mae_log1p(pred, true) == pytest.approx(LN2 / 2)
    assert rmse_log1p(pred, true) == pytest.approx(LN2 / math.sqrt(2))


def test_log1p_errors_are_zero_for_a_perfect_prediction_and_for_all_zero_truth_predicted_as_zero() -> None:
    assert mae_log1p([0, 5, 2], [0, 5, 2]) == 0.0
    assert rmse_log1p([0, 0], [0, 0]) == 0.0
    # negative predictions count as 0: log1p(0) − log1p(0) = 0
    assert mae_log1p([-3, -1], [0, 0]) == 0.0


def test_regression_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        mae_log1p([1, 2], [1])
    with pytest.raises(ValueError, match="no items"):
        rmse_log1p([], [])
    with pytest.raises(ValueError, match="non-negative"):
        mae_log1p([1], [-1])
    with pytest.raises(ValueError, match="non-finite"):
        mae_log1p([math.nan], [1])


# -- Spearman --------------------------------------------------------------------------------------------------
def test_average_ranks_give_ties_the_mean_of_their_positions() -> None:
    # sorted: 10 → position 1, 20 → 2, the three 30s → positions 3, 4, 5 → (3 + 4 + 5) / 3 = 4
    np.testing.assert_array_equal(average_ranks([30, 10, 30, 20, 30]), [4, 1, 4, 2, 4])


def test_spearman_with_ties_by_hand() -> None:
    # pred [10, 20, 20, 40] → ranks [1, 2.5, 2.5, 4] → centred [-1.5, 0, 0, 1.5], Σx² = 4.5
    # true [1, 2, 3, 4]     → ranks [1, 2, 3, 4]     → centred [-1.5, -0.5, 0.5, 1.5], Σy² = 5
    # Σxy = 2.25 + 0 + 0 + 2.25 = 4.5 → rho = 4.5 / sqrt(4.5 · 5) = sqrt(0.9)
    assert spearman([10, 20, 20, 40], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_extremes_and_constant_sides() -> None:
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert spearman([5, 5, 5], [1, 2, 3]) == 0.0  # constant prediction
    assert spearman([1, 2, 3], [0, 0, 0]) == 0.0  # all-zero truth
    assert spearman([1], [2]) == 0.0  # a single item is constant on both sides
    assert spearman([], []) == 0.0


# -- NDCG ---------------------------------------------------------------------------------------------------
def test_ndcg_by_hand() -> None:
    # ranked by score: item 0 (true 0), item 1 (true 3), item 2 (true 1); k = 2
    # DCG  = 0 / log2(2) + 3 / log2(3)
    # IDCG = 3 / log2(2) + 1 / log2(3)      (true counts sorted: 3, 1)
    expected = (3 / math.log2(3)) / (3 + 1 / math.log2(3))  # ≈ 0.5213
    assert ndcg_at_k([0.9, 0.8, 0.7], [0, 3, 1], k=2) == pytest.approx(expected)


def test_ndcg_breaks_score_ties_by_index() -> None:
    # all scores equal → order 0, 1, 2. k = 1: item 0 has gain 0 → DCG 0, IDCG 5 → 0
    assert ndcg_at_k([1, 1, 1], [0, 0, 5], k=1) == 0.0
    # k = 3: DCG = 0 + 0 + 5 / log2(4) = 2.5; IDCG = 5 / log2(2) = 5 → 0.5
    assert ndcg_at_k([1, 1, 1], [0, 0, 5], k=3) == pytest.approx(0.5)


def test_ndcg_with_k_larger_than_the_list() -> None:
    # order 0, 1: DCG = 1 / 1 + 3 / log2(3); IDCG = 3 / 1 + 1 / log2(3)
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert ndcg_at_k([2, 1], [1, 3], k=10) == pytest.approx(expected)


def test_ndcg_is_zero_when_no_item_has_a_positive_count() -> None:
    assert ndcg_at_k([3, 2, 1], [0, 0, 0], k=2) == 0.0
    assert ndcg_at_k([], [], k=5) == 0.0


def test_ranking_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k([1, 2], [1, 2], k=0)
    with pytest.raises(ValueError, match="non-negative"):
        recall_at_k([1, 2], [1, -2], k=1)
    with pytest.raises(ValueError, match="length"):
        acceleration_at_k([1, 2], [1], k=1)


def test_top_k_is_stable() -> None:
    np.testing.assert_array_equal(top_k([1, 3, 3, 2, 3], 3), [1, 2, 4])
    np.testing.assert_array_equal(top_k([1, 2], 5), [1, 0])


# -- recall -------------------------------------------------------------------------------------------------
def test_recall_by_hand() -> None:
    # predicted top-2 = {0, 1}; positives: items 1, 2, 4 → k' = min(2, 3) = 2
    # true top-2 = items 1 and 2 (both 7, tie kept in index order) → overlap {1} → 1 / 2
    assert recall_at_k([5, 4, 3, 2, 1], [0, 7, 7, 0, 1], k=2) == 0.5


def test_recall_breaks_true_ties_by_index() -> None:
    # true counts all 3 → true top-1 = item 0; predicted top-1 = item 2 → 0 / 1
    assert recall_at_k([0, 0, 1], [3, 3, 3], k=1) == 0.0


def test_recall_with_fewer_positives_than_k() -> None:
    # one positive (item 2) → k' = 1; predicted top-2 = {3, 2} holds it → 1 / 1
    assert recall_at_k([1, 2, 3, 4], [0, 0, 2, 0], k=2) == 1.0


def test_recall_with_k_larger_than_the_list_and_all_zero_truth() -> None:
    # predicted top-5 of two items = both; k' = min(5, 2) = 2 → 2 / 2
    assert recall_at_k([0, 0], [1, 2], k=5) == 1.0
    assert recall_at_k([3, 2, 1], [0, 0, 0], k=2) == 0.0


# -- acceleration -----------------------------------------------------------------------------------------
SCORES = [0.1, 0.9, 0.5, 0.3]
ACCELERATION = [4, -2, 3, 1]


def test_acceleration_at_k_by_hand() -> None:
    # predicted top-2 = items 1 (0.9) and 2 (0.5) → -2 + 3 = 1
    assert acceleration_at_k(SCORES, ACCELERATION, k=2) == 1.0
    # k beyond the list: everything → 4 - 2 + 3 + 1 = 6
    assert acceleration_at_k(SCORES, ACCELERATION, k=9) == 6.0


def test_random_acceleration_is_the_exact_expectation() -> None:
    # k · mean = 2 · (6 / 4) = 3; the 6 pairs of 4 items sum to 3 · Σ = 18 (each item in 3 pairs) → 18 / 6 = 3
    assert random_acceleration_at_k(ACCELERATION, k=2) == 3.0
    pairs = [sum(pair) for pair in itertools.combinations(ACCELERATION, 2)]
    assert sum(pairs) / len(pairs) == 3.0
    assert random_acceleration_at_k([], k=3) == 0.0


def test_normalised_acceleration_by_hand() -> None:
    # value 1 (above), oracle = 4 + 3 = 7, random = 3 → (1 − 3) / (7 − 3) = −0.5 (worse than random)
    assert normalised_acceleration_at_k(SCORES, ACCELERATION, k=2) == pytest.approx(-0.5)
    # with an explicit random value 0: (1 − 0) / (7 − 0) = 1/7
    assert normalised_acceleration_at_k(SCORES, ACCELERATION, k=2, random_value=0.0) == pytest.approx(1 / 7)
    # the oracle ranking (score = acceleration) scores 1
    assert normalised_acceleration_at_k(ACCELERATION, ACCELERATION, k=2) == pytest.approx(1.0)


def test_normalised_acceleration_is_zero_when_oracle_equals_random() -> None:
    # all equal: oracle = 2 = random = 1 · 2
    assert normalised_acceleration_at_k([3, 1, 2], [2, 2, 2], k=1) == 0.0
    # k ≥ n: every ranking picks all items, oracle = random = Σ
    assert normalised_acceleration_at_k(SCORES, ACCELERATION, k=4) == 0.0
    assert normalised_acceleration_at_k([0.1, 0.2], [0.1, 0.7], k=3) == 0.0


# -- one window, many windows -------------------------------------------------------------------------------
def test_window_metrics_by_hand() -> None:
    # current [1, 1, 1], true next [3, 0, 2] → true next acceleration [2, −1, 1]
    # score [3, 1, 2] orders items 0, 2, 1 — the true order, so every ranking metric is perfect:
    #   k=1: NDCG 3/3 = 1, recall 1/1, acceleration 2, normalised (2 − 2/3) / (2 − 2/3) = 1
    #   k=2: NDCG (3 + 2/log2 3) / (3 + 2/log2 3) = 1, recall 2/2, acceleration 3, normalised (3 − 4/3)/(3 − 4/3) = 1
    # pred count [2, 1, 1] → log1p [ln3, ln2, ln2]; true log1p [ln4, 0, ln3]
    #   |errors| = ln(4/3), ln2, ln(3/2) → sum = ln(4/3 · 2 · 3/2) = ln4 → MAE = ln4 / 3
    metrics = window_metrics([2, 1, 1], [3, 1, 2], [3, 0, 2], [1, 1, 1], ks=(1, 2))
    assert metrics.items == 3
    assert metrics.mae_log1p == pytest.approx(LN4 / 3)
    rmse = math.sqrt((math.log(4 / 3) ** 2 + LN2**2 + math.log(3 / 2) ** 2) / 3)
    assert metrics.rmse_log1p == pytest.approx(rmse)
    assert metrics.spearman == pytest.approx(1.0)
    assert metrics.at_k == (
        AtK(k=1, ndcg=pytest.approx(1.0), recall=1.0, acceleration=2.0, normalised_acceleration=pytest.approx(1.0)),
        AtK(k=2, ndcg=pytest.approx(1.0), recall=1.0, acceleration=3.0, normalised_acceleration=pytest.approx(1.0)),
    )
    assert list(metrics.as_dict()) == [
        "mae_log1p", "rmse_log1p", "spearman",
        "ndcg@1", "recall@1", "accel@1", "norm_accel@1",
        "ndcg@2", "recall@2", "accel@2", "norm_accel@2",
    ]


def test_window_metrics_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        window_metrics([1, 2], [1, 2], [1], [1])
    with pytest.raises(ValueError, match="length"):
        window_metrics([1, 2], [1], [1, 2], [1, 2])


def test_average_is_the_unweighted_mean_over_windows() -> None:
    first = WindowMetrics(items=2, mae_log1p=1.0, rmse_log1p=2.0, spearman=0.5, at_k=(AtK(5, 1.0, 0.5, 3.0, 0.2),))
    second = WindowMetrics(items=9, mae_log1p=3.0, rmse_log1p=4.0, spearman=-0.5, at_k=(AtK(5, 0.0, 1.0, -1.0, 0.4),))
    assert average([first, second]) == {
        "mae_log1p": 2.0, "rmse_log1p": 3.0, "spearman": 0.0,
        "ndcg@5": 0.5, "recall@5": 0.75, "accel@5": 1.0, "norm_accel@5": pytest.approx(0.3),
    }
    with pytest.raises(ValueError, match="no windows"):
        average([])
    other_k = WindowMetrics(items=1, mae_log1p=0.0, rmse_log1p=0.0, spearman=0.0, at_k=(AtK(10, 0, 0, 0, 0),))
    with pytest.raises(ValueError, match="different ks"):
        average([first, other_k])


# -- properties -----------------------------------------------------------------------------------------------
counts = st.integers(min_value=0, max_value=1_000)
scores = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
ks = st.integers(min_value=1, max_value=40)


@st.composite
def scored_items(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    truth = draw(st.lists(counts, min_size=1, max_size=30))
    predicted = draw(st.lists(scores, min_size=len(truth), max_size=len(truth)))
    return predicted, truth


@settings(deadline=None, max_examples=150)
@given(scored_items(), ks)
def test_ndcg_and_recall_lie_in_the_unit_interval(items: tuple[list[float], list[int]], k: int) -> None:
    predicted, truth = items
    assert 0.0 <= ndcg_at_k(predicted, truth, k) <= 1.0 + 1e-12
    assert 0.0 <= recall_at_k(predicted, truth, k) <= 1.0


@settings(deadline=None, max_examples=150)
@given(st.lists(counts, min_size=1, max_size=30), ks)
def test_a_perfect_prediction_has_ndcg_and_recall_one(truth: list[int], k: int) -> None:
    assume(any(truth))
    assert ndcg_at_k(truth, truth, k) == pytest.approx(1.0)
    assert ndcg_at_k(np.log1p(truth), truth, k) == pytest.approx(1.0)  # only the order matters
    assert recall_at_k(truth, truth, k) == 1.0


@settings(deadline=None, max_examples=150)
@given(st.lists(st.integers(min_value=-50, max_value=50), min_size=2, max_size=30), st.data())
def test_the_oracle_ranking_has_normalised_acceleration_one(acceleration: list[int], data: st.DataObject) -> None:
    assume(len(set(acceleration)) > 1)  # otherwise every ranking is as good as random
    k = data.draw(st.integers(min_value=1, max_value=len(acceleration) - 1))
    assert normalised_acceleration_at_k(acceleration, acceleration, k) == pytest.approx(1.0)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.integers(min_value=-20, max_value=20), min_size=1, max_size=7), st.data())
def test_random_acceleration_matches_the_mean_over_every_subset(acceleration: list[int], data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=1, max_value=len(acceleration)))
    subsets = [sum(subset) for subset in itertools.combinations(acceleration, k)]
    assert random_acceleration_at_k(acceleration, k) == pytest.approx(sum(subsets) / len(subsets))


@settings(deadline=None, max_examples=150)
@given(st.lists(st.integers(min_value=-1_000, max_value=1_000), min_size=2, max_size=30))
def test_spearman_of_a_strictly_increasing_transform_is_one(values: list[int]) -> None:
    assume(len(set(values)) > 1)
    transformed = [x**3 + 5 for x in values]  # exact in float64 for |x| ≤ 1000
    assert spearman(transformed, values) == pytest.approx(1.0)
    assert spearman([-x for x in transformed], values) == pytest.approx(-1.0)
