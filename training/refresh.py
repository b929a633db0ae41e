"""``trail refresh``: retrain from the live topics, gate the candidate against the serving model, deploy.

One run, in order (each step prints one line; a failure at any step publishes nothing):

1. read the recent windows from the ``interactions`` and ``items`` topics (:class:`~training.datasets.kafka_topics.
   KafkaTopics`) and replay them through the worker's signal code into examples;
2. split by window: the last ``holdout_windows`` labelled windows are held out, the rest train;
3. warm-start from the serving version's checkpoint (``<version>/checkpoint/``, or the checkpoint its manifest
   names) or start from scratch, and train within the time budget;
4. evaluate the candidate and the serving model on the held-out windows with the evaluation harness: NDCG@20 and
   MAE for the forecast, claim precision and the share fully verified for their greedy explanations of the same
   items;
5. gate (:mod:`training.gate`) and print the comparison table either way;
6. publish the candidate as the next version (:func:`training.export.export_model`, whose manifest records the data
   range, the events hash, the gate's numbers and the parent version) and tell a running Triton to load it.

A refused candidate stays in its run folder (``<runs>/<started>/candidate/``) with ``report.md`` and
``gate.json``; the serving version is untouched. The embedded worker picks a published version up at its next
window, Triton after the load request.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from trail.errors import TrailError
from trail.events import format_ts

from .baselines import EMA, MostPop
from .datasets.kafka_topics import KafkaTopics
from .evaluate import MethodResult, evaluate
from .examples import Example, Split, build_examples
from .explanation_eval import ExplainedItem, evaluate_explanations
from .gate import GateDecision, decide
from .llm_forecasters import TrailForecaster, candidate_positions
from .refresh_config import RefreshConfig

__all__ = ["RefreshConfig", "RefreshError", "RefreshOutcome", "holdout_split", "refresh", "serving_checkpoint"]


class RefreshError(TrailError, RuntimeError):
    """The refresh could not produce a candidate worth gating; nothing was published."""


TRAIN_SHARE = 0.6  # of the time budget; the rest is for evaluating both models and exporting


@dataclass(frozen=True)
class RefreshOutcome:
    published: bool
    version: int | None  # the version serving after the run
    triton_error: str | None = None  # published, but the configured Triton did not load it
    parent_version: int | None = None
    reason: str = ""
    decision: GateDecision | None = None
    run_folder: Path = Path()
    seconds: float = 0.0


def serving_checkpoint(model_dir: Path) -> tuple[int | None, Path | None]:
    """The serving (newest) version and the checkpoint it was exported from, where one is still on disk."""
    from serving.trail_onnx import MANIFEST_FILE
    from serving.triton_repository import latest_version

    from .checkpoint_files import CONFIG_FILE
    from .export import CHECKPOINT_FOLDER

    version = latest_version(model_dir)
    if version is None:
        return None, None
    folder = model_dir / str(version)
    if (folder / CHECKPOINT_FOLDER / CONFIG_FILE).exists():
        return version, folder / CHECKPOINT_FOLDER
    manifest = json.loads((folder / MANIFEST_FILE).read_text()) if (folder / MANIFEST_FILE).exists() else {}
    source = Path(manifest.get("source_checkpoint") or "/nonexistent")
    return version, source if (source / CONFIG_FILE).exists() else None


def holdout_split(examples: Sequence[Example], holdout_windows: int) -> Split:
    """Train on every labelled window but the last ``holdout_windows``, which are the gate's test windows."""
    windows = sorted({e.window_index for e in examples})
    if len(windows) < holdout_windows + 1:
        raise RefreshError(f"{len(windows)} labelled window(s) read; the gate holds out {holdout_windows} and "
                           "training needs at least one more: widen the time range")
    held = set(windows[-holdout_windows:])
    train = tuple(e for e in examples if e.window_index not in held)
    test = tuple(e for e in examples if e.window_index in held)
    return Split(train, (), test, {"train": (windows[0], windows[-holdout_windows - 1]),
                                   "test": (windows[-holdout_windows], windows[-1])})


