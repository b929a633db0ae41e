"""Does a listwise score loss help? Measured on the no-LLM head (TRAIL's score head on the features alone, the
shipped checkpoint's recipe) on the VALIDATION windows of each dataset, so the test windows stay unread.

    .venv/bin/python benchmarks/listwise_head.py            # both datasets, listwise weights 0, 0.5, 1, 2
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from training.baselines import EMA, MostPop
from training.evaluate import evaluate
from training.feature_head import FeatureHead
from validation_windows import DATASETS, validation_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    args = parser.parse_args()
    for name in args.datasets:
        validation, config, steps = validation_problem(name)
        heads = [FeatureHead(steps=budget, label=f"head listwise={weight} steps={budget}",
                             train_config=replace(config, weights=replace(config.weights, listwise=weight)))
                 for weight in args.weights for budget in (steps, 10 * steps)]
        for result in evaluate(validation, [MostPop(), EMA(), *heads]):
            print(f"{name:>14}  {result.name:<32} NDCG@20 {result.metrics['ndcg@20']:.4f}  "
                  f"MAE(log1p) {result.metrics['mae_log1p']:.4f}", flush=True)


if __name__ == "__main__":
    main()
