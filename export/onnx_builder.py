"""A small helper to write ONNX graphs node by node with onnx.helper.

The Bergamot network is tiny and fixed, so emitting its graph directly keeps the export
free of PyTorch (a requirement: serving and this export must not need it) and lets every
weight MatMul carry a stable name that the int8 quantizer can select.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization is a core op from 17 on


class GraphBuilder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._ids = itertools.count()
        self._consts: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._ids)}"

    def input(self, name: str, elem: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, value: str, name: str, elem: int, shape: list) -> str:
        self.op("Identity", [value], name=name, out=name)
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.weight(self.fresh("const"), arr)
        return self._consts[key]

    def op(
        self,
        op_type: str,
        inputs: list[str],
        *,
        name: str | None = None,
        out: str | None = None,
        **attrs,
    ) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=name or self.fresh(op_type), **attrs)
        )
        return out

    # -- layers --------------------------------------------------------------------------

    def linear(self, x: str, w: str, b: str | None, name: str) -> str:
        """x @ w (+ b); the MatMul is named ``name`` so quantization can target it."""
        y = self.op("MatMul", [x, w], name=name)
        return self.op("Add", [y, b]) if b else y

    def layer_norm(self, x: str, scale: str, bias: str, eps: float = 1e-6) -> str:
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def model(self, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="mt-backend export",
            doc_string=doc,
        )
        model.ir_version = 8  # readable by older ONNX Runtime builds (Triton images)
        onnx.checker.check_model(model)
        return model


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
