"""Export a TRAIL checkpoint to ONNX: the scoring graph (backbone with the LoRA adapter merged + score head).

The scoring graph takes what a thin client can compute without torch — token ids of :func:`trail.prompt.render_prompt`
(right-padded), the attention mask, :func:`trail.features.model_features` and ``log1p`` of the current count —
and returns the predicted ``log1p(next count)``. Position ids are derived from the mask inside the graph, so the
same graph serves any batch. :func:`verify_scores` compares it with PyTorch on real prompts; a graph that misses the
tolerance is never published.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from trail.errors import TrailError
from trail.features import model_features
from trail.serving_contract import GENERATOR_LOGIT_POSITIONS, SCORE_INPUTS, SCORE_OUTPUT, TokenLimits
from trail.signals import TrendSignals
from trail.windows import WindowSpec

from .generator_graph import fuse_grouped_query_attention, keep_last_logits, share_kv_heads
from .model import ScoreHead, TrailConfig, TrailModel
from .quantize import GENERATOR_WEIGHT_BLOCK, MIN_INT8_SPEARMAN

if TYPE_CHECKING:
    from serving.trail_onnx import TrailOnnx

__all__ = ["SCORE_INPUTS", "PromptStateGraph", "ScoringGraph", "export_scoring_graph", "onnx_scores", "verify_scores"]

OPSET = 17
VERIFICATION_BATCH = 8  # verification items per ONNX call: dynamic int8 scales are per batch, so this is part of a check


class ScoringGraph(nn.Module):
    """Merged decoder + score head as one traceable module."""

    def __init__(self, decoder: nn.Module, head: ScoreHead) -> None:
        super().__init__()
        self.decoder = decoder
        self.head = head

    def prompt_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's hidden state at each prompt's last token: all the head reads from the LLM."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False).last_hidden_state
        last = attention_mask.sum(-1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: torch.Tensor,
                current_log_count: torch.Tensor) -> torch.Tensor:
        return self.head(self.prompt_state(input_ids, attention_mask), features, current_log_count)


class PromptStateGraph(nn.Module):
    """The scoring graph without its head (same decoder, same node names below it): what :mod:`training.int8_guard`
    quantises to see the LLM states an int8 scoring graph would hand to any head."""

    def __init__(self, scoring: ScoringGraph) -> None:
        super().__init__()
        self.scoring = scoring

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.scoring.prompt_state(input_ids, attention_mask)


def merged_scoring_graph(model: TrailModel) -> ScoringGraph:
    """A copy of the model with the LoRA weights folded into the base weights (the model itself is untouched)."""
    merged = copy.deepcopy(model.lm).merge_and_unload()
    merged.eval()
    return ScoringGraph(merged.model, copy.deepcopy(model.score_head)).eval()


def score_inputs(model: TrailModel, signals: Sequence[TrendSignals]) -> dict[str, np.ndarray]:
    """The scoring graph's inputs for a batch (what the embedded and Triton backends compute too)."""
    batch = model.encode([model.config.render_prompt(s) for s in signals])
    return {
        "input_ids": batch.input_ids.numpy().astype(np.int64),
        "attention_mask": batch.attention_mask.numpy().astype(np.int64),
        "features": model_features(signals),
        "current_log_count": np.log1p(np.array([s.item.count for s in signals], dtype=np.float32)),
    }


def register_vmap_free_masks() -> None:
    """transformers' default sdpa mask uses vmap, which the TorchScript ONNX exporter cannot trace."""
    from optimum.exporters.onnx.model_patcher import sdpa_mask_without_vmap
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", sdpa_mask_without_vmap)


def export_scoring_graph(model: TrailModel, example_signals: Sequence[TrendSignals], path: Path) -> Path:
    """Write ``path`` (an ONNX file, weights inline when under 2 GB) for ``model``'s scoring graph."""
    register_vmap_free_masks()
    graph = merged_scoring_graph(model)
    inputs = score_inputs(model, example_signals)
    tensors = tuple(torch.from_numpy(inputs[name]) for name in SCORE_INPUTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            graph, tensors, str(path), dynamo=False, opset_version=OPSET, input_names=list(SCORE_INPUTS),
            output_names=[SCORE_OUTPUT],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "features": {0: "batch"}, "current_log_count": {0: "batch"}, SCORE_OUTPUT: {0: "batch"}},
        )
    return path