def shuffled_labels(examples: Sequence[Example], seed: int) -> list[Example]:
    """The same examples with labels permuted within each window: a model trained on them learns no forecast."""
    rng = random.Random(seed)
    by_window: dict[int, list[Example]] = {}
    for example in examples:
        by_window.setdefault(example.window_index, []).append(example)
    out: list[Example] = []
    for window in sorted(by_window):
        members = by_window[window]
        labels = [e.label for e in members]
        rng.shuffle(labels)
        out.extend(replace(e, label=label) for e, label in zip(members, labels))
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Clock:
    def __init__(self, budget_minutes: float | None) -> None:
        self.started, self.budget_s = time.monotonic(), None if budget_minutes is None else budget_minutes * 60

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def training_minutes(self) -> float | None:
        return None if self.budget_s is None else max(0.0, TRAIN_SHARE * self.budget_s - self.elapsed) / 60

    def check(self, phase: str) -> None:
        if self.budget_s is not None and self.elapsed > self.budget_s:
            raise RefreshError(f"the time budget of {self.budget_s / 60:g} min ran out {phase} "
                               f"({self.elapsed:.0f} s elapsed)")


def _scores(forecaster: TrailForecaster, result: MethodResult, split: Split, per_window: int) -> dict[str, float]:
    """The gate metrics of one model: its forecast metrics and its greedy explanations of the same items (per
    held-out window, the top ``per_window`` by pre-rank), each explaining its own predicted count."""
    scores = {"ndcg@20": result.metrics["ndcg@20"], "mae_log1p": result.metrics["mae_log1p"]}
    if per_window <= 0:
        return {**scores, "claim_precision": 1.0, "fully_verified": 1.0}
    items = []
    by_window: dict[int, list[Example]] = {}
    for example in split.test:
        by_window.setdefault(example.window_index, []).append(example)
    for window, examples in sorted(by_window.items()):
        for position in candidate_positions([e.signals for e in examples], per_window):
            items.append(ExplainedItem(examples[position].signals, float(result.predictions[window][position]),
                                       examples[position].label))
    explained = evaluate_explanations(forecaster.name, forecaster.explain, items)
    return {**scores, "claim_precision": explained.claim_precision, "fully_verified": explained.fully_verified}


def _evaluate_both(split: Split, candidate: Path, serving: Path | None, config: RefreshConfig
                   ) -> tuple[dict[str, float], dict[str, float] | None, dict[str, dict[str, float]]]:
    models = [TrailForecaster(candidates=config.candidates, checkpoint=candidate, label="candidate")]
    if serving is not None:
        models.append(TrailForecaster(candidates=config.candidates, checkpoint=serving, label="serving"))
    baselines = [MostPop(), EMA()]
    results = evaluate(split, [*baselines, *models])
    by_name = {r.name: r for r in results}
    scored = {m.name: _scores(m, by_name[m.name], split, config.explain_per_window) for m in models}
    context = {b.name: {k: by_name[b.name].metrics[k] for k in ("ndcg@20", "mae_log1p")} for b in baselines}
    return scored["candidate"], scored.get("serving"), context


def _read_examples(source: KafkaTopics, config: RefreshConfig) -> tuple[list[Example], str, dict]:
    started = time.monotonic()
    examples, digest = build_examples(source.interactions(), config.window, source.items(), config.trend)
    if source.first_event_ms is None:
        raise RefreshError(f"no valid interaction in the range read from {source.topics.interactions!r}")
    data = {"source": "kafka", "interactions_topic": source.topics.interactions, "items_topic": source.topics.items,
            "since": format_ts(source.since_ms) if source.since_ms is not None else None,
            "until": format_ts(source.until_ms) if source.until_ms is not None else None,
            "first_event": format_ts(source.first_event_ms), "last_event": format_ts(source.last_event_ms),
            "messages_read": source.read_messages, "skipped": dict(source.skipped),
            "skipped_items": dict(source.skipped_items), "events_sha256": digest, "examples": len(examples)}
    _log(f"read {source.read_messages:,} messages from {source.topics.interactions!r} in "
         f"{time.monotonic() - started:.1f} s: {len(examples):,} labelled (item, window) examples; skipped "
         f"{sum(source.skipped.values())} invalid events {dict(source.skipped) or ''}")
    return examples, digest, data


