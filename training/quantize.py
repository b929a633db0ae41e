"""Outlier-aware int8 quantisation of the scoring graph for CPUs.

Plain dynamic int8 over every MatMul ruins SmolLM2 (DESIGN.md: score Spearman 0.38): the activations entering each
MLP's ``down_proj`` carry huge outliers (max ~2,370 vs a median ~0.15), and per-tensor dynamic activation scales
crush everything else to zero. Those MatMuls stay fp32 here; every other linear layer (attention projections,
gate/up) is quantised dynamically with per-channel weights. The score head stays fp32 too (tiny, and the last
step before the number that ranks items).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["DEFAULT_FP32_MATMULS", "MIN_INT8_SPEARMAN", "quantize_scoring_graph"]

DEFAULT_FP32_MATMULS = ("down_proj", "head", "rotary_emb", "self_attn/MatMul")
# An int8 scoring graph ships only if it ranks the verification items this much like PyTorch (export, refit).
MIN_INT8_SPEARMAN = 0.99


def quantize_scoring_graph(source: Path, target: Path, keep_fp32: Sequence[str] = DEFAULT_FP32_MATMULS) -> list[str]:
    """Write the int8 graph to ``target``; returns the names of the MatMuls kept in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [node.name for node in graph.node
                if node.op_type in ("MatMul", "Gemm") and any(part in node.name for part in keep_fp32)]
    # quantize_dynamic first rewrites each Gemm as a MatMul named "<gemm>_MatMul" and matches the exclusions against
    # that name: without it the head's Linear layers (exported as Gemm) were quantised despite being listed.
    excluded += [f"{node.name}_MatMul" for node in graph.node if node.op_type == "Gemm" and node.name in excluded]
    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                     weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    return excluded
