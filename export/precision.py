"""fp16 and int8 variants of exported graphs, with ONNX Runtime's own converters."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and arithmetic for GPU nodes; inputs and outputs stay float32 so the
    engine feeds every precision the same arrays."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


def to_int8(model: onnx.ModelProto, out_path: Path, nodes: list[str] | None = None) -> None:
    """Dynamic int8: int8 weights, activations quantized per call (no calibration set).

    ``nodes`` limits quantization to weight MatMuls; attention score products between two
    activations lose accuracy when quantized and gain nothing on this model's sizes.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, src)
        quantize_dynamic(
            src,
            out_path,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            op_types_to_quantize=["MatMul"],
        )
