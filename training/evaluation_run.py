"""``trail evaluate DATASET``: every method on the same test windows, the LLMs' explanations checked, one report.

Steps: replay the dataset through :mod:`trail.signals` into examples; temporal split; the baselines, the PARE-style
model, TRAIL (the shipped or given checkpoint) and its ablations on every test window; the zero-shot base LLM on
a few test windows (with every other method's numbers recomputed on the same windows, so that table compares like
with like); explanations of a sample of test items by TRAIL, the zero-shot LLM and the composer, checked.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from trail.errors import ConfigError
from trail.explain import Forecast, compose
from trail.windows import WindowSpec

from .baselines import EMA, GradientBoosting, HoltWinters, LinearTrend, Markov, MostPop, RandomForecaster
from .checkpoint_files import ABLATION_PREFIX, CONFIG_FILE, TRAIL_METHOD
from .datasets import open_dataset
from .evaluate import MethodResult, evaluate, metrics_table, restrict, significance_section, write_report
from .examples import Example, Split, build_examples, temporal_split
from .explanation_eval import ExplainedItem, ExplanationResult, evaluate_explanations, published_explainer
from .feature_head import FeatureHead
from .llm_forecasters import TrailForecaster, ZeroShotLLM, candidate_positions
from .pare import Pare
from .state_cache import states_cache_option

__all__ = ["run_evaluation"]

ZERO_SHOT_COLUMNS = ("mae_log1p", "spearman", "ndcg@10", "ndcg@20", "ndcg@50", "recall@20", "norm_accel@20")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _trail_checkpoints(args: argparse.Namespace) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    default = Path("models") / args.dataset
    main = args.trail or (default if (default / CONFIG_FILE).exists() else None)
    if main is not None:
        found.append((TRAIL_METHOD, Path(main)))
    found += args.ablation  # (name, folder) pairs, parsed by the CLI
    names = [name for name, _ in found]
    if len(set(names)) < len(names):
        raise ConfigError(f"two checkpoints would be reported under one name: {', '.join(names)}")
    return found


def _no_llm_heads(checkpoint: Path, candidates: int) -> list[FeatureHead]:
    """The "no LLM" ablation with the shipped checkpoint's recipe: as many steps (same budget), and 10x as many
    (what the head alone reaches when the budget is not the limit). None without a shipped checkpoint."""
    recipe = FeatureHead.recipe_of(checkpoint)
    if recipe is None:
        return []
    config, steps = recipe
    return [FeatureHead(candidates=candidates, steps=steps, train_config=config),  # its label: trail_no-llm
            FeatureHead(candidates=candidates, steps=10 * steps, train_config=config,
                        label=f"{ABLATION_PREFIX}no-llm_10x")]


def _speed_note(forecaster: TrailForecaster) -> str:
    from_disk = (f"{forecaster.states_from_disk} of {forecaster.items_scored} prompt states read from "
                 f"`{forecaster.states_cache}`, stored by an earlier run") if forecaster.states_from_disk else ""
    if forecaster.states_computed:
        return f"{forecaster.llm_items_per_second:.1f} LLM items/s on this CPU" + (f"; {from_disk}" if from_disk else "")
    if from_disk:
        return from_disk
    return "its LLM's prompt states shared with a checkpoint above: same adapter, another score head"


def _refit_note(refit: dict | None) -> str:
    """One sentence on a checkpoint's score-head refit (``trail refit-head``), if it had one."""
    if not refit:
        return ""
    chosen = refit["chosen_epoch"]
    return (f" Score head then refit on the frozen LLM's prompt states (`training/head_refit.py`): "
            f"{refit['train_examples']} training examples ({_refit_pool(refit)}), epoch {chosen} of {len(refit['validation_ndcg20']) - 1} "
            f"kept on {refit['validation_windows']} validation windows (their NDCG@20 over the candidates "
            f"{refit['validation_ndcg20'][0]:.4f} -> {refit['validation_ndcg20'][chosen]:.4f}).")


def _refit_pool(refit: dict) -> str:
    per_window = refit.get("config", {}).get("per_window")
    return "every candidate of the kept windows" if per_window == 0 else f"{per_window} a window, balanced"