def onnx_scores(path: Path, inputs: dict[str, np.ndarray], threads: int | None = None) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([SCORE_OUTPUT], inputs)[0]


@dataclass(frozen=True)
class ScoreCheck:
    max_abs_diff: float
    spearman: float
    passed: bool
    tolerance: float


def verify_scores(model: TrailModel, path: Path, signals: Sequence[TrendSignals], tolerance: float = 1e-3,
                  batch_size: int = VERIFICATION_BATCH) -> ScoreCheck:
    """ONNX vs PyTorch on ``signals`` (in batches, so padding is exercised): max abs diff and Spearman."""
    from .metrics import spearman

    expected, got = [], []
    for start in range(0, len(signals), batch_size):
        chunk = list(signals[start: start + batch_size])
        expected.append(model.predict_log_counts(chunk, batch_size=len(chunk)))
        got.append(onnx_scores(path, score_inputs(model, chunk)))
    reference, exported = np.concatenate(expected), np.concatenate(got)
    difference = float(np.max(np.abs(reference - exported)))
    rho = spearman(exported, reference) if len(reference) > 1 else 1.0
    return ScoreCheck(difference, rho, difference <= tolerance, tolerance)


# -- a whole version: scoring graph + generator + tokenizer + manifest, verified, published atomically ---------
@dataclass(frozen=True)
class TextCheck:
    items: int
    identical: int

    @property
    def passed(self) -> bool:
        return self.identical == self.items


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    version: int
    scores: ScoreCheck
    texts: TextCheck
    seconds: float
    int8: ScoreCheck | None = None  # the shipped int8 scoring graph's check, when exported with quantize=True
    generator_8bit: GeneratorCheck | None = None  # the shipped 8-bit generator's texts, quantize_generator=True


# greedy texts compared between the fp32 and the 8-bit generator before an 8-bit one ships
GENERATOR_CHECK_ITEMS = 8


@dataclass(frozen=True)
class GeneratorCheck:
    """The 8-bit generator's greedy texts on the verification items against the fp32 generator's: how many are the
    same, and how many of each the checker fully verifies (what the worker publishes as ``model``)."""

    items: int
    identical: int
    verified: int
    verified_fp32: int

    def to_dict(self) -> dict:
        return {"identical_to_fp32": f"{self.identical}/{self.items}",
                "fully_verified_greedy": f"{self.verified}/{self.items}",
                "fully_verified_greedy_fp32": f"{self.verified_fp32}/{self.items}"}


class ExportRejected(TrailError, RuntimeError):
    """The exported graphs do not reproduce the checkpoint: nothing was published."""


def verification_signals(n: int = 24, seed: int = 0) -> list[TrendSignals]:
    """Deterministic, varied items (rising, falling, idle, large, uncategorised) to compare ONNX with PyTorch."""
    import random

    from trail.signals import ItemTrend, TrendConfig

    rng = random.Random(seed)
    config, spec = TrendConfig(), WindowSpec(rng.choice([86_400_000, 7 * 86_400_000]))
    signals = []
    for index in range(n):
        trend = ItemTrend(config, first_window=0)
        scale = rng.choice([0, 1, 3, 10, 40, 200])
        slope = rng.choice([-1.0, -0.3, 0.0, 0.4, 1.5])
        window = None
        for step in range(rng.randrange(1, 9)):
            count = max(0.0, float(round(scale * (1 + slope * step / 4) + rng.gauss(0, 1 + scale / 10))))
            window = trend.close(f"v{index}", step, count, distinct_users=int(count * 0.7))
        assert window is not None
        rank = rng.choice([None, 1, 2, 7, 30, 150])
        previous = rng.choice([None, 1, 3, 9, 45]) if rank else None
        category = rng.choice([None, "MUGS", "BAGS", "LIGHTS"])
        signals.append(TrendSignals(window, rng.choice(["", "PARTY BUNTING", "WHITE HANGING HEART T-LIGHT HOLDER"
                                                        " WITH A VERY LONG TITLE THAT GETS CUT"]),
                                    category, rank, previous, float(rng.randrange(0, 300)),
                                    float(rng.randrange(0, 300)), spec.start_of(2150 + index), spec.size_ms))
    return signals


