"""Refitting the score head on frozen prompt states: the kept epoch is the best on validation windows (the head as
it came included, so a refit that helps nowhere keeps it), the checkpoint written back scores exactly that, and
nothing but the score head moves."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from trail.errors import ConfigError
from training.examples import temporal_split
from training.head_refit import HeadRefitConfig, _training_pool, prompt_states, refit_score_head, save_refit
from training.model import TrailModel, head_inputs
from training.train import candidate_pool

from .test_model import TINY, _examples


@pytest.fixture(scope="module")
def split():
    return temporal_split(_examples(n_items=14, hours=12), validation=0.25, test=0.25)


def test_the_kept_epoch_is_the_best_on_validation_and_the_checkpoint_scores_it(split, tmp_path: Path) -> None:
    model = TrailModel.create(TINY)
    model.save(tmp_path)
    (tmp_path / "training_metadata.json").write_text(json.dumps({"dataset_key": "csv"}) + "\n")
    lm_before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    projection_before = model.signal_projection.weight.clone()
    config = HeadRefitConfig(epochs=6, batch_size=8, candidates=10, per_window=10)
    result = refit_score_head(model, split.train, split.validation, config, log=lambda _: None)

    assert len(result.validation_ndcg20) == config.epochs + 1
    assert result.validation_ndcg20[result.chosen_epoch] == max(result.validation_ndcg20)
    assert result.validation_ndcg20[:result.chosen_epoch].count(max(result.validation_ndcg20)) == 0  # earliest best
    assert all(torch.equal(v, lm_before[k]) for k, v in model.lm.state_dict().items())
    assert torch.equal(model.signal_projection.weight, projection_before)

    save_refit(model, tmp_path, result, config, "trail refit-head test")
    reloaded = TrailModel.load(tmp_path)
    validation = list(split.validation)
    np.testing.assert_allclose(reloaded.predict_log_counts([e.signals for e in validation]),
                               model.predict_log_counts([e.signals for e in validation]), rtol=0, atol=1e-5)
    recorded = json.loads((tmp_path / "training_metadata.json").read_text())
    assert recorded["dataset_key"] == "csv" and recorded["head_refit"]["chosen_epoch"] == result.chosen_epoch


def test_per_window_zero_trains_on_every_candidate_in_the_datas_own_mix(split) -> None:
    every = HeadRefitConfig(candidates=10, per_window=0, max_train_examples=None)
    assert _training_pool(split.train, every) == candidate_pool(split.train, 10)
    balanced = _training_pool(split.train, replace(every, per_window=4))
    per_window = Counter(e.window_index for e in balanced)
    assert max(per_window.values()) == 4 and len(balanced) < len(_training_pool(split.train, every))


def test_prompt_states_are_the_hidden_state_the_score_head_reads(split) -> None:
    model = TrailModel.create(TINY).eval()
    chosen = list(split.validation[:5])
    states = prompt_states(model, chosen, batch_size=2)
    with torch.no_grad():
        direct = model.predict_log_counts([e.signals for e in chosen])
        from_states = model.score_head(*states.rows(np.arange(len(chosen)))).numpy()
    np.testing.assert_allclose(from_states, direct, rtol=0, atol=1e-5)


def test_checkpoints_that_share_their_llm_share_prompt_states_in_the_evaluation(split, tmp_path: Path) -> None:
    """A refit and the head it replaced: one set of forward passes scores both, each with its own head, exactly as
    each checkpoint alone would; a checkpoint with another adapter computes its own."""
    from training.llm_forecasters import TrailForecaster

    model = TrailModel.create(TINY)
    model.save(tmp_path / "before")
    with torch.no_grad():
        model.score_head.mlp[2].bias.fill_(0.5)  # another head on the same LLM
    model.save(tmp_path / "after")
    other = TrailModel.create(TINY)
    with torch.no_grad():  # another adapter: another LLM
        next(p for n, p in other.lm.named_parameters() if "lora_B" in n).add_(0.01)
    other.save(tmp_path / "other")
    window = [e.signals for e in split.test if e.window_index == split.test[0].window_index]
    forecasters = [TrailForecaster(candidates=5, checkpoint=tmp_path / name, label=name)
                   for name in ("before", "after", "other")]
    for forecaster in forecasters:
        forecaster.fit([])
        alone = TrailModel.load(forecaster.checkpoint).predict_counts(window)
        predicted = forecaster._llm_counts(window)
        np.testing.assert_allclose(predicted, alone, rtol=1e-5, atol=1e-5)
    assert [f.states_reused for f in forecasters] == [0, len(window), 0]
    assert not np.allclose(forecasters[0]._llm_counts(window), forecasters[1]._llm_counts(window))


def test_cached_prompt_states_skip_the_forward_passes_and_are_keyed_by_the_llm(split, tmp_path: Path) -> None:
    model = TrailModel.create(TINY).eval()
    chosen = list(split.validation[:6])
    forwards = []
    compute = model.prompt_states
    model.prompt_states = lambda prompts, batch_size: forwards.append(len(prompts)) or compute(prompts, batch_size)
    first = prompt_states(model, chosen, batch_size=3, cache=tmp_path, llm_key="llm-a")
    again = prompt_states(model, chosen, batch_size=3, cache=tmp_path, llm_key="llm-a")
    other_llm = prompt_states(model, chosen, batch_size=3, cache=tmp_path, llm_key="llm-b")
    other_items = prompt_states(model, chosen[:4], batch_size=3, cache=tmp_path, llm_key="llm-a")
    assert forwards == [6, 6, 4]  # the second call read the cache; another LLM or other prompts computed their own
    assert torch.equal(first.hidden, again.hidden) and torch.equal(first.hidden, other_llm.hidden)
    torch.testing.assert_close(other_items.hidden, first.hidden[:4], rtol=0, atol=1e-5)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3 and not list(tmp_path.glob("*.partial"))


def test_a_cosine_schedule_with_hidden_noise_is_reproducible_and_still_keeps_the_best_epoch(split) -> None:
    config = HeadRefitConfig(epochs=4, batch_size=8, candidates=10, per_window=10, schedule="cosine",
                             hidden_noise=0.5)
    results, heads = [], []
    for _ in range(2):
        model = TrailModel.create(TINY)
        results.append(refit_score_head(model, split.train, split.validation, config, log=lambda _: None))
        heads.append(model.score_head.state_dict())
    assert results[0].validation_ndcg20 == results[1].validation_ndcg20
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert results[0].validation_ndcg20[results[0].chosen_epoch] == max(results[0].validation_ndcg20)
    quiet = refit_score_head(TrailModel.create(TINY), split.train, split.validation,
                             replace(config, hidden_noise=0.0), log=lambda _: None)
    assert quiet.validation_mae_log1p[1:] != results[0].validation_mae_log1p[1:]  # the noise reached the head
    with pytest.raises(ValueError, match="schedule must be one of"):
        refit_score_head(TrailModel.create(TINY), split.train, split.validation,
                         HeadRefitConfig(epochs=1, schedule="linear"), log=lambda _: None)


def test_the_int8_guard_scores_exactly_what_the_int8_scoring_graph_scores(tmp_path: Path) -> None:
    """The guard's shortcut (int8 prompt states once, any head on them) must be the export's own int8 check."""
    from training.export import (VERIFICATION_BATCH, export_scoring_graph, onnx_scores, score_inputs,
                                 verification_signals, verify_scores)
    from training.int8_guard import int8_guard
    from training.quantize import quantize_linear_layers

    model = TrailModel.create(TINY).eval()
    torch.nn.init.normal_(model.score_head.mlp[2].weight, std=0.5)  # a head that reads the LLM state
    signals = verification_signals()
    guard = int8_guard(model, signals, cache=tmp_path / "states", llm_key="tiny")
    assert not torch.equal(guard.int8_states, guard.fp32_states)  # the states really went through int8 MatMuls
    export_scoring_graph(model, signals[:4], tmp_path / "score.onnx")
    quantize_linear_layers(tmp_path / "score.onnx", tmp_path / "score.int8.onnx")
    graph_scores = np.concatenate([onnx_scores(tmp_path / "score.int8.onnx", score_inputs(model, signals[i: i + VERIFICATION_BATCH]))
                                   for i in range(0, len(signals), VERIFICATION_BATCH)])
    with torch.no_grad():
        guard_scores = model.score_head(guard.int8_states, guard.features, guard.current_log).numpy()
    np.testing.assert_allclose(guard_scores, graph_scores, rtol=0, atol=1e-4)
    export_check = verify_scores(model, tmp_path / "score.int8.onnx", signals, tolerance=float("inf"))
    assert guard.spearman(model.score_head) == pytest.approx(export_check.spearman, abs=1e-9)
    again = int8_guard(model, signals, cache=tmp_path / "states", llm_key="tiny")  # read back, not re-exported
    assert torch.equal(again.int8_states, guard.int8_states) and len(list((tmp_path / "states").glob("*"))) == 2


def test_with_an_int8_guard_only_epochs_that_pass_it_can_be_kept(split) -> None:
    from training.int8_guard import Int8Guard

    config = HeadRefitConfig(epochs=6, batch_size=8, candidates=10, per_window=10, learning_rate=1e-2)
    signals = [e.signals for e in split.validation[:24]]
    states = prompt_states(TrailModel.create(TINY), split.validation[:24]).hidden
    noisy = states + 0.5 * states.std() * torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    lenient = Int8Guard(states, noisy, *head_inputs(signals), min_spearman=-1.0)  # every epoch passes

    free = refit_score_head(_scrambled(), split.train, split.validation, config, log=lambda _: None, guard=lenient)
    assert free.int8_spearman is not None and len(free.int8_spearman) == config.epochs + 1
    assert free.chosen_epoch > 0 and len(set(free.int8_spearman)) > 1
    bar = free.int8_spearman[free.chosen_epoch] + 1e-6  # the unguarded choice now fails
    strict = refit_score_head(_scrambled(), split.train, split.validation, config, log=lambda _: None,
                              guard=replace(lenient, min_spearman=bar))
    assert strict.validation_ndcg20 == free.validation_ndcg20  # the guard changes the choice, never the training
    allowed = [0] + [e for e in range(1, config.epochs + 1) if free.int8_spearman[e] >= bar]
    assert strict.chosen_epoch == max(allowed, key=lambda e: (free.validation_ndcg20[e], -e))
    assert strict.chosen_epoch != free.chosen_epoch


def test_a_confident_gain_is_one_the_bootstrap_puts_above_zero() -> None:
    from training.head_refit import confident_gain

    before = [0.70, 0.80, 0.60, 0.75, 0.65, 0.72]
    steady = [b + 0.02 for b in before]  # +0.02 on every window: beyond the noise, however resampled
    mixed = [b + d for b, d in zip(before, (0.10, -0.08, 0.09, -0.07, 0.06, -0.05))]  # +0.008 on average, by luck
    assert confident_gain(steady, before) == (True, (0.02, 0.02, 0.02))
    kept, (gain, low, high) = confident_gain(mixed, before)
    assert not kept and gain == pytest.approx(0.0083, abs=1e-4) and low < 0 < high


def test_with_confident_gain_a_refit_within_noise_keeps_the_head_as_it_came() -> None:
    split = temporal_split(_examples(n_items=14, hours=24), validation=0.25, test=0.25)  # 6 validation windows
    config = HeadRefitConfig(epochs=6, batch_size=8, candidates=10, per_window=10, learning_rate=1e-2,
                             validation_every=1)
    free = refit_score_head(TrailModel.create(TINY), split.train, split.validation, config, log=lambda _: None)
    model = TrailModel.create(TINY)
    untouched = TrailModel.create(TINY)
    careful = refit_score_head(model, split.train, split.validation, replace(config, confident_gain=True),
                               log=lambda _: None)
    assert careful.validation_ndcg20 == free.validation_ndcg20 and free.chosen_epoch > 0  # same training
    gain, low, high = careful.gain_interval
    assert gain == pytest.approx(free.validation_ndcg20[free.chosen_epoch] - free.validation_ndcg20[0], abs=2e-4)
    assert gain > 0 and low < 0 and careful.chosen_epoch == 0  # better on average, but not beyond the noise
    signals = [e.signals for e in split.validation]  # so the head as it came is back, exactly
    np.testing.assert_array_equal(model.predict_log_counts(signals), untouched.predict_log_counts(signals))
    with pytest.raises(ConfigError, match="at least 2 validation windows"):
        refit_score_head(TrailModel.create(TINY), split.train, split.validation[:1],
                         replace(config, confident_gain=True), log=lambda _: None)


def test_with_an_mae_ceiling_only_epochs_within_it_can_be_kept(split) -> None:
    config = HeadRefitConfig(epochs=6, batch_size=8, candidates=10, per_window=10, learning_rate=1e-2)

    free = refit_score_head(_scrambled(), split.train, split.validation, config, log=lambda _: None)
    assert free.chosen_epoch > 0 and len(set(free.validation_mae_log1p)) > 1
    ceiling = free.validation_mae_log1p[free.chosen_epoch] - 5e-5  # the unbounded choice now fails (MAEs: 4 decimals)
    bounded = refit_score_head(_scrambled(), split.train, split.validation, replace(config, max_mae=ceiling),
                               log=lambda _: None)
    assert bounded.validation_ndcg20 == free.validation_ndcg20  # the ceiling changes the choice, never the training
    allowed = [0] + [e for e in range(1, config.epochs + 1) if free.validation_mae_log1p[e] <= ceiling]
    assert bounded.chosen_epoch == max(allowed, key=lambda e: (free.validation_ndcg20[e], -e))
    assert bounded.chosen_epoch != free.chosen_epoch


def _scrambled() -> TrailModel:
    """A tiny model whose head ranks badly, so that later refit epochs beat epoch 0."""
    model = TrailModel.create(TINY)
    with torch.no_grad():
        model.score_head.mlp[2].weight.copy_(torch.randn(model.score_head.mlp[2].weight.shape,
                                                         generator=torch.Generator().manual_seed(2)))
    return model


def test_an_ensemble_refit_keeps_the_average_of_its_last_epoch_as_one_wider_head(split, tmp_path: Path) -> None:
    """Three heads with consecutive seeds, averaged: only their last epoch competes with the head as it came, the
    checkpoint records the wider head and reloads to the same scores, and its LLM's digest (the prompt-states key)
    does not change."""
    from training.model import llm_digest

    config = HeadRefitConfig(epochs=4, batch_size=8, candidates=10, per_window=10, learning_rate=1e-2,
                             schedule="cosine", ensemble=3)
    model = _inverted()
    model.save(tmp_path)
    digest = llm_digest(tmp_path)
    result = refit_score_head(model, split.train, split.validation, config, log=lambda _: None)
    single = refit_score_head(_inverted(), split.train, split.validation, replace(config, ensemble=1),
                              log=lambda _: None)

    assert result.validation_ndcg20[-1] > result.validation_ndcg20[0]  # the inverted head loses to the average
    assert result.chosen_epoch == config.epochs  # the last epoch, whichever epoch before it ranked best
    assert result.validation_ndcg20 != single.validation_ndcg20  # the other members moved the average
    assert model.score_head.mlp[0].out_features == 3 * TINY.head_hidden == model.config.head_hidden
    save_refit(model, tmp_path, result, config, "trail refit-head --ensemble 3 test")
    reloaded = TrailModel.load(tmp_path)
    assert reloaded.config.head_hidden == 3 * TINY.head_hidden and llm_digest(tmp_path) == digest
    signals = [e.signals for e in split.validation]
    np.testing.assert_allclose(reloaded.predict_log_counts(signals), model.predict_log_counts(signals),
                               rtol=0, atol=1e-5)


def test_an_ensemble_that_does_not_beat_the_head_as_it_came_leaves_it_alone(split) -> None:
    model = TrailModel.create(TINY)
    before = {k: v.clone() for k, v in model.score_head.state_dict().items()}
    config = HeadRefitConfig(epochs=2, batch_size=8, candidates=10, per_window=10, ensemble=2, max_mae=0.0)
    result = refit_score_head(model, split.train, split.validation, config, log=lambda _: None)
    assert result.chosen_epoch == 0  # no MAE is within a ceiling of 0
    assert model.config.head_hidden == TINY.head_hidden
    assert all(torch.equal(v, before[k]) for k, v in model.score_head.state_dict().items())


def _inverted() -> TrailModel:
    """A tiny model whose head ranks items in reverse order of this window's count (every refit beats it): its
    correction is −3 × the ``history_7`` feature, ``log1p`` of that count."""
    from trail.features import FEATURE_NAMES

    model = TrailModel.create(TINY)
    head = model.score_head
    count_column = head.norm.normalized_shape[0] + FEATURE_NAMES.index("history_7")
    with torch.no_grad():
        head.mlp[0].weight.zero_()
        head.mlp[0].bias.zero_()
        head.mlp[0].weight[0, count_column] = 1.0
        head.mlp[2].weight.zero_()
        head.mlp[2].weight[0, 0] = -3.0
    return model


def test_an_evaluation_of_the_validation_windows_reads_the_states_a_refit_stored(split, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`trail refit-head`, then `trail evaluate --windows validation` with the same states cache: every validation
    window's candidates are scored from the refit's entries, without a forward pass, to the numbers a forecaster
    without the cache computes."""
    from training import llm_forecasters
    from training.llm_forecasters import TrailForecaster
    from training.model import llm_digest

    monkeypatch.setattr(llm_forecasters, "_PROMPT_STATES", {})  # no states shared from another test's forecaster
    model = TrailModel.create(TINY)
    model.save(tmp_path / "ckpt")
    config = HeadRefitConfig(epochs=1, batch_size=8, candidates=5, per_window=0, validation_every=1)
    refit_score_head(model, split.train, split.validation, config, log=lambda _: None,
                     states_cache=tmp_path / "states", llm_key=llm_digest(tmp_path / "ckpt"))
    model.save(tmp_path / "refit")  # the refit head on the same LLM

    cached = TrailForecaster(candidates=5, checkpoint=tmp_path / "refit", states_cache=tmp_path / "states")
    cached.model.prompt_states = lambda prompts, batch_size=16: pytest.fail(f"{len(prompts)} prompts forwarded")
    cached.fit([])
    windows = sorted({e.window_index for e in split.validation})
    from_cache = [cached.predict([e.signals for e in split.validation if e.window_index == w]) for w in windows]
    assert cached.items_scored == 5 * len(windows) and cached.states_from_disk == cached.items_scored
    assert cached.states_computed == 0

    monkeypatch.setattr(llm_forecasters, "_PROMPT_STATES", {})
    computed = TrailForecaster(candidates=5, checkpoint=tmp_path / "refit")
    computed.fit([])
    for window, predicted in zip(windows, from_cache):
        expected = computed.predict([e.signals for e in split.validation if e.window_index == window])
        np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-5)
    assert computed.states_computed == computed.items_scored and computed.llm_items_per_second > 0


def test_a_states_entry_is_keyed_by_the_set_of_prompts_and_read_back_in_each_callers_order(tmp_path: Path) -> None:
    import doctest

    from training import state_cache
    from training.state_cache import cached_rows

    assert doctest.testmod(state_cache).failed == 0  # training/ is outside the doctest paths
    stored = cached_rows(tmp_path, "llm-a", ["b", "a"], lambda ps: torch.tensor([[float(ord(p))] for p in ps]))
    assert stored.squeeze(1).tolist() == [98.0, 97.0]
    never = lambda ps: pytest.fail(f"{ps} computed again")  # noqa: E731
    assert cached_rows(tmp_path, "llm-a", ["a", "b", "a"], never).squeeze(1).tolist() == [97.0, 98.0, 97.0]
    assert cached_rows(tmp_path, "llm-b", ["a"], lambda ps: torch.zeros((1, 1))).tolist() == [[0.0]]  # another LLM
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".safetensors"] * 2  # no temporary file left