def _train_candidate(split: Split, parent: Path | None, run: Path, data: dict, config: RefreshConfig,
                     clock: _Clock) -> Path:
    from .model import TrailConfig
    from .train import TrainConfig, train

    train_examples = shuffled_labels(split.train, config.seed) if config.shuffle_labels else list(split.train)
    train_config = TrainConfig(steps=config.steps, batch_size=config.batch_size, per_window=config.per_window,
                               candidates=config.candidates, learning_rate=config.learning_rate,
                               head_learning_rate=config.head_learning_rate,
                               warmup_steps=min(20, max(1, config.steps // 5)), seed=config.seed,
                               max_minutes=clock.training_minutes(), checkpoint_every=max(1, config.steps))
    start = "from scratch" if parent is None else f"warm-started from {parent}"
    _log(f"training {config.steps} steps {start} on {len(split.train):,} examples of windows "
         f"{split.windows['train']}" + (" (labels shuffled on purpose)" if config.shuffle_labels else ""))
    metadata = {"dataset": "kafka", "dataset_key": "kafka", "window": f"{config.window.size_ms // 1000}s",
                "events_sha256": data["events_sha256"], "split_windows": split.windows, "refresh": data,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = run / "candidate"
    _, summary = train(TrailConfig(backbone=config.backbone), train_config, train_examples, out, metadata,
                       init_from=parent)
    _log(f"trained {summary['steps_completed']} steps in {summary['seconds_this_run']:.0f} s"
         + (" (stopped by the time budget)" if summary["stopped_by_time_budget"] else ""))
    return out


def refresh(source: KafkaTopics, config: RefreshConfig) -> RefreshOutcome:
    """The whole loop; raises :class:`TrailError` (nothing published) when a step cannot be done."""
    from serving.triton_repository import RepositoryError, latest_version, load_on_triton

    from .export import export_model

    clock = _Clock(config.budget_minutes)
    model_dir = config.repository / config.model_name
    parent_version, parent = serving_checkpoint(model_dir)
    if parent is None and parent_version is not None:  # the gate could not measure what serves: never skip it
        raise RefreshError(f"serving version {parent_version} in {model_dir} has no checkpoint on disk to warm-start "
                           "from or to gate the candidate against (exported before versions carried theirs): export "
                           "its checkpoint again, or roll it back")
    if parent is None and not config.from_scratch:
        raise RefreshError(f"no serving version in {model_dir} to warm-start from: pass --from-scratch")
    run = config.runs / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run.mkdir(parents=True)
    examples, digest, data = _read_examples(source, config)
    split = holdout_split(examples, config.holdout_windows)
    clock.check("while reading the topics")
    candidate = _train_candidate(split, None if config.from_scratch else parent, run, data, config, clock)
    clock.check("while training")
    _log(f"evaluating the candidate and serving version {parent_version} on held-out windows "
         f"{split.windows['test']} ({len(split.test):,} examples)...")
    mine, theirs, context = _evaluate_both(split, candidate, parent, config)
    decision = decide(mine, theirs, config.margins)
    report = _write_report(run, decision, context, data, split, parent_version, config)
    _log(decision.table(context))
    if not decision.passed:
        return RefreshOutcome(False, latest_version(model_dir), None, parent_version,
                              f"gate refused the candidate ({'; '.join(decision.failures)}); kept at {candidate}, "
                              f"report {report}", decision, run, clock.elapsed)
    clock.check("before publishing")
    manifest_extra = {"parent_version": parent_version, "data": data, "gate": decision.to_dict(),
                      "refresh_run": str(run.resolve())}
    result = export_model(candidate, config.repository, config.model_name, keep_versions=config.keep_versions,
                          verify_texts=2, manifest_extra=manifest_extra)
    (run / "published.json").write_text(json.dumps({"version": result.version, "folder": str(result.folder)}) + "\n")
    loaded, triton_error = "", None
    if config.triton_url:
        try:
            load_on_triton(config.triton_url, config.model_name)
            loaded = f"; Triton at {config.triton_url} loaded it"
        except RepositoryError as exc:  # published all the same: embedded workers switch at their next window
            triton_error = str(exc)
            loaded = f"; but {exc}"
    return RefreshOutcome(True, result.version, triton_error, parent_version,
                          f"published version {result.version} (parent {parent_version}){loaded}", decision, run,
                          clock.elapsed)


def _write_report(run: Path, decision: GateDecision, context: dict, data: dict, split: Split,
                  parent_version: int | None, config: RefreshConfig) -> Path:
    (run / "gate.json").write_text(json.dumps({**decision.to_dict(), "baselines": context, "data": data,
                                               "parent_version": parent_version,
                                               "windows": split.windows}, indent=2) + "\n")
    lines = [f"# Refresh of {config.model_name} ({run.name})", "",
             f"Data: {data['messages_read']:,} messages of `{data['interactions_topic']}` from {data['since']} to "
             f"{data['until']}, events sha256 `{data['events_sha256'][:16]}`, skipped {data['skipped']}.",
             f"Windows: train {split.windows['train']}, held out {split.windows['test']}; serving version "
             f"{parent_version}.", "", decision.table(context), ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
