"""Would a score head still rank items like PyTorch once its scoring graph ships as int8?

``trail export --quantize`` publishes the int8 scoring graph only if it ranks the 24 verification items with
Spearman >= :data:`~training.quantize.MIN_INT8_SPEARMAN` against PyTorch. Only the LLM below the head is quantised
(the head stays fp32), so the int8 graph's score is exactly ``head(int8 prompt state)``. This module computes those
int8 states once per LLM — the scoring graph without its head, exported and quantised as the export does, run in
the export check's batches — and then checks any head against them in microseconds. The head refit uses it to keep
only epochs that the export will accept: a longer-trained head can amplify int8 error past the bar.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trail.signals import TrendSignals

from .metrics import spearman
from .model import ScoreHead, TrailModel, head_inputs
from .quantize import DEFAULT_FP32_MATMULS, MIN_INT8_SPEARMAN, quantize_linear_layers
from .state_cache import cached_tensor

__all__ = ["Int8Guard", "int8_guard"]

GUARD_FORMAT = "int8-guard-v1"  # part of the cache key: bump when the int8 recipe or the batching changes


@dataclass(frozen=True)
class Int8Guard:
    fp32_states: torch.Tensor  # (N, H) PyTorch prompt states of the verification items
    int8_states: torch.Tensor  # (N, H) the same states from the int8 graph
    features: torch.Tensor
    current_log: torch.Tensor
    min_spearman: float = MIN_INT8_SPEARMAN

    @torch.no_grad()
    def spearman(self, head: ScoreHead) -> float:
        """Spearman of ``head``'s scores on int8 states against its scores on PyTorch states."""
        was_training = head.training
        head.eval()
        reference = head(self.fp32_states, self.features, self.current_log).numpy().astype(np.float64)
        quantised = head(self.int8_states, self.features, self.current_log).numpy().astype(np.float64)
        head.train(was_training)
        return float(spearman(quantised, reference))


def int8_guard(model: TrailModel, signals: Sequence[TrendSignals] | None = None,
               min_spearman: float = MIN_INT8_SPEARMAN, cache: Path | None = None, llm_key: str = "") -> Int8Guard:
    """The guard for ``model``'s LLM on ``signals`` (default: the export's verification items).

    ``cache`` / ``llm_key`` as in :func:`training.head_refit.prompt_states`: the export and quantisation (a minute or
    two for SmolLM2 on a CPU) then run once per LLM."""
    from .export import VERIFICATION_BATCH, verification_signals

    signals = list(signals if signals is not None else verification_signals())
    prompts = [model.config.render_prompt(s) for s in signals]
    use_cache = cache if llm_key else None
    batches = [prompts[i: i + VERIFICATION_BATCH] for i in range(0, len(prompts), VERIFICATION_BATCH)]
    fp32 = cached_tensor(use_cache, [llm_key, GUARD_FORMAT, "fp32", *prompts],  # the check's reference, batch by batch
                         lambda: torch.cat([model.prompt_states(batch, len(batch)) for batch in batches]))
    import onnxruntime

    int8 = cached_tensor(use_cache, [llm_key, GUARD_FORMAT, onnxruntime.__version__, *DEFAULT_FP32_MATMULS, *prompts],
                         lambda: _int8_prompt_states(model, signals, VERIFICATION_BATCH))
    return Int8Guard(fp32, int8, *head_inputs(signals), min_spearman=min_spearman)


def _int8_prompt_states(model: TrailModel, signals: Sequence[TrendSignals], batch_size: int) -> torch.Tensor:
    import onnxruntime as ort

    from .export import OPSET, PromptStateGraph, merged_scoring_graph, register_vmap_free_masks, score_inputs

    register_vmap_free_masks()
    graph = PromptStateGraph(merged_scoring_graph(model)).eval()
    example = score_inputs(model, signals[:4])
    names = ["input_ids", "attention_mask"]
    with tempfile.TemporaryDirectory(prefix="trail-int8-guard-") as scratch:
        fp32_path, int8_path = Path(scratch) / "states.onnx", Path(scratch) / "states.int8.onnx"
        with torch.no_grad():
            torch.onnx.export(graph, tuple(torch.from_numpy(example[n]) for n in names), str(fp32_path), dynamo=False,
                              opset_version=OPSET, input_names=names, output_names=["state"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"}, "state": {0: "batch"}})
        quantize_linear_layers(fp32_path, int8_path)
        session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
        states = []
        for start in range(0, len(signals), batch_size):  # the export check's batches: int8 scales are per batch
            inputs = score_inputs(model, signals[start: start + batch_size])
            states.append(session.run(["state"], {n: inputs[n] for n in names})[0])
    return torch.from_numpy(np.concatenate(states)).float()
