"""The evaluation's LLM plumbing: candidates like the worker, EMA for the rest, explanation metrics that catch
false claims, and per-window restriction that agrees with a direct evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trail.explain import Forecast, compose, counterfactual
from trail.tracker import prerank_score
from training.baselines import EMA, MostPop
from training.evaluate import evaluate, restrict
from training.examples import Split, temporal_split
from training.explanation_eval import ExplainedItem, evaluate_explanations
from training.llm_forecasters import TrailForecaster, candidate_positions
from training.model import TrailModel
from training.train import TrainConfig, train

from .test_model import TINY, _examples


@pytest.fixture(scope="module")
def examples():
    return _examples(n_items=14, hours=8)


def test_candidates_are_the_prerank_top(examples) -> None:
    window = [e.signals for e in examples if e.window_index == examples[-1].window_index]
    chosen = candidate_positions(window, 4)
    best = sorted((prerank_score(s.item) for s in window), reverse=True)[:4]
    assert sorted((prerank_score(window[i].item) for i in chosen), reverse=True) == best


def test_trail_forecaster_scores_candidates_and_falls_back_to_ema(examples, tmp_path: Path) -> None:
    train(TINY, TrainConfig(steps=1, batch_size=4, per_window=8), examples, tmp_path / "ckpt")
    forecaster = TrailForecaster(candidates=5, checkpoint=tmp_path / "ckpt", label="trail")
    window = [e.signals for e in examples if e.window_index == examples[-1].window_index]
    predicted = forecaster.predict(window)
    chosen = set(candidate_positions(window, 5))
    ema = EMA().predict(window)
    model = TrailModel.load(tmp_path / "ckpt")
    for position in range(len(window)):
        if position in chosen:
            assert predicted[position] == pytest.approx(model.predict_counts([window[position]])[0], rel=1e-5)
        else:
            assert predicted[position] == ema[position]
    assert forecaster.items_scored == 5


def test_explanation_metrics_reward_the_composer_and_catch_counterfactuals(examples) -> None:
    items = [ExplainedItem(e.signals, e.label + 3.0, e.label) for e in examples[-12:]]
    faithful = evaluate_explanations(
        "composer", lambda signals, counts: [compose(s, Forecast(c)) for s, c in zip(signals, counts)], items)
    assert faithful.claim_precision == 1.0 and faithful.fully_verified == 1.0 and faithful.agreement == 1.0
    assert 0 < faithful.coverage <= 1 and 0 < faithful.distinct2 <= 1
    flipped = evaluate_explanations(
        "flipped", lambda signals, counts: [counterfactual(s, Forecast(c), "flip_forecast")
                                            for s, c in zip(signals, counts)], items)
    assert flipped.agreement == 0.0 and flipped.fully_verified == 0.0 and flipped.claim_precision < 1.0
    silent = evaluate_explanations("silent", lambda signals, counts: ["Nice item." for _ in signals], items)
    assert silent.agreement == 0.0 and silent.fully_verified == 0.0 and silent.coverage == 0.0


def test_restricted_metrics_equal_a_direct_evaluation_of_those_windows(examples) -> None:
    split = temporal_split(examples, validation=0.2, test=0.4)
    results = evaluate(split, [MostPop(), EMA()])
    windows = sorted({e.window_index for e in split.test})[:1]
    direct = evaluate(Split(split.train, split.validation,
                            tuple(e for e in split.test if e.window_index in windows), split.windows),
                      [MostPop(), EMA()])
    for restricted, expected in zip(restrict(results, split, windows), direct):
        assert restricted.metrics == pytest.approx(expected.metrics)
        assert set(restricted.predictions) == set(windows)
    assert np.isfinite(results[0].metrics["ndcg@10"])
