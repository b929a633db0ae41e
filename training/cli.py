"""The offline verbs of the ``trail`` CLI: train and evaluate."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from trail_cli.arguments import (http_url, non_negative_float, non_negative_int, positive_float, positive_int,
                                 timestamp_ms, unit_fraction)
from trail.errors import ConfigError

from .checkpoint_files import ABLATION_PREFIX, TRAIL_METHOD, require_checkpoint
from .quantize import MIN_INT8_SPEARMAN
from .state_cache import DEFAULT_STATES_CACHE, states_cache_option

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
    evaluate.add_argument("--windows", choices=("test", "validation"), default="test",
                          help="evaluate on the test windows (reports), or on the validation windows (choosing a "
                               "model; report folder reports/<dataset>-validation)")
    evaluate.add_argument("--trail", type=Path, metavar="CHECKPOINT",
                          help="the TRAIL checkpoint to evaluate (default: models/<dataset> when it exists)")
    evaluate.add_argument("--ablation", action="append", type=_named_checkpoint, default=[], metavar="NAME=CHECKPOINT",
                          help="another TRAIL checkpoint, reported as NAME (repeatable)")
    evaluate.add_argument("--zero-shot-windows", type=int, default=2,
                          help="test windows on which the base LLM is run zero-shot (0: skip; slow on a CPU)")
    evaluate.add_argument("--explain-per-window", type=int, default=6,
                          help="test items per window whose explanations are generated and checked (0: skip)")
    evaluate.add_argument("--candidates", type=positive_int, default=200,
                          help="items per window the LLM methods score (the rest get the EMA fallback)")
    evaluate.add_argument("--no-llm", action="store_true", help="baselines only (no TRAIL, no zero-shot LLM)")
    evaluate.add_argument("--states-cache", type=Path, default=DEFAULT_STATES_CACHE,
                          help="folder keeping the candidates' prompt states, one file per window (the test windows' "
                               "too), shared with refit-head: a later evaluation of a head on the same LLM skips the "
                               "forward passes ('' to keep none)")
    evaluate.set_defaults(run=_evaluate)

    train = commands.add_parser("train", help="fine-tune the TRAIL model on a dataset's training windows")
    train.add_argument("dataset", help="online-retail | stackexchange | movielens | csv")
    train.add_argument("--path", type=Path, help="dataset file or folder (default: the shared datasets)")
    train.add_argument("--map", default="", help="csv only: FIELD=COLUMN,...")
    train.add_argument("--window", help="window size (default: 7d for online-retail, 1d for stackexchange)")
    train.add_argument("--backbone", default="smollm2", help="smollm2 (default), tiny, or a local HF model folder")
    train.add_argument("--out", type=Path, help="output folder (default: .trail-data/runs/<dataset>)")
    train.add_argument("--steps", type=positive_int, default=400)
    train.add_argument("--batch-size", type=positive_int, default=8)
    train.add_argument("--per-window", type=positive_int, default=96,
                       help="training examples per window, balanced rising/falling/level (default 96)")
    train.add_argument("--candidates", type=positive_int, default=200,
                       help="pre-ranked candidates per window the pool is drawn from, as the worker scores")
    train.add_argument("--lora-rank", type=positive_int, default=8)
    train.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                       help="comma-separated module names that get LoRA adapters (default: every linear layer)")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="LoRA learning rate (head: 2e-3)")
    train.add_argument("--max-minutes", type=float, help="stop and save when the time budget is spent")
    train.add_argument("--checkpoint-every", type=positive_int, default=50)
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    train.add_argument("--init-from", type=_checkpoint, metavar="CHECKPOINT",
                       help="warm start: train on from this checkpoint's weights and config (a shipped model), with a "
                            "fresh optimiser and schedule; give another --seed to draw other training batches")
    train.add_argument("--no-contrastive", action="store_true", help="ablation: no InfoNCE and no likelihood margin")
    train.add_argument("--no-explanation-loss", action="store_true", help="ablation: no language-modelling loss")
    train.add_argument("--listwise", type=float, metavar="WEIGHT",
                       help="weight of the listwise (ListNet) score loss within a window (default: LossWeights')")
    train.add_argument("--threads", type=positive_int, help="torch CPU threads (default: all cores)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=_train)

    export = commands.add_parser("export", help="export a TRAIL checkpoint to ONNX as the next Triton model version")
    export.add_argument("checkpoint", nargs="?", type=_checkpoint, default=Path("models/online-retail"),
                        help="checkpoint folder (default: the shipped models/online-retail)")
    export.add_argument("--repository", type=Path, default=Path("triton_models"), help="Triton model repository")
    export.add_argument("--model-name", default="trail")
    export.add_argument("--keep", type=positive_int, default=3, help="versions kept (older ones are removed)")
    export.add_argument("--quantize", action="store_true",
                        help="ship the outlier-aware int8 scoring graph (~1.6x faster on CPU; refused unless its "
                             f"Spearman vs PyTorch >= {MIN_INT8_SPEARMAN})")
    export.add_argument("--quantize-generator", action="store_true",
                        help="ship the generator with 8-bit weights (~1.3x per decoding step on CPU, less per batch; its "
                             "texts differ from PyTorch's, and the manifest records how many the checker verifies)")
    export.add_argument("--triton", metavar="URL", type=http_url,
                        help="a running Triton's HTTP address (e.g. http://127.0.0.1:8000): load the new version")
    export.set_defaults(run=_export)
    _register_refresh(commands)
    _register_deploy(commands)
    _register_refit_head(commands)


def _register_refit_head(commands: argparse._SubParsersAction) -> None:
    from .head_refit_config import SCHEDULES, HeadRefitConfig

    defaults = HeadRefitConfig()
    refit = commands.add_parser(
        "refit-head", help="refit a checkpoint's score head on its frozen LLM states, epochs chosen on validation windows",
        description="One prompt-only forward per example of the training pool and of the validation windows' "
                    "candidates, then many epochs of the score head alone; the epoch with the best validation "
                    "NDCG@20 (the head as it came included) is written back into the checkpoint. Test windows are "
                    "not read.")
    refit.add_argument("checkpoint", type=_checkpoint, help="a TRAIL checkpoint folder (rewritten in place)")
    refit.add_argument("dataset", help="online-retail | stackexchange | movielens | csv (the checkpoint's data)")
    refit.add_argument("--path", type=Path, help="dataset file or folder (default: the shared datasets)")
    refit.add_argument("--map", default="", help="csv only: FIELD=COLUMN,...")
    refit.add_argument("--window", help="window size (default: the checkpoint's)")
    refit.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    refit.add_argument("--max-train-examples", type=positive_int, default=defaults.max_train_examples,
                       help="cap on the training pool's forward passes (whole windows dropped evenly)")
    refit.add_argument("--per-window", type=non_negative_int,
                       help="training examples per window, balanced rise/fall/level (default: the checkpoint's "
                            "fine-tune's); 0: every candidate, in the data's own mix, as the validation windows are")
    refit.add_argument("--validation-every", type=positive_int, default=defaults.validation_every,
                       help="use every n-th validation window (counted from the newest)")
    refit.add_argument("--learning-rate", type=positive_float, default=defaults.learning_rate)
    refit.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                       help="the head's learning rate over the epochs")
    refit.add_argument("--hidden-noise", type=non_negative_float, default=defaults.hidden_noise,
                       help="Gaussian noise on the LLM state while training, in units of each dimension's std")
    refit.add_argument("--ensemble", type=positive_int, default=defaults.ensemble,
                       help="heads trained with consecutive seeds and averaged into one wider head; only the average "
                            "after the last epoch competes with the head as it came")
    refit.add_argument("--states-cache", type=Path, default=DEFAULT_STATES_CACHE,
                       help="folder keeping the prompt states, keyed by the LLM weights and the prompts: a second "
                            "refit of the same checkpoint skips the forward passes ('' to keep none)")
    refit.add_argument("--min-int8-spearman", type=unit_fraction, default=MIN_INT8_SPEARMAN,
                       help="keep only epochs whose head passes the int8 export's check at this Spearman (0: any "
                            "epoch; the head may then ship only as fp32)")
    refit.add_argument("--confident-gain", action="store_true",
                       help="keep a refit epoch only if its validation NDCG@20 gain over the head as it came is above "
                            "zero at the paired bootstrap's 95%% (over validation windows); else keep the head as it came")
    refit.add_argument("--max-mae", type=non_negative_float,
                       help="keep only epochs whose validation MAE (log1p counts) is at most this, e.g. the best "
                            "baseline's: a better rank bought with a worse forecast is not kept; the head as it came stays the "
                            "fallback (default: any MAE)")
    refit.add_argument("--threads", type=positive_int, help="torch CPU threads (default: all cores)")
    refit.set_defaults(run=_refit_head)


def _register_refresh(commands: argparse._SubParsersAction) -> None:
    from .datasets.kafka_topics import KafkaTopics
    from .refresh_config import RefreshConfig

    defaults = RefreshConfig()
    refresh = commands.add_parser(
        "refresh", help="retrain from the live topics, gate the candidate against the serving model, deploy it",
        description="Reads recent windows from the interactions/items topics (the worker's KAFKA_* and TRAIL_TOPIC_* "
                    "settings, no consumer group), warm-starts from the serving version, trains within a time budget, "
                    "evaluates candidate and serving model on the same held-out windows, and publishes the candidate "
                    "as the next version only if the gate passes.")
    span = refresh.add_mutually_exclusive_group()
    span.add_argument("--last-windows", type=positive_int, metavar="N",
                      help=f"the N windows up to the newest event's, or up to --until (default: {defaults.last_windows})")
    span.add_argument("--since", type=timestamp_ms, metavar="TIME", help="first event time read (ISO-8601, UTC)")
    refresh.add_argument("--until", type=timestamp_ms, metavar="TIME", help="event time read up to (exclusive)")
    refresh.add_argument("--window", help="window size (default: TRAIL_WINDOW, as the worker closes them)")
    refresh.add_argument("--holdout-windows", type=positive_int, default=defaults.holdout_windows,
                         help=f"most recent labelled windows held out for the gate (default {defaults.holdout_windows})")
    refresh.add_argument("--from-scratch", action="store_true",
                         help="train a new model instead of warm-starting from the serving version")
    refresh.add_argument("--backbone", default=defaults.backbone,
                         help=f"from scratch only: {defaults.backbone} (default), tiny, or a folder")
    for name, kind in (("steps", positive_int), ("batch-size", positive_int), ("per-window", positive_int),
                       ("candidates", positive_int), ("learning-rate", positive_float),
                       ("head-learning-rate", positive_float)):
        default = getattr(defaults, name.replace("-", "_"))
        refresh.add_argument(f"--{name}", type=kind, default=default, help=f"default {default:g}")
    refresh.add_argument("--max-minutes", type=positive_float,
                         help="time budget of the whole refresh (training gets 60%%); out of time = nothing published")
    refresh.add_argument("--explain-per-window", type=int, default=defaults.explain_per_window,
                         help="held-out items per window both models explain for the gate (0: gate on the forecast)")
    for flag, field_name in (("ndcg", "ndcg"), ("mae", "mae"), ("precision", "claim_precision"),
                             ("verified", "fully_verified")):
        default = getattr(defaults.margins, field_name)
        refresh.add_argument(f"--margin-{flag}", type=non_negative_float, default=default,
                             help=f"how much worse than the serving model the candidate's {field_name} may be "
                                  f"(default {default:g})")
    refresh.add_argument("--shuffle-labels", action="store_true",
                         help="train on labels shuffled within each window: a candidate made worse on purpose")
    _add_repository_arguments(refresh, "load the new version there")
    refresh.add_argument("--runs", type=Path, default=defaults.runs, help="where each run keeps its candidate and report")
    refresh.add_argument("--read-timeout", type=positive_float, default=KafkaTopics.read_timeout_s,
                         help="seconds without an answer from the broker mid-read before giving up")
    refresh.add_argument("--seed", type=int, default=0)
    refresh.set_defaults(run=_refresh)


def _add_repository_arguments(parser: argparse.ArgumentParser, triton_does: str) -> None:
    """The model repository and model (defaults: the worker's TRAIL_MODEL_REPOSITORY / TRAIL_MODEL_NAME) and a
    Triton to tell."""
    parser.add_argument("--repository", type=Path, help="model repository (default: TRAIL_MODEL_REPOSITORY)")
    parser.add_argument("--model-name", help="model (default: TRAIL_MODEL_NAME)")
    parser.add_argument("--triton", metavar="URL", type=http_url, help=f"a running Triton's HTTP address: {triton_does}")


def _register_deploy(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser("deploy", help="the model repository's versions; --rollback: serve the previous one")
    deploy.add_argument("--rollback", action="store_true",
                        help="retire the serving (newest) version so the one before it serves again")
    _add_repository_arguments(deploy, "load the model again there")
    deploy.set_defaults(run=_deploy)



def _checkpoint(value: str) -> Path:
    """A TRAIL checkpoint folder, checked while parsing: before the model's imports, which take seconds."""
    try:
        return require_checkpoint(Path(value))
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _named_checkpoint(value: str) -> tuple[str, Path]:
    """An ablation, named ``trail_NAME`` in the report (``trail_`` is not doubled): a name without the prefix was
    taken for a baseline, and a checkpoint could become the 'best baseline' TRAIL was measured against."""
    name, _, folder = value.partition("=")
    if not name or not folder:
        raise argparse.ArgumentTypeError(f"expects NAME=CHECKPOINT, got {value!r}")
    if name in (TRAIL_METHOD, ABLATION_PREFIX):
        raise argparse.ArgumentTypeError(f"{TRAIL_METHOD!r} names the main checkpoint (--trail): give the ablation "
                                         "another name")
    return name if name.startswith(ABLATION_PREFIX) else f"{ABLATION_PREFIX}{name}", _checkpoint(folder)


def _command_line() -> str:
    return "trail " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _split(args: argparse.Namespace, window: str):
    """The dataset replayed through trail.signals and split by window, with the events' hash."""
    from trail.windows import WindowSpec

    from .datasets import open_dataset
    from .examples import build_examples, temporal_split

    dataset = open_dataset(args.dataset, args.path, args.map)
    print(f"replaying {dataset.name} through trail.signals ({window} windows)...", file=sys.stderr)
    examples, digest = build_examples(dataset.interactions(), WindowSpec.parse(window), dataset.items())
    return dataset, temporal_split(examples), digest


def _refit_head(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from .feature_head import FeatureHead
    from .head_refit import HeadRefitConfig, refit_score_head, save_refit
    from .int8_guard import int8_guard
    from .model import TrailModel, llm_digest

    if args.threads:
        torch.set_num_threads(args.threads)
    metadata = _metadata_for(args.checkpoint, args.dataset)
    recipe = FeatureHead.recipe_of(args.checkpoint)
    config = HeadRefitConfig(epochs=args.epochs, max_train_examples=args.max_train_examples,
                             validation_every=args.validation_every, learning_rate=args.learning_rate,
                             schedule=args.schedule, hidden_noise=args.hidden_noise, confident_gain=args.confident_gain,
                             max_mae=args.max_mae, ensemble=args.ensemble,
                             **({"weights": recipe[0].weights, "candidates": recipe[0].candidates,
                                 "per_window": recipe[0].per_window, "seed": recipe[0].seed} if recipe else {}))
    if args.per_window is not None:
        config = dataclasses.replace(config, per_window=args.per_window)
    window = args.window or metadata.get("window") or DEFAULT_WINDOWS.get(args.dataset, "7d")
    _, split, digest = _split(args, window)
    if metadata.get("events_sha256") not in (None, digest):
        raise ConfigError(f"{args.checkpoint} was trained on other events (sha256 {metadata['events_sha256'][:16]}, "
                          f"these are {digest[:16]})")
    model = TrailModel.load(args.checkpoint)
    states_cache = states_cache_option(args.states_cache)
    llm_key = llm_digest(args.checkpoint)
    guard = (int8_guard(model, min_spearman=args.min_int8_spearman, cache=states_cache, llm_key=llm_key)
             if args.min_int8_spearman > 0 else None)
    result = refit_score_head(model, split.train, split.validation, config,
                              log=lambda message: print(message, file=sys.stderr),
                              states_cache=states_cache, llm_key=llm_key, guard=guard)
    save_refit(model, args.checkpoint, result, config, _command_line())
    kept = result.chosen_epoch
    int8 = f", int8 Spearman {result.int8_spearman[kept]:.4f}" if result.int8_spearman else ""
    print(f"refit head of {args.checkpoint}: epoch {kept} of {config.epochs} kept, validation NDCG@20 "
          f"{result.validation_ndcg20[0]:.4f} -> {result.validation_ndcg20[kept]:.4f}, MAE "
          f"{result.validation_mae_log1p[0]:.4f} -> {result.validation_mae_log1p[kept]:.4f}{int8}")
    return 0


def _metadata_for(checkpoint: Path, dataset: str) -> dict:
    """``checkpoint``'s training metadata ({} when it has none); :class:`ConfigError` when it was trained on another
    dataset than the one a command is about to continue it on."""
    import json

    path = checkpoint / "training_metadata.json"
    metadata = json.loads(path.read_text()) if path.exists() else {}
    if metadata.get("dataset_key", dataset) != dataset:
        raise ConfigError(f"{checkpoint} was trained on {metadata['dataset_key']}, not {dataset}")
    return metadata


def _train(args: argparse.Namespace) -> int:
    import datetime
    import subprocess

    import torch

    from .losses import LossWeights
    from .model import TrailConfig
    from .train import TrainConfig, train

    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    if not targets:
        raise ConfigError("--lora-targets needs at least one module name")
    if args.threads:
        torch.set_num_threads(args.threads)
    # a warm start goes on in its checkpoint's windows unless told otherwise
    started_from = _metadata_for(args.init_from, args.dataset) if args.init_from else {}
    window = args.window or started_from.get("window") or DEFAULT_WINDOWS.get(args.dataset, "7d")
    dataset, split, digest = _split(args, window)
    weights = LossWeights() if args.listwise is None else LossWeights(listwise=args.listwise)
    if args.no_contrastive:
        weights = LossWeights(**{**weights.__dict__, "info_nce": 0.0, "margin": 0.0})
    if args.no_explanation_loss:
        weights = LossWeights(**{**weights.__dict__, "lm": 0.0})
    model_config = TrailConfig(backbone=args.backbone, lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank,
                               lora_targets=targets)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, per_window=args.per_window,
                         candidates=args.candidates, weights=weights, seed=args.seed, max_minutes=args.max_minutes,
                         learning_rate=args.learning_rate,
                         checkpoint_every=args.checkpoint_every)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    metadata = {
        "dataset": dataset.name, "dataset_key": args.dataset, "window": window, "events_sha256": digest,
        "split_windows": split.windows, "train_examples": len(split.train), "command": _command_line(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit, "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    out = args.out or Path(".trail-data/runs") / args.dataset
    _, summary = train(model_config, config, split.train, out, metadata, resume=args.resume,
                       init_from=args.init_from)
    print(f"saved {out} after {summary['steps_completed']} steps ({summary['seconds_this_run']:.0f} s, "
          f"{summary['examples_per_second']} examples/s); losses {summary['final_losses']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_model

    print(f"exporting {args.checkpoint} into {args.repository}/{args.model_name} ...", file=sys.stderr)
    result = export_model(args.checkpoint, args.repository, args.model_name, keep_versions=args.keep,
                          quantize=args.quantize, quantize_generator=args.quantize_generator)
    print(f"version {result.version} published at {result.folder} in {result.seconds:.0f} s: scores max |diff| "
          f"{result.scores.max_abs_diff:.1e} (Spearman {result.scores.spearman:.4f}), greedy explanations "
          f"{result.texts.identical}/{result.texts.items} identical to PyTorch")
    if result.int8 is not None:
        print(f"scoring graph shipped as int8: Spearman {result.int8.spearman:.4f} against PyTorch "
              f"(max |diff| {result.int8.max_abs_diff:.2f})")
    if result.generator_8bit is not None:
        check = result.generator_8bit
        print(f"generator shipped with 8-bit weights: {check.identical}/{check.items} greedy texts identical to "
              f"fp32's; fully verified {check.verified}/{check.items} (fp32: {check.verified_fp32}/{check.items})")
    if args.triton:
        from serving.triton_repository import load_on_triton

        load_on_triton(args.triton, args.model_name)
        print(f"Triton at {args.triton} loaded {args.model_name}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    """Exit 0: published; 3: the gate refused the candidate; 4: published, but the given Triton did not load it."""
    from streams.config import WorkerConfig
    from trail.windows import WindowSpec

    from .datasets.kafka_topics import KafkaTopics
    from .gate import GateMargins
    from .refresh import RefreshConfig, refresh

    worker = WorkerConfig.from_env()
    spec = WindowSpec(WindowSpec.parse(args.window).size_ms, worker.window.allowed_lateness_ms) if args.window \
        else worker.window
    reading = {"settings": worker.kafka, "topics": worker.topics, "read_timeout_s": args.read_timeout}
    config = RefreshConfig(
        repository=args.repository or Path(worker.model_repository), model_name=args.model_name or worker.model_name,
        window=spec, trend=worker.trend, holdout_windows=args.holdout_windows, from_scratch=args.from_scratch,
        backbone=args.backbone, steps=args.steps, batch_size=args.batch_size, per_window=args.per_window,
        candidates=args.candidates, learning_rate=args.learning_rate, head_learning_rate=args.head_learning_rate,
        budget_minutes=args.max_minutes,
        margins=GateMargins(args.margin_ndcg, args.margin_mae, args.margin_precision, args.margin_verified),
        explain_per_window=args.explain_per_window, shuffle_labels=args.shuffle_labels, triton_url=args.triton,
        runs=args.runs, seed=args.seed)
    if args.since is not None:
        source = KafkaTopics(**reading, since_ms=args.since, until_ms=args.until)
    else:
        source = KafkaTopics.last_windows(args.last_windows or config.last_windows, spec, until_ms=args.until,
                                          **reading)
    outcome = refresh(source, config)
    print(f"{'published' if outcome.published else 'refused'}: {outcome.reason} ({outcome.seconds:.0f} s); "
          f"serving version {outcome.version}")
    if not outcome.published:
        return 3
    return 4 if outcome.triton_error else 0


def _deploy(args: argparse.Namespace) -> int:
    import json

    from streams.config import WorkerConfig
    from serving.triton_repository import RETIRED_FOLDER, latest_version, load_on_triton, retire_latest

    worker = WorkerConfig.from_env()
    model_dir = (args.repository or Path(worker.model_repository)) / (args.model_name or worker.model_name)
    if args.rollback:
        retired, serving = retire_latest(model_dir)
        print(f"rolled back: version {retired} retired to {model_dir / RETIRED_FOLDER / str(retired)}; version {serving} "
              "serves (embedded workers switch at their next window)")
        if args.triton:
            load_on_triton(args.triton, model_dir.name)
            print(f"Triton at {args.triton} reloaded {model_dir.name}")
        return 0
    serving = latest_version(model_dir)
    for folder in sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) \
            if model_dir.is_dir() else []:
        manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").exists() else {}
        ndcg = (manifest.get("gate") or {}).get("candidate", {}).get("ndcg@20")
        mark = "*" if int(folder.name) == serving else " "
        print(f"{mark} {folder.name:>3}  {manifest.get('created_at', '?')}  dataset {manifest.get('dataset')}  parent "
              f"{manifest.get('parent_version')}  gate NDCG@20 {'-' if ndcg is None else f'{ndcg:.4f}'}")
    if serving is None:
        print(f"no version in {model_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation_run import run_evaluation

    return run_evaluation(args, DEFAULT_WINDOWS)