def _explanation_sample(split: Split, trail: MethodResult, per_window: int, seed: int,
                        candidates: int) -> list[tuple[Example, float]]:
    """Per test window: TRAIL's top half of ``per_window`` items and as many random other candidates."""
    rng = random.Random(seed)
    by_window: dict[int, list[Example]] = {}
    for example in split.test:
        by_window.setdefault(example.window_index, []).append(example)
    chosen: list[tuple[Example, float]] = []
    for window, examples in sorted(by_window.items()):
        predicted = trail.predictions[window]
        pool = candidate_positions([e.signals for e in examples], candidates)
        top = sorted(pool, key=lambda i: -predicted[i])[: per_window // 2]
        rest = [i for i in pool if i not in top]
        picked = top + rng.sample(rest, min(len(rest), per_window - len(top)))
        chosen.extend((examples[i], float(predicted[i])) for i in picked)
    return chosen


def _explanation_section(results: Sequence[ExplanationResult], zero_shot_note: str) -> list[str]:
    columns = ("claim_precision", "fully_verified", "coverage", "agreement", "bleu4", "rouge_l", "distinct2",
               "ms_per_explanation")
    lines = ["## Explanations", "",
             f"{results[0].n} test items (per window: TRAIL's top items and random other candidates). Each method "
             "explains its own predicted count; the checker verifies every claim against the signals. "
             "References for BLEU/ROUGE: the composer's phrasings of the true outcome. " + zero_shot_note, "",
             "| method | " + " | ".join(columns) + " |", "| --- | " + " | ".join("---" for _ in columns) + " |"]
    for result in results:
        row = result.row()
        lines.append(f"| {result.name} | " + " | ".join(
            f"{row[c]:.0f}" if c == "ms_per_explanation" else f"{row[c]:.4f}" for c in columns) + " |")
    lines += ["", "Examples (TRAIL):", ""]
    trail = next((r for r in results if r.name == TRAIL_METHOD), results[0])
    for sample in trail.samples[:6]:
        lines.append(f"- **{sample['title']}** (history {sample['history']}, predicted {sample['predicted']}, "
                     f"true {sample['true']:.0f}; {sample['verified']}/{sample['claims']} claims verified): "
                     f"{sample['text']}")
    return lines + ["", "![items](explained_items.png)", ""]


def run_evaluation(args: argparse.Namespace, default_windows: dict[str, str]) -> int:
    checkpoints = [] if args.no_llm else _trail_checkpoints(args)  # argument errors before the long replay
    dataset = open_dataset(args.dataset, args.path, args.map)
    window = args.window or default_windows.get(args.dataset, "7d")
    _log(f"replaying {dataset.name} through trail.signals ({window} windows)...")
    examples, digest = build_examples(dataset.interactions(), WindowSpec.parse(window), dataset.items())
    split = temporal_split(examples)
    if args.windows == "validation":  # choosing prompts, losses and steps: the test windows stay unread
        split = Split(split.train, split.validation, split.validation, split.windows)
        _log(f"evaluating on the validation windows {split.windows['validation']} (not the test windows)")
    methods: list = [RandomForecaster(seed=args.seed), MostPop(), Markov(), EMA(), LinearTrend(), HoltWinters(),
                     GradientBoosting(seed=args.seed, threads=1), Pare(seed=args.seed)]
    states_cache = states_cache_option(args.states_cache)
    trails = [TrailForecaster(candidates=args.candidates, checkpoint=path, label=name, states_cache=states_cache)
              for name, path in checkpoints]
    methods += _no_llm_heads(Path("models") / args.dataset, args.candidates)
    _log(f"evaluating {len(methods) + len(trails)} methods on {len(split.test)} test examples...")
    results = evaluate(split, [*methods, *trails])
    out = args.out or Path("reports") / (args.dataset + ("-validation" if args.windows == "validation" else ""))
    out.mkdir(parents=True, exist_ok=True)
    command = "trail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    notes = [*([f"**Validation windows** {split.windows['validation']}: every 'test' below means these, the windows "
                "models are chosen on (the test windows were not read)."] if args.windows == "validation" else []),
             f"Data: {dataset.name}, {len(examples)} labelled (item, window) examples, events sha256 "
             f"`{digest[:16]}`. Ranking metrics are per window against the true next-window counts of every "
             "tracked item, averaged over test windows."]
    sections: list[str] = []
    if args.no_llm:
        notes.append("Made with `--no-llm`: TRAIL, its ablations and the zero-shot LLM are left out of this report.")
    elif not trails:
        notes.append(f"No TRAIL checkpoint for this dataset (models/{args.dataset} is absent): TRAIL is left out.")
    for forecaster in trails:
        metadata_path = forecaster.checkpoint / "training_metadata.json"
        metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
        notes.append(
            f"`{forecaster.name}` = checkpoint `{forecaster.checkpoint}`: scores the top {forecaster.candidates} "
            f"pre-ranked candidates per window ({_speed_note(forecaster)}), "
            f"EMA for the rest; trained {metadata.get('steps_completed', '?')} steps × "
            f"{metadata.get('train_config', {}).get('batch_size', '?')} examples in "
            f"{metadata.get('seconds_this_run', '?')} s ({metadata.get('examples_per_second', '?')} examples/s), "
            f"loss weights {metadata.get('train_config', {}).get('weights', {})}."
            + _refit_note(metadata.get("head_refit")))

    heads = [m for m in methods if isinstance(m, FeatureHead)]
    if heads:
        notes.append(f"`{heads[0].name}` = TRAIL's score head on the engineered features alone, no language model "
                     f"(`training/feature_head.py`): the shipped checkpoint's recipe, losses and example pool, "
                     f"{heads[0].steps_trained} steps (as many as the checkpoint trained); `{heads[-1].name}` "
                     f"{heads[-1].steps_trained} steps. The gap to `trail` is what the LLM adds.")

    zero_shot: ZeroShotLLM | None = None
    if not args.no_llm and args.zero_shot_windows > 0:
        test_windows = sorted({e.window_index for e in split.test})
        picks = sorted(set(np.linspace(0, len(test_windows) - 1, args.zero_shot_windows).round().astype(int)))
        sample_windows = [test_windows[i] for i in picks]
        zero_shot = ZeroShotLLM(candidates=args.candidates)
        _log(f"zero-shot base LLM on test windows {sample_windows}...")
        sample_split = Split(split.train, split.validation,
                             tuple(e for e in split.test if e.window_index in sample_windows), split.windows)
        zero_result = evaluate(sample_split, [zero_shot])[0]
        compared = [*restrict(results, split, sample_windows), zero_result]
        sections += ["## Zero-shot base LLM (on a sample of test windows)", "",
                     f"SmolLM2-135M-Instruct without fine-tuning, asked in its chat format for the next count of "
                     f"each of the top {args.candidates} candidates, on test windows {sample_windows} only "
                     f"({zero_shot.llm_items_per_second:.2f} items/s on this CPU: the full test set would take "
                     f"hours); {zero_shot.unparseable} of {zero_shot.items_scored} answers had no number (this "
                     "window's count used). Every method recomputed on the same windows:", "",
                     *metrics_table(compared, ZERO_SHOT_COLUMNS, speed=False), ""]

    explanation_results: list[ExplanationResult] = []
    trail_result = next((r for r in results if r.name == TRAIL_METHOD), None)
    if trail_result is not None and args.explain_per_window > 0:
        sample = _explanation_sample(split, trail_result, args.explain_per_window, args.seed, args.candidates)
        items = [ExplainedItem(e.signals, predicted, e.label) for e, predicted in sample]
        trail = next(t for t in trails if t.name == TRAIL_METHOD)
        _log(f"explaining {len(items)} test items with TRAIL...")
        explanation_results.append(evaluate_explanations(TRAIL_METHOD, trail.explain, items))
        _log(f"explaining {len(items)} test items as the worker publishes them (candidates, checker, composer)...")
        sources: Counter = Counter()
        explanation_results.append(evaluate_explanations(f"{TRAIL_METHOD}_published", published_explainer(trail.model, sources),
                                                         items))
        explanation_results[-1].name = (f"{TRAIL_METHOD}_published ({sources['model']} model, {sources['model-constrained']} "
                                        f"constrained, {sources['composer-fallback']} composer)")
        explanation_results.append(evaluate_explanations(
            "composer", lambda signals, counts: [compose(s, Forecast(c)) for s, c in zip(signals, counts)], items))
        note = ""
        if zero_shot is not None:
            own = zero_shot._llm_counts([i.signals for i in items])
            zero_items = [ExplainedItem(i.signals, float(c), i.true_count) for i, c in zip(items, own)]
            _log(f"explaining {len(items)} test items with the zero-shot LLM...")
            explanation_results.append(evaluate_explanations("zero_shot_llm", zero_shot.explain, zero_items))
            note = "The zero-shot LLM explains its own zero-shot forecast."
        sections += _explanation_section(explanation_results, note)
        (out / "explanations.json").write_text(json.dumps(
            {r.name: {**r.row(), "n": r.n, "samples": r.samples} for r in explanation_results}, indent=2) + "\n")
        from .report_plots import plot_explained_items

        plot_explained_items(explanation_results[0].samples[:4], out / "explained_items.png",
                             f"{dataset.name}: TRAIL's explanations")
    if trail_result is not None:
        from .report_plots import plot_predicted_vs_true

        best = max((r for r in results if not r.name.startswith(TRAIL_METHOD) and r.name != "random"),
                   key=lambda r: r.metrics["ndcg@20"])
        plot_predicted_vs_true([best, trail_result], split.test, out / "predicted_vs_true.png")
        sections += ["![predicted vs true](predicted_vs_true.png)", ""]
    sections = [*significance_section(results, "ndcg@20"), *significance_section(results, "mae_log1p"), *sections]
    path = write_report(results, split, out, f"{dataset.name}: next-window popularity ({window} windows)", command,
                        notes, sections)
    for result in results:
        _log(f"{result.name:>24}  NDCG@20 {result.metrics['ndcg@20']:.4f}  MAE(log1p) {result.metrics['mae_log1p']:.4f}")
    for explained in explanation_results:
        _log(f"{explained.name:>24}  claim precision {explained.claim_precision:.4f}  agreement "
             f"{explained.agreement:.4f}")
    print(f"report: {path}")
    return 0
