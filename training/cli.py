"""The offline verbs of the ``trail`` CLI: evaluate (train, export arrive with the model)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

__all__ = ["register"]

# Window sizes that give a sound test set: Online Retail spans 53 weeks (weekly windows: ~2,500 active items a
# week, 8 test weeks); the Stack Exchange dump spans 175 days with a few dozen active questions a day (daily
# windows: 26 test days; weekly would leave 4 test windows).
DEFAULT_WINDOWS = {"online-retail": "7d", "stackexchange": "1d", "movielens": "7d", "csv": "1d"}


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="compare every forecaster on the same test windows")
    evaluate.add_argument("dataset", help="online-retail | stackexchange | movielens | csv")
    evaluate.add_argument("--path", type=Path, help="dataset file or folder (default: the shared datasets)")
    evaluate.add_argument("--map", default="", help="csv only: FIELD=COLUMN,...")
    evaluate.add_argument("--window", help="window size (default: 7d for online-retail, 1d for stackexchange)")
    evaluate.add_argument("--out", type=Path, help="report folder (default: reports/<dataset>)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from trail.windows import WindowSpec

    from .baselines import EMA, GradientBoosting, HoltWinters, LinearTrend, Markov, MostPop, RandomForecaster
    from .datasets import open_dataset
    from .evaluate import evaluate, write_report
    from .examples import build_examples, temporal_split

    dataset = open_dataset(args.dataset, args.path, args.map)
    window = args.window or DEFAULT_WINDOWS.get(args.dataset, "7d")
    spec = WindowSpec.parse(window)
    print(f"replaying {dataset.name} through trail.signals ({window} windows)...", file=sys.stderr)
    examples, digest = build_examples(dataset.interactions(), spec, dataset.items())
    split = temporal_split(examples)
    methods = [RandomForecaster(seed=args.seed), MostPop(), Markov(), EMA(), LinearTrend(), HoltWinters(),
               GradientBoosting(seed=args.seed, threads=1)]
    results = evaluate(split, methods)
    out = args.out or Path("reports") / args.dataset
    command = "trail evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "trail evaluate"
    notes = [
        f"Data: {dataset.name}, {len(examples)} labelled (item, window) examples, events sha256 `{digest[:16]}`.",
        "Not in this report yet: the PARE-style neural model, the zero-shot base LLM and TRAIL (the fine-tuned "
        "model and its ablations); they join when the model lands.",
    ]
    path = write_report(results, split, out, f"{dataset.name}: next-window popularity ({window} windows)",
                        command, notes)
    for result in results:
        print(f"{result.name:>18}  NDCG@20 {result.metrics['ndcg@20']:.4f}  MAE(log1p) {result.metrics['mae_log1p']:.4f}")
    print(f"report: {path}")
    return 0
