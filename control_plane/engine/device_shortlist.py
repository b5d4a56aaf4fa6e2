"""Each sentence's shortlist and the batch's output layer, computed on the device.

The GPU check of 2026-11-30 (bench/results/gpu) profiled a 1,024-sentence batch: with
the decoder state already on the card, most of a batch's time was host numpy building
the shortlist (Shortlist.batch_mask, the column union, taking out_w's columns), while
the H200 sat at ~30% utilisation. One ONNX graph does all of it where the decoder runs,
from the source ids alone, with Shortlist.candidates' exact rules (the tests compare):

- candidates of row r = ids [0, first) + the lists of r's source words (words past the
  vocabulary dropped), then padded to a multiple of 8 with the smallest unused ids from
  ``first`` on: a cumulative sum over the rest of the vocabulary finds them, so a row
  whose first unused ids lie far away needs no special case;
- the batch's columns = the union of its rows' candidates (NonZero of a column maximum);
- out_w = those columns of the output layer, logit bias = the column's output bias
  (-inf for <unk>) where the row allows it, else -inf.

Masks are float32 0/1 (exact; every op has float kernels on the CUDA EP). A batch of
1,024 rows holds a [1024, vocab] mask, 131 MB, for the graph's duration.

Measured on the H200 it lost: 2.82M words/min against 5.22M for the host's numpy with 4
lanes, side by side (bench/results/gpu/runs-2026-11-30.md) - the vocabulary-wide masks
and cumulative sum made the card the bottleneck. So it is opt-in
(``BergamotModel(device_shortlist=True)``); a version that pads from a small window of
ids after ``first`` (the host's Shortlist._pad_to_eight) might turn that around.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from control_plane.engine.device_loop import model_bytes, onnx_elem
from control_plane.engine.shortlist import Shortlist

# lists longer than this make the [B, T, L] gather too large; the host path serves them
MAX_LIST = 256


def shortlist_model(first: int, vocab: int, out_type: type) -> bytes:
    """Inputs: ``ids`` [B, T] int64 (source ids mapped into ``lists``' rows), ``lists``
    [R, L] int64 (each source word's candidates, padded with 0), ``colbias`` [V] float32,
    ``table`` [D, V] (``out_type``). Outputs: ``cols`` [U] int64, ``out_w`` [D, U],
    ``bias`` [B, U] float32."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, dtype: int, dims: list[int], vals: list) -> onnx.TensorProto:
        return helper.make_tensor(name, dtype, dims, vals)

    F, I64 = TensorProto.FLOAT, TensorProto.INT64
    consts = [
        const("c_v", I64, [1], [vocab]),
        const("c_first", I64, [1], [first]),
        const("c_zero", I64, [1], [0]),
        const("c_one", I64, [1], [1]),
        const("c_minus1", I64, [1], [-1]),
        const("c_axis0", I64, [1], [0]),
        const("c_axis1", I64, [1], [1]),
        const("f_eight", F, [], [8.0]),
        const("f_ninf", F, [], [float("-inf")]),
        # 1 on ids [0, first): always candidates
        helper.make_tensor("first_ids", F, [vocab], [1.0] * first + [0.0] * (vocab - first)),
    ]
    n = helper.make_node
    nodes = [
        # every source word's list, laid out per row: [B, T*L]
        n("Gather", ["lists", "ids"], ["cand3"], axis=0),
        n("Shape", ["ids"], ["ids_shape"]),
        n("Slice", ["ids_shape", "c_zero", "c_one"], ["b"]),
        n("Concat", ["b", "c_minus1"], ["flat_shape"], axis=0),
        n("Reshape", ["cand3", "flat_shape"], ["cand"]),
        n("Concat", ["b", "c_v"], ["mask_shape"], axis=0),
        n("ConstantOfShape", ["mask_shape"], ["zeros"], value=const("z", F, [1], [0.0])),
        n("Shape", ["cand"], ["cand_shape"]),
        n("ConstantOfShape", ["cand_shape"], ["ones"], value=const("o", F, [1], [1.0])),
        n("ScatterElements", ["zeros", "cand", "ones"], ["listed"], axis=1),
        n("Max", ["listed", "first_ids"], ["mask0"]),
        # pad each row to a multiple of 8 with its smallest unused ids >= first
        n("ReduceSum", ["mask0", "c_axis1"], ["count"], keepdims=1),
        n("Mod", ["count", "f_eight"], ["rem"], fmod=1),
        n("Sub", ["f_eight", "rem"], ["eight_minus"]),
        n("Mod", ["eight_minus", "f_eight"], ["missing"], fmod=1),
        n("Slice", ["mask0", "c_first", "c_v", "c_axis1"], ["rest"]),
        n("Slice", ["mask0", "c_zero", "c_first", "c_axis1"], ["head"]),
        n("Sub", ["o_scalar", "rest"], ["free"]),
        n("CumSum", ["free", "c_axis1_scalar"], ["rank"]),
        n("LessOrEqual", ["rank", "missing"], ["within"]),
        n("Cast", ["within"], ["within_f"], to=F),
        n("Mul", ["free", "within_f"], ["added"]),
        n("Add", ["rest", "added"], ["rest_padded"]),
        n("Concat", ["head", "rest_padded"], ["mask"], axis=1),
        # the batch's columns and each row's share of them
        n("ReduceMax", ["mask"], ["colmask"], axes=[0], keepdims=0),
        n("NonZero", ["colmask"], ["nz"]),
        n("Squeeze", ["nz", "c_axis0"], ["cols"]),
        n("Gather", ["mask", "cols"], ["allowed_f"], axis=1),
        n("Cast", ["allowed_f"], ["allowed"], to=TensorProto.BOOL),
        n("Gather", ["colbias", "cols"], ["cb"], axis=0),
        n("Where", ["allowed", "cb", "f_ninf"], ["bias"]),
        n("Gather", ["table", "cols"], ["out_w"], axis=1),
    ]
    consts += [
        const("o_scalar", F, [], [1.0]),
        const("c_axis1_scalar", I64, [], [1]),
    ]
    graph = helper.make_graph(
        nodes,
        "device_shortlist",
        [
            helper.make_tensor_value_info("ids", I64, ["b", "t"]),
            helper.make_tensor_value_info("lists", I64, ["r", "l"]),
            helper.make_tensor_value_info("colbias", F, [vocab]),
            helper.make_tensor_value_info("table", onnx_elem(out_type), ["d", vocab]),
        ],
        [
            helper.make_tensor_value_info("cols", I64, ["u"]),
            helper.make_tensor_value_info("out_w", onnx_elem(out_type), ["d", "u"]),
            helper.make_tensor_value_info("bias", F, ["b", "u"]),
        ],
        consts,
    )
    return model_bytes(graph)


class DeviceShortlist:
    """The shortlist graph with its tables uploaded once. ``upload(array, dtype)`` puts an
    array on the device; ``make_session(model_bytes)`` builds a session there."""

    def __init__(
        self,
        shortlist: Shortlist,
        vocab: int,
        out_bias: np.ndarray,
        unk: int,
        out_table: np.ndarray,
        make_session: Callable[[bytes], object],
        upload: Callable[[np.ndarray, type], object],
        device: tuple[str, int],
    ) -> None:
        lengths = np.diff(shortlist.offsets)
        if shortlist.first < 1 or len(lengths) == 0 or int(lengths.max()) > MAX_LIST:
            raise ValueError("shortlist unsuited to the device graph (first 0 or long lists)")
        width = max(1, int(lengths.max()))
        rows = len(lengths)
        # one extra all-zero row: where ids outside the table go (they add nothing)
        lists = np.zeros((rows + 1, width), dtype=np.int64)
        col = np.arange(len(shortlist.lists)) - np.repeat(shortlist.offsets[:-1], lengths)
        row = np.repeat(np.arange(rows), lengths)
        words = shortlist.lists.copy()
        words[words >= vocab] = 0  # past the vocabulary: dropped (0 is always a candidate)
        lists[row, col] = words
        colbias = np.asarray(out_bias, dtype=np.float32).copy()
        if 0 <= unk < vocab:
            colbias[unk] = -np.inf
        self.rows = rows
        self.device = device
        self._session = make_session(
            shortlist_model(min(shortlist.first, vocab), vocab, out_table.dtype.type)
        )
        self._lists = upload(lists, np.int64)
        self._colbias = upload(colbias, np.float32)
        self._table = upload(out_table, out_table.dtype.type)

    def map_ids(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Source ids [B, T] as rows of ``lists``: padding (``mask`` 0) and ids outside the
        table go to the empty last row, so a row's candidates come from its own words."""
        real = (mask > 0) & (ids >= 0) & (ids < self.rows)
        return np.where(real, ids, self.rows).astype(np.int64)

    def layer(self, ids) -> tuple[object, object, object]:  # noqa: ANN001 - OrtValue
        """(cols, out_w, bias) OrtValues on the device for mapped source ids [B, T]."""
        io = self._session.io_binding()
        io.bind_ortvalue_input("ids", ids)
        io.bind_ortvalue_input("lists", self._lists)
        io.bind_ortvalue_input("colbias", self._colbias)
        io.bind_ortvalue_input("table", self._table)
        for name in ("cols", "out_w", "bias"):
            io.bind_output(name, *self.device)
        self._session.run_with_iobinding(io)
        cols, out_w, bias = io.get_outputs()
        return cols, out_w, bias