def _export_generator(model: TrailModel, work: Path, in_place_cache: bool = True) -> Path:
    """optimum's exporter (text generation with past key values) over the merged model; returns the ONNX folder.

    Its attention is then rewritten (:mod:`training.generator_graph`): as ORT's GroupQueryAttention, whose cache is
    written in place (``in_place_cache``, what ships), or else with each key/value head read in place by its query
    heads over optimum's concatenated cache (the layout of earlier exports, which the runner still serves)."""
    from optimum.exporters.onnx import main_export

    merged_dir, onnx_dir = work / "merged", work / "generator"
    merged = copy.deepcopy(model.lm).merge_and_unload()
    merged.save_pretrained(str(merged_dir))
    model.tokenizer.save_pretrained(str(merged_dir))
    main_export(str(merged_dir), output=str(onnx_dir), task="text-generation-with-past", device="cpu")
    if (onnx_dir / "model.onnx_data").exists():
        raise ExportRejected("the generator needs external weight data (> 2 GB): not supported by this exporter")
    keep_last_logits(onnx_dir / "model.onnx", GENERATOR_LOGIT_POSITIONS)
    config = merged.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if not (in_place_cache and fuse_grouped_query_attention(onnx_dir / "model.onnx", heads, kv_heads)):
        share_kv_heads(onnx_dir / "model.onnx", heads, kv_heads)
    return onnx_dir


def _quantized_scores(model: TrailModel, score_graph: Path, signals: Sequence[TrendSignals],
                      min_spearman: float) -> ScoreCheck:
    """Replace ``score_graph`` by its outlier-aware int8 version if that ranks ``signals`` like PyTorch."""
    from .quantize import quantize_linear_layers

    int8_path = score_graph.with_suffix(".int8.onnx")
    quantize_linear_layers(score_graph, int8_path)
    check = verify_scores(model, int8_path, signals, tolerance=float("inf"))
    if not check.spearman >= min_spearman:
        raise ExportRejected(f"int8 scores rank the verification items with Spearman {check.spearman:.4f} "
                             f"< {min_spearman} against PyTorch: export without --quantize")
    int8_path.replace(score_graph)
    return check


def _quantized_generator(config: TrailConfig, staging: Path, fp32: TrailOnnx, manifest: dict,
                         signals: Sequence[TrendSignals], predicted: np.ndarray) -> GeneratorCheck:
    """Replace the generator in ``staging`` by its 8-bit-weight version
    (:func:`training.quantize.quantize_generator_weights`), and compare their greedy texts on ``signals`` (forecasts
    ``predicted``).

    No threshold refuses it, unlike the int8 scoring graph: the worker publishes a model text only when the checker
    verifies every claim in it, so a weaker generator costs composer fallbacks (counted per source on ``/metrics``),
    never a wrong claim. The check is recorded in the manifest for the operator who chose it."""
    from serving.trail_onnx import GENERATOR_FILE, TrailOnnx, write_manifest
    from trail.explain import check as check_text
    from trail.explain import Forecast

    from .quantize import quantize_generator_weights

    prompts = [config.render_prompt(s) for s in signals]
    cues = [config.explanation_cue(s, p) for s, p in zip(signals, predicted)]
    before = fp32.explain_batch(prompts, cues)
    quantized = staging / "generator.8bit.onnx"
    quantize_generator_weights(staging / GENERATOR_FILE, quantized)
    quantized.replace(staging / GENERATOR_FILE)
    write_manifest(staging, manifest)  # the new generator's size: a version folder loads only when they agree
    after = TrailOnnx(staging).explain_batch(prompts, cues)

    def verified(texts: Sequence[str]) -> int:
        return sum(check_text(text, s, Forecast(float(p))).all_verified
                   for text, s, p in zip(texts, signals, predicted))

    return GeneratorCheck(len(signals), sum(a == b for a, b in zip(before, after)), verified(after), verified(before))


