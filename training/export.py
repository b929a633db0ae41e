"""Export a TRAIL checkpoint to ONNX: the scoring graph (backbone with the LoRA adapter merged + score head).

The scoring graph takes what a thin client can compute without torch — token ids of :func:`trail.prompt.render_prompt`
(right-padded), the attention mask, :func:`trail.features.model_features` and ``log1p`` of the current count —
and returns the predicted ``log1p(next count)``. Position ids are derived from the mask inside the graph, so the
same graph serves any batch. :func:`verify_scores` compares it with PyTorch on real prompts; a graph that misses the
tolerance is never published.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from trail.features import model_features
from trail.prompt import render_prompt
from trail.signals import TrendSignals

from .model import ScoreHead, TrailModel

__all__ = ["SCORE_INPUTS", "ScoringGraph", "export_scoring_graph", "onnx_scores", "verify_scores"]

SCORE_INPUTS = ("input_ids", "attention_mask", "features", "current_log_count")
SCORE_OUTPUT = "log_count"
OPSET = 17


class ScoringGraph(nn.Module):
    """Merged decoder + score head as one traceable module."""

    def __init__(self, decoder: nn.Module, head: ScoreHead) -> None:
        super().__init__()
        self.decoder = decoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: torch.Tensor,
                current_log_count: torch.Tensor) -> torch.Tensor:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False).last_hidden_state
        last = attention_mask.sum(-1) - 1
        at_prompt_end = hidden[torch.arange(hidden.shape[0]), last]
        return self.head(at_prompt_end, features, current_log_count)


def merged_scoring_graph(model: TrailModel) -> ScoringGraph:
    """A copy of the model with the LoRA weights folded into the base weights (the model itself is untouched)."""
    merged = copy.deepcopy(model.lm).merge_and_unload()
    merged.eval()
    return ScoringGraph(merged.model, copy.deepcopy(model.score_head)).eval()


def score_inputs(model: TrailModel, signals: Sequence[TrendSignals]) -> dict[str, np.ndarray]:
    """The scoring graph's inputs for a batch (what the embedded and Triton backends compute too)."""
    batch = model.encode([render_prompt(s) for s in signals])
    return {
        "input_ids": batch.input_ids.numpy().astype(np.int64),
        "attention_mask": batch.attention_mask.numpy().astype(np.int64),
        "features": model_features(signals),
        "current_log_count": np.log1p(np.array([s.item.count for s in signals], dtype=np.float32)),
    }


def _register_vmap_free_masks() -> None:
    """transformers' default sdpa mask uses vmap, which the TorchScript ONNX exporter cannot trace."""
    from optimum.exporters.onnx.model_patcher import sdpa_mask_without_vmap
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", sdpa_mask_without_vmap)


def export_scoring_graph(model: TrailModel, example_signals: Sequence[TrendSignals], path: Path) -> Path:
    """Write ``path`` (an ONNX file, weights inline when under 2 GB) for ``model``'s scoring graph."""
    _register_vmap_free_masks()
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
                  batch_size: int = 8) -> ScoreCheck:
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
