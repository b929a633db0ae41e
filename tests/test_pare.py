"""The PARE-style forecaster on a synthetic world where every item's count doubles each window."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from trail.signals import TrendConfig, TrendSignals
from training.baselines import Forecaster
from training.pare import MODULE_NAMES, Pare, age_buckets, category_buckets, window_batches

from .test_baselines import make_signals

CONFIG = TrendConfig()
WINDOWS = 6


def doubling_world(items: int, seed: int, prefix: str) -> list[tuple[TrendSignals, float]]:
    """``items`` items with random starting counts, each doubling every window: (signals at t, count at t + 1)."""
    rng = np.random.default_rng(seed)
    bases = rng.uniform(0.5, 40.0, size=items).round(1)
    pairs = []
    for window in range(WINDOWS):
        counts = bases * 2.0**window
        ranks = np.argsort(np.argsort(-counts)) + 1
        for item, base in enumerate(bases):
            history = [base * 2.0**t for t in range(window + 1)]
            signals = make_signals(history, item_id=f"{prefix}{item}", category=("toys", "books", None)[item % 3],
                                   rank=int(ranks[item]) if ranks[item] <= 20 else None)
            pairs.append((signals, base * 2.0 ** (window + 1)))
    return pairs


@pytest.fixture(scope="module")
def fitted() -> tuple[Pare, list[tuple[TrendSignals, float]]]:
    model = Pare(seed=3, epochs=40, batch_size=32)
    model.fit(doubling_world(40, seed=0, prefix="train-"))
    return model, doubling_world(15, seed=1, prefix="held-out-")


def test_is_a_forecaster() -> None:
    assert isinstance(Pare(), Forecaster)
    assert Pare().name == "pare"


def test_predictions_follow_the_doubling_on_held_out_items(fitted: tuple[Pare, list]) -> None:
    model, held_out = fitted
    predicted = model.predict([s for s, _ in held_out])
    truth = np.array([label for _, label in held_out])
    assert predicted.shape == truth.shape
    assert np.all(np.isfinite(predicted)) and np.all(predicted >= 0)
    assert spearmanr(predicted, truth).statistic > 0.9


def test_the_same_seed_gives_the_same_predictions() -> None:
    train = doubling_world(12, seed=5, prefix="item-")
    signals = [s for s, _ in train]
    first, second = Pare(seed=7, epochs=3), Pare(seed=7, epochs=3)
    first.fit(train)
    second.fit(train)
    np.testing.assert_array_equal(first.predict(signals), second.predict(signals))


def test_fit_and_predict_restore_the_thread_count_and_the_global_rng(fitted: tuple[Pare, list]) -> None:
    model, held_out = fitted
    before_threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Pare(seed=1, epochs=1, threads=1).fit(held_out)
    model.predict([s for s, _ in held_out])
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.rand(3), expected)


def test_use_before_fit_raises() -> None:
    signals = [s for s, _ in doubling_world(2, seed=0, prefix="x")]
    with pytest.raises(RuntimeError):
        Pare().predict(signals)
    with pytest.raises(RuntimeError):
        Pare().attention_weights(signals)


def test_fit_rejects_bad_training_sets() -> None:
    with pytest.raises(ValueError):
        Pare().fit([])
    signals, _ = doubling_world(1, seed=0, prefix="x")[0]
    with pytest.raises(ValueError):
        Pare().fit([(signals, -1.0)])


def test_empty_inputs_give_empty_arrays(fitted: tuple[Pare, list]) -> None:
    model, _ = fitted
    assert model.predict([]).shape == (0,)
    assert model.attention_weights([]).shape == (0, len(MODULE_NAMES))


def test_attention_weights_are_a_distribution_over_the_modules(fitted: tuple[Pare, list]) -> None:
    model, held_out = fitted
    weights = model.attention_weights([s for s, _ in held_out])
    assert weights.shape == (len(held_out), 3)
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_category_buckets_are_stable_and_reserve_zero_for_none() -> None:
    buckets = category_buckets(["toys", None, "books", "toys"], 64)
    assert buckets[1] == 0 and buckets[0] == buckets[3]
    assert np.all((buckets[[0, 2]] >= 1) & (buckets[[0, 2]] < 64))
    assert buckets[0] == 1 + int.from_bytes(hashlib.md5(b"toys").digest()[:8], "big") % 63


def test_age_buckets_are_log2() -> None:
    assert age_buckets(np.array([0, 1, 2, 3, 6, 7, 1000])).tolist() == [0, 1, 1, 2, 2, 3, 7]


def test_window_batches_hold_one_window_each_and_cover_every_row() -> None:
    windows = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    batches = list(window_batches(windows, 2, np.random.default_rng(0)))
    assert all(len(set(windows[b].tolist())) == 1 and len(b) <= 2 for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(windows)))
