"""int8 quantisation of the decoder's linear layers for CPUs: the scoring graph (``--quantize``, outlier-aware dynamic
int8) and the generator (``--quantize-generator``, 8-bit weights in blocks, :func:`quantize_generator_weights`).

Plain dynamic int8 over every MatMul ruins SmolLM2 (DESIGN.md: score Spearman 0.38): the activations entering each
MLP's ``down_proj`` carry huge outliers (max ~2,370 vs a median ~0.15), and per-tensor dynamic activation scales
crush everything else to zero. Those MatMuls stay fp32 here; every other linear layer (attention projections,
gate/up) is quantised dynamically with per-channel weights. The score head stays fp32 too (tiny, and the last
step before the number that ranks items).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["DEFAULT_FP32_MATMULS", "MIN_INT8_SPEARMAN", "quantize_generator_weights", "quantize_linear_layers"]

DEFAULT_FP32_MATMULS = ("down_proj", "head", "rotary_emb", "self_attn/MatMul")
# An int8 scoring graph ships only if it ranks the verification items this much like PyTorch (export, refit).
MIN_INT8_SPEARMAN = 0.99


def quantize_linear_layers(source: Path, target: Path, keep_fp32: Sequence[str] = DEFAULT_FP32_MATMULS) -> list[str]:
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


# the generator's weights: 8 bits, one scale per block of this many input channels (ORT's MatMulNBits)
GENERATOR_WEIGHT_BITS = 8
GENERATOR_WEIGHT_BLOCK = 32


def quantize_generator_weights(source: Path, target: Path) -> None:
    """Write ``source`` with every weight MatMul (the attention and MLP projections, ``lm_head``) replaced by
    ORT's ``MatMulNBits``: 8-bit weights, symmetric, one scale per block of 32 input channels. Blocks of 128
    prefill faster (1.35x fp32 on this CPU against 1.15x; decoding steps 1.3x with either), but their texts verified
    less often: Stack Exchange's published model share fell to 35 of 40 (32: 40 of 40; fp32: 39 of 40).

    Why not :func:`quantize_linear_layers` for the generator: its dynamic int8 quantises each MatMul's activations
    with one scale for the whole batch, so a row's logits depend on the other rows decoded with it (measured:
    max |diff| 13 between a row alone and in a batch of 4) and an item's text on its batch-mates. MatMulNBits
    quantises activations per row and block (``accuracy_level`` 4: int8 products on VNNI), so a row's logits are
    the same alone or beside other rows of its length (tested), and the blocks keep ``down_proj``'s outliers from
    crushing the rest, so no layer needs to stay fp32. Not exactly batch-free either: a batch left-pads its shorter
    rows, which moves the attention's float sums by rounding, and quantising the next layer's input can turn such a
    difference into another token (README: 9 of 10 batched texts were the sequential ones, fp32 10 of 10). Weights
    dequantised to fp32 products instead (``accuracy_level`` 1) ran 3.8x slower than fp32 on this CPU."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=GENERATOR_WEIGHT_BITS,
                                     block_size=GENERATOR_WEIGHT_BLOCK, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    onnx.save(quantizer.model.model, str(target))
