"""The evaluation report's pictures beyond the methods chart: predicted vs true, and items with their explanation."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from .evaluate import MethodResult
from .examples import Example

__all__ = ["plot_explained_items", "plot_predicted_vs_true"]


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot, headless
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_predicted_vs_true(results: Sequence[MethodResult], test: Sequence[Example], path: Path) -> None:
    """One log-log scatter per method: every test item's predicted vs true next-window count."""
    plt = _pyplot()
    by_window: dict[int, list[Example]] = {}
    for example in test:
        by_window.setdefault(example.window_index, []).append(example)
    figure, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4), squeeze=False)
    for axis, result in zip(axes[0], results):
        truth = np.concatenate([[e.label for e in by_window[w]] for w in sorted(result.predictions)])
        predicted = np.concatenate([result.predictions[w] for w in sorted(result.predictions)])
        axis.scatter(np.log1p(truth), np.log1p(predicted), s=3, alpha=0.25)
        top = float(max(np.log1p(truth).max(), np.log1p(predicted).max()))
        axis.plot([0, top], [0, top], color="grey", linewidth=1)
        axis.set_title(result.name)
        axis.set_xlabel("log1p(true next count)")
        axis.set_ylabel("log1p(predicted)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_explained_items(samples: Sequence[dict], path: Path, title: str) -> None:
    """A few items: their recent window counts, the true and predicted next count, and the explanation."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(samples), 1, figsize=(10, 2.6 * len(samples)), squeeze=False)
    for axis, sample in zip(axes[:, 0], samples):
        history = sample["history"]
        x = np.arange(len(history))
        axis.bar(x, history, color="#8aa", label="window counts")
        axis.bar([len(history)], [sample["true"]], color="#484", label="true next")
        axis.scatter([len(history)], [sample["predicted"]], color="#c33", zorder=3, label="predicted next")
        verdict = f"{sample['verified']}/{sample['claims']} claims verified"
        axis.set_title(f"{sample['title'][:50]} — {verdict}", fontsize=9, loc="left")
        axis.text(1.01, 0.5, "\n".join(textwrap.wrap(sample["text"], 48)), transform=axis.transAxes, fontsize=8,
                  va="center")
        axis.legend(fontsize=6, loc="upper left")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
