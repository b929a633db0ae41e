"""One evaluation harness: the same test windows, every method, every metric; a Markdown report with plots.

Each method is fitted on the training windows (the untrained baselines ignore them) and predicts, for every test
window, the next-window count of every tracked item; the metrics of :mod:`training.metrics` are computed per
window and averaged over windows. Scores used for ranking are the predicted counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .baselines import Forecaster
from .checkpoint_files import ABLATION_PREFIX, TRAIL_METHOD
from .examples import Example, Split
from .metrics import average, window_metrics

__all__ = ["MethodResult", "evaluate", "restrict", "significance_section", "write_report"]

HEADLINE = ("mae_log1p", "rmse_log1p", "spearman", "ndcg@10", "ndcg@20", "ndcg@50", "recall@10", "recall@20",
            "recall@50", "norm_accel@10", "norm_accel@20", "norm_accel@50")


@dataclass
class MethodResult:
    name: str
    metrics: dict[str, float]
    fit_seconds: float
    items_per_second: float
    predictions: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # test window → predictions
    per_window: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)  # test window → metrics


def _by_window(examples: Sequence[Example]) -> dict[int, list[Example]]:
    grouped: dict[int, list[Example]] = {}
    for example in examples:
        grouped.setdefault(example.window_index, []).append(example)
    return grouped


def evaluate(split: Split, methods: Sequence[Forecaster], ks: Sequence[int] = (10, 20, 50)) -> list[MethodResult]:
    test_windows = _by_window(split.test)
    results = []
    for method in methods:
        started = time.perf_counter()
        method.fit([(e.signals, e.label) for e in split.train])
        fit_seconds = time.perf_counter() - started
        per_window = []
        predictions: dict[int, np.ndarray] = {}
        predict_seconds = 0.0
        windows = sorted(test_windows)
        for window, examples in sorted(test_windows.items()):
            started = time.perf_counter()
            predicted = np.asarray(method.predict([e.signals for e in examples]), dtype=float)
            predict_seconds += time.perf_counter() - started
            predictions[window] = predicted
            truth = np.array([e.label for e in examples])
            current = np.array([e.signals.item.count for e in examples])
            per_window.append(window_metrics(predicted, predicted, truth, current, ks=tuple(ks)))
        n_items = sum(len(v) for v in test_windows.values())
        results.append(MethodResult(method.name, average(per_window), fit_seconds,
                                    n_items / predict_seconds if predict_seconds > 0 else float("inf"), predictions,
                                    {w: m.as_dict() for w, m in zip(windows, per_window)}))
    return results


def restrict(results: Sequence[MethodResult], split: Split, windows: Sequence[int],
             ks: Sequence[int] = (10, 20, 50)) -> list[MethodResult]:
    """The same results, their metrics recomputed over ``windows`` only (from the stored predictions)."""
    test_windows = _by_window(split.test)
    restricted = []
    for result in results:
        per_window = []
        for window in windows:
            examples = test_windows[window]
            truth = np.array([e.label for e in examples])
            current = np.array([e.signals.item.count for e in examples])
            predicted = result.predictions[window]
            per_window.append(window_metrics(predicted, predicted, truth, current, ks=tuple(ks)))
        restricted.append(MethodResult(result.name, average(per_window), result.fit_seconds,
                                       result.items_per_second,
                                       {w: result.predictions[w] for w in windows},
                                       {w: m.as_dict() for w, m in zip(windows, per_window)}))
    return restricted


def significance_section(results: Sequence[MethodResult], metric: str = "ndcg@20",
                         resamples: int = 10_000) -> list[str]:
    """Markdown: each TRAIL variant against the best baseline on ``metric``, 95% paired-bootstrap intervals over
    the test windows (without TRAIL, the best baseline against the runner-up)."""
    from .bootstrap import PairedInterval, paired_bootstrap

    lower_is_better = metric.startswith(("mae", "rmse"))
    baselines = sorted((r for r in results if not r.name.startswith(TRAIL_METHOD) and r.name != "random"),
                       key=lambda r: r.metrics[metric] if lower_is_better else -r.metrics[metric])
    if not baselines:
        return []
    best = baselines[0]
    challengers = [r for r in results if r.name.startswith(TRAIL_METHOD)] or baselines[1:2]
    if not challengers:
        return []
    windows = sorted(best.per_window)
    lines = [f"## {metric.upper()} beyond the noise: paired bootstrap over {len(windows)} test windows", "",
             f"Windows resampled with replacement {resamples:,} times, both methods on the same resample; 95% "
             f"percentile intervals. Best baseline: `{best.name}`.", "",
             f"| method | {metric} [95% CI] | {best.name} [95% CI] | difference [95% CI] | verdict |",
             "| --- | --- | --- | --- | --- |"]
    def paired(a: MethodResult, b: MethodResult, words: tuple[str, str]) -> tuple[PairedInterval, str]:
        """``a`` against ``b`` on the same windows; the verdict in ``words`` (a better, b better) or noise."""
        value = paired_bootstrap([a.per_window[w][metric] for w in windows], [b.per_window[w][metric] for w in windows],
                                 resamples=resamples)
        verdict = value.verdict(higher_is_better=not lower_is_better)
        return value, {"a better": words[0], "b better": words[1]}.get(verdict, verdict)

    for result in challengers:
        value, verdict = paired(result, best, ("better", "worse"))
        lines.append(f"| {result.name} | {value.mean_a:.4f} [{value.low_a:.4f}, {value.high_a:.4f}] | "
                     f"{value.mean_b:.4f} [{value.low_b:.4f}, {value.high_b:.4f}] | {value.difference:+.4f} "
                     f"[{value.difference_low:+.4f}, {value.difference_high:+.4f}] | {verdict} |")
    reference = next((r for r in results if r.name == TRAIL_METHOD), None)
    ablations = [r for r in results if r.name.startswith(ABLATION_PREFIX)]
    if reference is not None and ablations:
        lines += ["", "TRAIL against each ablation, paired the same way (what the part an ablation lacks adds):", "",
                  "| ablation | trail − ablation [95% CI] | verdict |", "| --- | --- | --- |"]
        for result in ablations:
            value, verdict = paired(reference, result, ("trail better", "ablation better"))
            lines.append(f"| {result.name} | {value.difference:+.4f} [{value.difference_low:+.4f}, "
                         f"{value.difference_high:+.4f}] | {verdict} |")
    return lines + [""]


def metrics_table(results: Sequence[MethodResult], columns: Sequence[str], speed: bool = True) -> list[str]:
    """A Markdown table: one row per method, one column per metric (and fit time, items/s)."""
    extra = " fit s | items/s |" if speed else ""
    lines = ["| method | " + " | ".join(columns) + " |" + extra,
             "| --- | " + " | ".join("---" for _ in columns) + " |" + (" --- | --- |" if speed else "")]
    for result in results:
        values = " | ".join(f"{result.metrics[c]:.4f}" for c in columns)
        tail = f" {result.fit_seconds:.2f} | {result.items_per_second:,.0f} |" if speed else ""
        lines.append(f"| {result.name} | {values} |" + tail)
    return lines


def write_report(results: Sequence[MethodResult], split: Split, folder: Path, title: str, command: str,
                 notes: Sequence[str] = (), sections: Sequence[str] = ()) -> Path:
    """``report.md``, ``metrics.json`` and ``methods.png`` (methods × headline metrics) in ``folder``;
    ``sections`` (Markdown lines) follow the headline table and its notes."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = [c for c in HEADLINE if c in results[0].metrics]
    lines = [
        f"# {title}",
        "",
        f"Made by `{command}`.",
        "",
        f"Windows: train {split.windows.get('train')}, validation {split.windows.get('validation')}, "
        f"test {split.windows.get('test')}; examples: {len(split.train)} / {len(split.validation)} / "
        f"{len(split.test)} (every tracked item of every window).",
        "",
        *metrics_table(results, columns),
    ]
    lines += ["", *notes, "", "![methods](methods.png)", "", *sections, ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    (folder / "metrics.json").write_text(json.dumps(
        {r.name: {**r.metrics, "fit_seconds": r.fit_seconds, "items_per_second": r.items_per_second,
                  "per_window": {str(w): m for w, m in sorted(r.per_window.items())}}
         for r in results}, indent=2) + "\n")
    _plot_methods(results, columns, folder / "methods.png", title)
    return path


def _plot_methods(results: Sequence[MethodResult], columns: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in columns if c.startswith(("ndcg", "recall", "norm_accel", "spearman"))]
    figure, axis = plt.subplots(figsize=(max(8, len(shown) * 1.1), 4.5))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(shown))
    for offset, result in enumerate(results):
        axis.bar(x + offset * width, [result.metrics[c] for c in shown], width, label=result.name)
    axis.set_xticks(x + 0.4 - width / 2, shown, rotation=30, ha="right")
    axis.set_title(title)
    axis.legend(fontsize=7, ncol=2)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
