"""fp16 conversion: the fixes applied on top of ONNX Runtime's converter."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.precision import drop_duplicate_nodes, to_fp16


def test_identical_nodes_are_kept_once():
    """The graph onnxruntime < 1.32's converter writes: one Cast twice."""
    cast = helper.make_node("Cast", ["x"], ["x32"], name="x_cast", to=TensorProto.FLOAT)
    add = helper.make_node("Add", ["x32", "x32"], ["y"], name="add")
    graph = helper.make_graph(
        [cast, onnx.NodeProto.FromString(cast.SerializeToString()), add],
        "dup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert [n.name for n in drop_duplicate_nodes(model).graph.node] == ["x_cast", "add"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.array([1, 2], np.float16)})
    assert y.tolist() == [2.0, 4.0]


def test_fp16_graph_of_the_device_step_loads():
    from export.bergamot import STEP_FP32_IO, STEP_FP32_NODES, build_decoder_step
    from tests.unit.engine.test_bergamot_graphs import random_weights

    model = to_fp16(build_decoder_step(random_weights()), STEP_FP32_IO, STEP_FP32_NODES)
    outputs = [o for n in model.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs))  # one writer per tensor
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
