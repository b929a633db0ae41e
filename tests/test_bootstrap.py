"""The paired bootstrap that decides whether a method "beats" another: identical methods differ by exactly zero, a
clearly better one has an interval above zero, noise straddles zero; the report section reads the per-window
metrics the evaluation keeps."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import EMA, MostPop, RandomForecaster
from training.bootstrap import paired_bootstrap
from training.evaluate import evaluate, significance_section
from training.examples import temporal_split

from .test_model import _examples


def test_intervals_separate_a_real_gap_from_noise() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.8, size=30)
    same = paired_bootstrap(base, base, resamples=2000)
    assert same.difference == same.difference_low == same.difference_high == 0.0
    assert same.low_a <= same.mean_a <= same.high_a
    better = paired_bootstrap(base + 0.05 + rng.normal(0, 0.01, 30), base, resamples=2000)
    assert better.difference_low > 0 and better.verdict() == "a better"
    assert better.verdict(higher_is_better=False) == "b better"  # e.g. an error metric: higher is worse
    noisy = paired_bootstrap(base + rng.normal(0, 0.05, 30), base, resamples=2000)
    assert noisy.difference_low < 0 < noisy.difference_high and noisy.verdict() == "within noise"
    assert paired_bootstrap(base, base[::-1], seed=3) == paired_bootstrap(base, base[::-1], seed=3)
    with pytest.raises(ValueError, match="same windows"):
        paired_bootstrap(base, base[:-1])


def test_the_report_section_compares_against_the_best_baseline_per_window() -> None:
    split = temporal_split(_examples(n_items=14, hours=12), validation=0.2, test=0.5)
    results = evaluate(split, [MostPop(), EMA(), RandomForecaster()])
    test_windows = sorted({e.window_index for e in split.test})
    assert all(sorted(r.per_window) == test_windows for r in results)
    for result in results:  # the kept per-window values are the ones the averages came from
        assert np.mean([m["ndcg@20"] for m in result.per_window.values()]) == pytest.approx(result.metrics["ndcg@20"])
    lines = significance_section(results, "ndcg@20", resamples=500)
    best = max((r for r in results if r.name != "random"), key=lambda r: r.metrics["ndcg@20"])
    assert f"Best baseline: `{best.name}`" in "\n".join(lines)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| method", "| ---"))]
    assert len(rows) == 1 and rows[0].split(" | ")[-1].strip(" |") in ("better", "worse", "within noise")


def test_for_an_error_metric_the_best_baseline_is_the_lowest() -> None:
    split = temporal_split(_examples(n_items=14, hours=12), validation=0.2, test=0.5)
    results = evaluate(split, [MostPop(), EMA(), RandomForecaster()])
    lines = "\n".join(significance_section(results, "mae_log1p", resamples=200))
    best = min((r for r in results if r.name != "random"), key=lambda r: r.metrics["mae_log1p"])
    assert f"Best baseline: `{best.name}`" in lines


def test_trail_is_compared_with_each_of_its_ablations() -> None:
    from dataclasses import replace

    split = temporal_split(_examples(n_items=14, hours=12), validation=0.2, test=0.5)
    most_pop, ema, trail, ablation = evaluate(split, [MostPop(), EMA(), EMA(), MostPop()])
    results = [most_pop, ema, replace(trail, name="trail"), replace(ablation, name="trail_no-llm")]
    lines = significance_section(results, "ndcg@20", resamples=200)
    rows = [line for line in lines if line.startswith("| trail_no-llm |")]
    assert len(rows) == 2  # against the best baseline, and TRAIL against it
    assert rows[1].split(" | ")[-1].strip(" |") in ("trail better", "ablation better", "within noise")
