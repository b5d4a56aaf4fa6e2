"""fp16 and int8 variants of exported graphs, with ONNX Runtime's own converters."""

from __future__ import annotations

from pathlib import Path

import onnx


def to_fp16(
    model: onnx.ModelProto,
    keep_io: tuple[str, ...] | None = None,
    fp32_nodes: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """fp16 weights and arithmetic for GPU nodes. By default inputs and outputs stay
    float32 so the engine feeds every precision the same arrays; ``keep_io`` names the
    only ones that stay float32 (the others become float16: tensors a device loop keeps on
    the GPU between steps would otherwise be cast again at every step). ``fp32_nodes``
    stay float32 inside the graph."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(
        model,
        keep_io_types=True if keep_io is None else list(keep_io),
        disable_shape_infer=False,
        node_block_list=list(fp32_nodes) or None,
    )
    return drop_duplicate_nodes(converted)


def drop_duplicate_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Byte-identical nodes (and value infos) kept once, in place.

    onnxruntime < 1.32's converter (the GPU machine's onnxruntime-gpu 1.31 is one) inserts
    the same Cast twice when one float16 tensor feeds two nodes kept in float32 - two
    nodes writing one tensor, which ORT refuses to load (seen on decoder_step.fp16.onnx).
    The copies are identical, so keeping the first is the graph ORT 1.32 writes."""
    for field in (model.graph.node, model.graph.value_info):
        seen: set[bytes] = set()
        keep = []
        for item in field:
            key = item.SerializeToString()
            if key not in seen:
                seen.add(key)
                keep.append(item)
        if len(keep) < len(field):
            del field[:]
            field.extend(keep)
    return model


def to_int8(model: onnx.ModelProto, out_path: Path, nodes: list[str] | None = None) -> None:
    """int8 weights in blocks of 32 (ONNX Runtime's MatMulNBits, 8 bits, symmetric) with
    int8 arithmetic on activations quantized per row and block (accuracy_level 4).

    Why not ``quantize_dynamic``: it quantizes activations with one scale per tensor, i.e.
    per BATCH, so a sentence's translation changed with its batch neighbours (seen on 9 of
    48 sentences) - fatal for a segment cache. Per-row blocks keep batch independence and,
    on the gettext sets, cost at most 0.16 BLEU against fp32 (per-tensor dynamic: 1.07).
    ``nodes`` limits quantization to weight MatMuls (not attention products, not the
    output layer whose weights arrive as an input).
    """
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs every node at INFO on the root logger
    try:
        quantizer = MatMulNBitsQuantizer(
            onnx.ModelProto.FromString(model.SerializeToString()),
            bits=8,
            block_size=32,
            is_symmetric=True,
            accuracy_level=4,
            nodes_to_include=nodes,
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(out_path))
    finally:
        root.setLevel(level)
