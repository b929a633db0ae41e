"""The outlier-aware int8 scoring graph quantises the decoder's linear layers and nothing that it lists as fp32."""

from __future__ import annotations

from pathlib import Path

import onnx

from training.export import export_scoring_graph, verification_signals
from training.model import TrailModel
from training.quantize import quantize_linear_layers

from .test_model import TINY

QUANTISED_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear")


def test_the_score_head_and_the_outlier_matmuls_stay_fp32(tmp_path: Path) -> None:
    model = TrailModel.create(TINY).eval()
    export_scoring_graph(model, verification_signals()[:4], tmp_path / "score.onnx")
    quantize_linear_layers(tmp_path / "score.onnx", tmp_path / "score.int8.onnx")
    nodes = onnx.load(str(tmp_path / "score.int8.onnx")).graph.node
    quantised = [n.name for n in nodes if n.op_type in QUANTISED_OPS or n.name.endswith("_quant")]
    assert any("q_proj" in name for name in quantised) and any("gate_proj" in name for name in quantised)
    # the head is exported as Gemm, which quantize_dynamic renames before excluding: it must still stay fp32
    assert not [name for name in quantised if name.startswith("/head/") or "down_proj" in name], quantised
