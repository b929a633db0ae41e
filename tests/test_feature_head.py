"""The "no LLM" ablation: TRAIL's score head on the features alone, with TRAIL's recipe. Untrained it predicts
"next = this window" for the candidates (zero-initialised last layer, as TRAIL's head); it scores only the
pre-ranked candidates (EMA the rest); training is deterministic and lowers the score loss on its own pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.baselines import EMA
from training.examples import temporal_split
from training.feature_head import FeatureHead
from training.llm_forecasters import candidate_positions

from .test_model import _examples

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "online-retail"


@pytest.fixture(scope="module")
def split():
    return temporal_split(_examples(n_items=14, hours=12), validation=0.2, test=0.5)


def _pairs(examples):
    return [(e.signals, e.label) for e in examples]


def test_untrained_it_is_this_window_and_it_scores_only_the_candidates(split) -> None:
    head = FeatureHead(candidates=5, steps=0)
    head.fit(_pairs(split.train))
    window = [e.signals for e in split.test if e.window_index == split.test[0].window_index]
    predicted = head.predict(window)
    chosen = set(candidate_positions(window, 5))
    ema = EMA().predict(window)
    for position, signals in enumerate(window):
        expected = signals.item.count if position in chosen else ema[position]
        assert predicted[position] == pytest.approx(expected, rel=1e-5)


def test_training_is_deterministic_and_moves_the_candidates(split) -> None:
    window = [e.signals for e in split.test]
    first, second = FeatureHead(candidates=5, steps=40), FeatureHead(candidates=5, steps=40)
    first.fit(_pairs(split.train))
    second.fit(_pairs(split.train))
    assert first.steps_trained == 40
    np.testing.assert_array_equal(first.predict(window), second.predict(window))
    untrained = FeatureHead(candidates=5, steps=0)
    untrained.fit(_pairs(split.train))
    assert not np.allclose(first.predict(window), untrained.predict(window))


def test_the_recipe_is_the_shipped_checkpoints() -> None:
    recipe = FeatureHead.recipe_of(SHIPPED)
    assert recipe is not None
    config, steps = recipe
    assert steps >= 1 and config.batch_size >= 1 and config.weights.regression > 0
    assert FeatureHead.recipe_of(SHIPPED / "no-such-folder") is None