CHECKPOINT_FOLDER = "checkpoint"  # <version>/checkpoint/: the PyTorch checkpoint a version was exported from


def export_model(checkpoint: Path, repository: Path, model_name: str = "trail", keep_versions: int = 3,
                 verify_texts: int = 3, tolerance: float = 1e-3, quantize: bool = False,
                 min_int8_spearman: float = MIN_INT8_SPEARMAN, manifest_extra: dict | None = None,
                 quantize_generator: bool = False) -> ExportResult:
    """Export ``checkpoint`` as the next version of ``model_name`` in the Triton ``repository``.

    Built in a hidden folder next to the versions, verified (fp32 scores within ``tolerance`` of PyTorch; the
    first ``verify_texts`` greedy explanations identical), then renamed into place; older versions beyond
    ``keep_versions`` are removed. ``quantize``: the scoring graph that ships is the outlier-aware int8 one
    (:mod:`training.quantize`, ~1.6x faster on CPU), published only if its scores rank the verification items
    like PyTorch's (Spearman >= ``min_int8_spearman``). ``quantize_generator``: the generator that ships has 8-bit
    weights (~1.3x per decoding step on this CPU, ~1.05-1.3x per batch), once the fp32 one has passed its check;
    its greedy texts then differ from PyTorch's, and the manifest records how (:func:`_quantized_generator`). Raises
    :class:`ExportRejected` (and publishes nothing) when a check fails.

    The version folder also carries the checkpoint itself (``checkpoint/``: adapter, heads, config, training
    metadata; ~10 MB for SmolLM2), so ``trail refresh`` can warm-start from whatever version serves, wherever it was
    trained. ``manifest_extra`` is merged into the manifest (the refresh loop records its data range and gate)."""
    import os
    import shutil
    import tempfile
    import time
    from datetime import datetime, timezone

    from serving.trail_onnx import GENERATOR_FILE, SCORE_FILE, TOKENIZER_FILE, TrailOnnx, write_manifest
    from serving.triton_repository import RETIRED_FOLDER, next_version
    from serving.triton_trail import backend_files, trail_model_config
    started = time.monotonic()
    checkpoint = Path(checkpoint)
    model = TrailModel.load(checkpoint)
    model_dir = Path(repository) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="trail-export-") as scratch:
            signals = verification_signals()
            export_scoring_graph(model, signals[:4], staging / SCORE_FILE)
            generator_dir = _export_generator(model, Path(scratch))
            shutil.move(str(generator_dir / "model.onnx"), staging / GENERATOR_FILE)
            shutil.copyfile(generator_dir / "tokenizer.json", staging / TOKENIZER_FILE)
        scores = verify_scores(model, staging / SCORE_FILE, signals, tolerance)
        if not scores.passed:
            raise ExportRejected(f"ONNX scores differ from PyTorch by {scores.max_abs_diff:.2e} > {tolerance}")
        int8 = _quantized_scores(model, staging / SCORE_FILE, signals, min_int8_spearman) if quantize else None
        for name, source in backend_files().items():
            shutil.copyfile(source, staging / name)
        copy_checkpoint(checkpoint, staging / CHECKPOINT_FOLDER)
        metadata_path = checkpoint / "training_metadata.json"
        training = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
        manifest = {
            "model": model_name, "source_checkpoint": str(checkpoint.resolve()),
            "backbone": model.config.backbone, "events_sha256": training.get("events_sha256"),
            "dataset": training.get("dataset"), "window": training.get("window"),
            "training": {k: training.get(k) for k in ("steps_completed", "examples_seen", "final_losses",
                                                       "created_at", "command", "git_commit", "head_refit",
                                                       "initialised_from")},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "limits": TokenLimits(max_prompt_tokens=model.config.max_prompt_tokens,
                                  max_cue_tokens=model.config.max_cue_tokens,
                                  max_new_tokens=model.config.max_explanation_tokens).to_dict(),
            "prompt_format": model.config.prompt_format,
            "eos_token_id": model.tokenizer.eos_token_id, "pad_token_id": model.tokenizer.pad_token_id,
            "score_precision": "int8 (outlier-aware dynamic)" if int8 else "fp32",
            "generator_precision": (f"8-bit weights (MatMulNBits, blocks of {GENERATOR_WEIGHT_BLOCK})"
                                    if quantize_generator else "fp32"),
            **(manifest_extra or {}),
        }
        write_manifest(staging, manifest)  # the runtime below loads only a folder whose manifest matches its files
        runtime = TrailOnnx(staging)
        # how the generator keeps its cache, as the runner read it from the graph (training.generator_graph)
        manifest["generator_cache"] = ("in place (GroupQueryAttention)" if runtime.in_place_cache
                                       else "concatenated at every step")
        # the forecasts the texts are conditioned on: the verified texts' and the 8-bit generator's items (a prefix)
        checked = signals[:max(verify_texts, GENERATOR_CHECK_ITEMS if quantize_generator else 0)]
        predicted = np.expm1(model.predict_log_counts(checked)).clip(0)
        sample = checked[:verify_texts]
        reference = model.explain(sample, predicted[:verify_texts])
        exported = [runtime.explain(model.config.render_prompt(s), model.config.explanation_cue(s, p))
                    for s, p in zip(sample, predicted[:verify_texts])]
        texts = TextCheck(len(sample), sum(a == b for a, b in zip(reference, exported)))
        manifest["verification"] = {"max_abs_score_diff": scores.max_abs_diff, "spearman": scores.spearman,
                                    "tolerance": tolerance, "identical_greedy_texts": f"{texts.identical}/{texts.items}"}
        if int8 is not None:
            manifest["verification"]["int8"] = {"spearman": int8.spearman, "max_abs_score_diff": int8.max_abs_diff,
                                                "min_spearman": min_int8_spearman}
        if not texts.passed:
            raise ExportRejected(f"greedy explanations differ: {texts.identical}/{texts.items} identical")
        generator_8bit = None
        if quantize_generator:
            generator_8bit = _quantized_generator(model.config, staging, runtime, manifest,
                                                  checked[:GENERATOR_CHECK_ITEMS], predicted[:GENERATOR_CHECK_ITEMS])
            manifest["verification"]["generator_8bit"] = generator_8bit.to_dict()
        write_manifest(staging, manifest)
        config_text = trail_model_config(model_name)
        config = model_dir / "config.pbtxt"
        if not config.exists() or config.read_text() != config_text:
            (model_dir / ".config.pbtxt.tmp").write_text(config_text)
            os.replace(model_dir / ".config.pbtxt.tmp", config)
        version = next_version(model_dir)
        final = model_dir / str(version)
        staging.chmod(0o755)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for folder in (model_dir, model_dir / RETIRED_FOLDER):  # rolled-back versions are kept as long as live ones
        versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) \
            if folder.is_dir() else []
        for old in versions[:-keep_versions]:
            shutil.rmtree(folder / str(old), ignore_errors=True)
    return ExportResult(final, version, scores, texts, time.monotonic() - started, int8, generator_8bit)


def copy_checkpoint(checkpoint: Path, target: Path) -> Path:
    """The files that make a checkpoint loadable (not a run folder's intermediate checkpoints or optimiser)."""
    import shutil

    from .checkpoint_files import CONFIG_FILE
    from .model import ADAPTER_FOLDER, HEADS_FILE
    from .train import METADATA_FILE

    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(checkpoint / ADAPTER_FOLDER, target / ADAPTER_FOLDER, dirs_exist_ok=True)
    for name in (HEADS_FILE, CONFIG_FILE, METADATA_FILE):
        if (checkpoint / name).exists():
            shutil.copyfile(checkpoint / name, target / name)
    return target
