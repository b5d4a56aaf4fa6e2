"""Greedy decoding with the decoder state resident on the execution device.

The host loop (BergamotModel._greedy) hands every step's tensors to ONNX Runtime as
numpy arrays and gets the whole log-probability matrix back: on a GPU each step would
copy the states, the cross-attention keys/values of every source token and the scores
between host and device. Here everything a step needs lives in OrtValues on the device
(IOBinding): the encoder's keys/values, the SSRU states, the masks, the shortlist's output
layer and the embedding table. The ``decoder_step`` graph looks up the previous token's
embedding, takes the argmax and the chosen token's log-probability itself, and writes
``next_ids``/``new_state_*``/``next_step`` into buffers that the next step reads (two
buffer sets used in turn), so per step only ``next_ids`` and ``next_logprob`` - 12 bytes
per sentence - reach the host, which decides which sentences are finished.

Shapes stay fixed per bucket (control_plane.engine.buckets): a batch is padded to a power
of two of rows, and finished rows stay in place until the live ones fit half the bucket;
then one small ``gather`` graph copies the live rows into buffers of the smaller bucket
on the device. On the CPU execution provider the "device" is host memory and the same
code runs (the tests compare it with the host loop token for token there).

StaticDeviceLoop is the variant for CUDA graph capture (ORT's ``enable_cuda_graph``): a
captured graph replays with the addresses and shapes it was captured with, so there every
tensor a step reads or writes is a buffer allocated once per shape and refilled in place,
sources are padded to MAX_SOURCE_TOKENS and the shortlist columns to a power of two, and
each (bucket, columns, parity) shape has its own ``gpu_graph_id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from control_plane.engine.buckets import bucket_for, cands_bucket, compaction, pad_rows

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def device_of(session) -> tuple[str, int]:  # noqa: ANN001 - onnxruntime.InferenceSession
    """(OrtValue device type, device id) where ``session`` computes."""
    providers = session.get_providers()
    if providers and providers[0] in GPU_PROVIDERS:
        options = session.get_provider_options().get(providers[0], {})
        return "cuda", int(options.get("device_id", 0))
    return "cpu", 0


def onnx_elem(dtype: type) -> int:
    """The ONNX element type of a numpy scalar type (the loop's graphs use these three)."""
    from onnx import TensorProto

    return {
        np.float32: TensorProto.FLOAT,
        np.float16: TensorProto.FLOAT16,
        np.int64: TensorProto.INT64,
    }[dtype]


def model_bytes(graph) -> bytes:  # noqa: ANN001 - onnx.GraphProto
    """The loop's small helper graphs as a checked model (opset 17, IR 8: what the
    onnxruntime versions in use accept)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def gather_rows_model(
    types_in: list[type],
    types_out: list[type],
    ranks: list[int],
    pad_axes: list[int | None] | None = None,
) -> bytes:
    """An ONNX graph: ``idx`` [N] int64 and tensors ``t_i`` -> ``g_i`` = the rows ``idx``
    of ``t_i`` (axis 0), cast to ``types_out[i]``. The loop's one device-side copy: it
    pads a new batch to its bucket (and casts the encoder's float32 keys/values to a
    float16 decoder's type) and compacts finished rows away, without a host round trip.
    ``pad_axes``: per tensor, an axis zero-padded at its end by the ``pad`` input ([1]
    int64), or None (StaticDeviceLoop pads sources to a fixed length)."""
    from onnx import TensorProto, helper

    nodes, inputs, outputs = (
        [],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["n"])],
        [],
    )
    pad_axes = pad_axes or [None] * len(types_in)
    if any(a is not None for a in pad_axes):
        inputs.append(helper.make_tensor_value_info("pad", TensorProto.INT64, [1]))
    consts = []
    for i, (a, b, rank) in enumerate(zip(types_in, types_out, ranks, strict=True)):
        inputs.append(
            helper.make_tensor_value_info(
                f"t_{i}", onnx_elem(a), [f"d{i}_{r}" for r in range(rank)]
            )
        )
        out_shape = ["n"] + [f"d{i}_{r}" for r in range(1, rank)]
        outputs.append(helper.make_tensor_value_info(f"g_{i}", onnx_elem(b), out_shape))
        last = f"t_{i}"
        nodes.append(helper.make_node("Gather", [last, "idx"], [f"rows_{i}"], axis=0))
        last = f"rows_{i}"
        axis = pad_axes[i]
        if axis is not None:  # pads = [0]*rank (starts) + [0..0, pad, 0..0] (ends)
            before = helper.make_tensor(
                f"pads_a_{i}", TensorProto.INT64, [rank + axis], [0] * (rank + axis)
            )
            after = helper.make_tensor(
                f"pads_b_{i}", TensorProto.INT64, [rank - axis - 1], [0] * (rank - axis - 1)
            )
            consts += [before, after]
            nodes.append(
                helper.make_node("Concat", [before.name, "pad", after.name], [f"pads_{i}"], axis=0)
            )
            nodes.append(helper.make_node("Pad", [last, f"pads_{i}"], [f"padded_{i}"]))
            last = f"padded_{i}"
        if a is not b:
            nodes.append(helper.make_node("Cast", [last], [f"g_{i}"], to=onnx_elem(b)))
        else:
            nodes.append(helper.make_node("Identity", [last], [f"g_{i}"]))
    graph = helper.make_graph(nodes, "gather_rows", inputs, outputs, consts)
    return model_bytes(graph)


def embed_model(table_type: type, out_type: type) -> bytes:
    """An ONNX graph: ``ids`` [B, T] int64, ``table`` [V, D] and ``positions`` [P, D] ->
    ``embeds`` [B, T, D] = table[ids] + positions[:T], the encoder's input. Done on the
    host it was the largest cost of a 1,000-sentence GPU batch after the shortlist (a
    33 MB gather plus its upload); here only the ids (8 bytes a token) cross."""
    from onnx import TensorProto, helper

    zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        helper.make_node("Shape", ["ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", "one"], ["t"], axis=0),
        helper.make_node("Slice", ["positions", "zero", "t", "zero"], ["pos"]),
        helper.make_node("Add", ["rows", "pos"], ["sum"]),
    ]
    nodes.append(
        helper.make_node("Cast", ["sum"], ["embeds"], to=onnx_elem(out_type))
        if table_type is not out_type
        else helper.make_node("Identity", ["sum"], ["embeds"])
    )
    graph = helper.make_graph(
        nodes,
        "embed",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"]),
            helper.make_tensor_value_info("table", onnx_elem(table_type), ["v", "d"]),
            helper.make_tensor_value_info("positions", onnx_elem(table_type), ["p", "d"]),
        ],
        [helper.make_tensor_value_info("embeds", onnx_elem(out_type), ["b", "t", "d"])],
        [zero, one],
    )
    return model_bytes(graph)


def bias_model() -> bytes:
    """An ONNX graph: ``allowed`` [B, U] bool and ``colbias`` [U] float32 -> ``bias`` [B, U]
    = colbias where allowed, else -inf: each row's shortlist as the step's logit bias.
    The host used to build that float matrix (71 MB for 992 sentences over 17,820 columns:
    140 ms of numpy a batch); a quarter of the bytes cross as bools instead."""
    from onnx import TensorProto, helper

    ninf = helper.make_tensor("ninf", TensorProto.FLOAT, [], [float("-inf")])
    graph = helper.make_graph(
        [helper.make_node("Where", ["allowed", "colbias", "ninf"], ["bias"])],
        "shortlist_bias",
        [
            helper.make_tensor_value_info("allowed", TensorProto.BOOL, ["b", "u"]),
            helper.make_tensor_value_info("colbias", TensorProto.FLOAT, ["u"]),
        ],
        [helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["b", "u"])],
        [ninf],
    )
    return model_bytes(graph)


class LoopStats:
    """Where a device loop's time goes, summed over its batches (lanes share one loop,
    hence the lock; one update per batch). ``slot_steps`` counts the rows each step
    computed (its bucket), ``row_steps`` those still live: their ratio is the share of the
    device's step work that produced a token, the rest is padding and finished rows
    waiting for a compaction. ``step_s`` is the host's time inside the step runs,
    ``sync_s`` reading each step's tokens back (on a GPU that copy waits for the step's
    kernels, so the two together are the decoding time). `bench gpu` reports them per
    point: the first GPU runs had a words/min figure and no way to tell launch overhead,
    kernel time and padding apart."""

    FIELDS = ("batches", "rows", "steps", "slot_steps", "row_steps", "compactions",
              "encode_s", "prepare_s", "step_s", "sync_s", "compact_s", "total_s")  # fmt: skip

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._v = _new_part()

    def reset(self) -> None:
        with self._lock:
            self._v = _new_part()

    def add(self, part: dict[str, float]) -> None:
        with self._lock:
            for k, v in part.items():
                self._v[k] += v

    def snapshot(self) -> dict[str, float]:
        """The sums, and per step / per batch figures derived from them."""
        with self._lock:
            v = dict(self._v)
        out = {k: (round(x, 4) if isinstance(x, float) else int(x)) for k, x in v.items()}
        steps, batches = v["steps"], v["batches"]
        if steps:
            out["ms_per_step"] = round((v["step_s"] + v["sync_s"]) / steps * 1000, 3)
            out["mean_bucket"] = round(v["slot_steps"] / steps, 1)
        if v["slot_steps"]:
            out["live_share"] = round(v["row_steps"] / v["slot_steps"], 3)
        if batches:
            out["steps_per_batch"] = round(steps / batches, 1)
        return out


def _new_part() -> dict[str, float]:
    return dict.fromkeys(LoopStats.FIELDS, 0)


class _Rows:
    """The host's side of one batch: which bucket slot holds which sentence, which slots
    are still live, and the tokens and log-probabilities gathered so far. A step's tokens
    are kept as arrays and sorted into sentences once at the end: a Python append per row
    and step was a tenth of a 1,024-row GPU batch's host time (and held the GIL)."""

    def __init__(self, n: int, bucket: int, slots: np.ndarray, limits: np.ndarray, eos: int):
        self.where = slots.copy()  # bucket slot -> row of the batch
        self.live = np.zeros(bucket, dtype=bool)
        self.live[:n] = True
        self.limits = limits
        self.eos = eos
        self.n = n
        self._owners: list[np.ndarray] = []  # per step: the rows that produced a token
        self._tokens: list[np.ndarray] = []  # ... and those tokens
        self.logprob = np.zeros(n, dtype=np.float64)
        self.t = 0  # steps run so far, over every bucket

    def record(self, ids: np.ndarray, lp: np.ndarray) -> int:
        """One step's tokens and log-probabilities into the live rows' results; rows
        that produced EOS or reached their length limit stop being live (their slots keep
        computing until a compaction, their outputs are ignored). Returns how many rows
        were live at this step (LoopStats' ``row_steps``)."""
        self.t += 1
        slots = np.flatnonzero(self.live)
        owners = self.where[slots]
        self.logprob[owners] += lp[slots]
        toks = ids[slots]
        ended = toks == self.eos
        self._owners.append(owners[~ended])
        self._tokens.append(toks[~ended])
        self.live[slots[ended | (self.t >= self.limits[owners])]] = False
        return len(slots)

    def compact(self, keep: np.ndarray) -> None:
        """Follow the rows into a bucket of ``len(keep)`` slots (live ones first)."""
        alive = int(self.live.sum())
        self.where = self.where[keep]
        self.live = np.zeros(len(keep), dtype=bool)
        self.live[:alive] = True

    @property
    def tokens(self) -> list[list[int]]:
        """Each row's tokens in step order."""
        if not self._owners:
            return [[] for _ in range(self.n)]
        owners = np.concatenate(self._owners)
        order = np.argsort(owners, kind="stable")  # stable: steps stay in order
        toks = np.concatenate(self._tokens)[order]
        ends = np.cumsum(np.bincount(owners, minlength=self.n))
        return [part.tolist() for part in np.split(toks, ends[:-1])]

    def results(self) -> list[tuple[list[int], float]]:
        tokens = self.tokens
        return [(tokens[r], float(self.logprob[r])) for r in range(self.n)]


class DeviceLoop:
    """Greedy decoding of one batch at a time with ``decoder_step`` on the device.

    ``make_session(model_bytes)`` builds a session on the same providers as the decoder
    (for the gather graphs). ``embeddings``: the scaled embedding table [V, D] (float32);
    ``positions``: the sinusoid table.
    """

    def __init__(
        self,
        encoder,  # noqa: ANN001 - onnxruntime.InferenceSession
        step,  # noqa: ANN001
        embeddings: np.ndarray,
        positions: np.ndarray,
        eos: int,
        layers: int,
        make_session: Callable[[bytes], object],
    ) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.encoder, self.step = encoder, step
        self.device, self.device_id = device_of(step)
        self.eos, self.layers = eos, layers
        self.types = {i.name: _NP[i.type] for i in step.get_inputs()}
        self.cross_names = [o.name for o in encoder.get_outputs()]
        self.state_names = [f"state_{i}" for i in range(1, layers + 1)]
        # one extra all-zero row: the "previous token" of step 0
        self.bos = len(embeddings)
        table = np.vstack([embeddings, np.zeros((1, embeddings.shape[1]), embeddings.dtype)])
        self._table = self._upload(table, self.types["embeddings"])
        self._positions = self._upload(positions, self.types["positions"])
        enc_types = [_NP[o.type] for o in encoder.get_outputs()]
        step_cross = [self.types[n] for n in self.cross_names]
        ranks = {i.name: len(i.shape) for i in step.get_inputs()}
        cross_ranks = [ranks[n] for n in self.cross_names]
        self._pad_cross = make_session(gather_rows_model(enc_types, step_cross, cross_ranks))
        # compacted together: mask, bias, previous ids, states, cross keys/values
        self._row_inputs = ["attention_mask", "logit_bias", "prev_ids"]
        self._row_inputs += self.state_names + self.cross_names
        row_types = [self.types[n] for n in self._row_inputs]
        row_ranks = [ranks[n] for n in self._row_inputs]
        self._compact = make_session(gather_rows_model(row_types, row_types, row_ranks))
        # the encoder's input on the device (float32 tables: the host's exact sums); the
        # step's own tables where they are float32 already (the extra row is never read)
        embeds_type = _NP[encoder.get_inputs()[0].type]
        self._embed = make_session(embed_model(np.float32, embeds_type))
        self._enc_table, self._enc_positions = self._table, self._positions
        if self.types["embeddings"] is not np.float32:
            self._enc_table = self._upload(embeddings, np.float32)
        if self.types["positions"] is not np.float32:
            self._enc_positions = self._upload(positions, np.float32)
        self._bias_graph = make_session(bias_model())
        self.stats = LoopStats()
        # set by the engine where the shortlist fits the device graph (device_shortlist)
        self.shortlist = None
        if self.types["logit_bias"] is not np.float32:
            raise ValueError("decoder_step's logit_bias must be float32 (bias_model)")

    # -- device buffers ------------------------------------------------------------------

    def _upload(self, array: np.ndarray, dtype: type):
        data = np.ascontiguousarray(array, dtype=dtype)
        return self._ort.OrtValue.ortvalue_from_numpy(data, self.device, self.device_id)

    def _empty(self, shape: list[int], dtype: type):
        return self._ort.OrtValue.ortvalue_from_shape_and_type(
            shape, dtype, self.device, self.device_id
        )

    def _gather(self, session, rows: np.ndarray, values: list) -> list:  # noqa: ANN001
        io = session.io_binding()
        io.bind_ortvalue_input("idx", self._upload(rows, np.int64))
        for i, v in enumerate(values):
            io.bind_ortvalue_input(f"t_{i}", v)
            io.bind_output(f"g_{i}", self.device, self.device_id)
        session.run_with_iobinding(io)
        return io.get_outputs()

    def _bindings(self, fixed: dict, sets: list[dict], logprob_out) -> list:  # noqa: ANN001
        """Two IOBindings: step t reads ``sets[t % 2]`` and writes ``sets[(t + 1) % 2]``."""
        out = []
        for k in (0, 1):
            io = self.step.io_binding()
            for name, value in fixed.items():
                io.bind_ortvalue_input(name, value)
            src, dst = sets[k], sets[1 - k]
            io.bind_ortvalue_input("prev_ids", src["ids"])
            io.bind_ortvalue_input("step", src["step"])
            io.bind_ortvalue_output("next_ids", dst["ids"])
            io.bind_ortvalue_output("next_step", dst["step"])
            io.bind_ortvalue_output("next_logprob", logprob_out)
            for i, name in enumerate(self.state_names, start=1):
                io.bind_ortvalue_input(name, src[name])
                io.bind_ortvalue_output(f"new_state_{i}", dst[name])
            out.append(io)
        return out

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> list:
        """The encoder's cross-attention keys/values for the batch (source ids [B, T],
        zero-padded), left on the device; the embeddings are looked up there too."""
        eio = self._embed.io_binding()
        eio.bind_cpu_input("ids", np.ascontiguousarray(ids, dtype=np.int64))
        eio.bind_ortvalue_input("table", self._enc_table)
        eio.bind_ortvalue_input("positions", self._enc_positions)
        eio.bind_output("embeds", self.device, self.device_id)
        self._embed.run_with_iobinding(eio)
        io = self.encoder.io_binding()
        io.bind_ortvalue_input("embeds", eio.get_outputs()[0])
        io.bind_cpu_input("attention_mask", np.ascontiguousarray(mask))
        for name in self.cross_names:
            io.bind_output(name, self.device, self.device_id)
        self.encoder.run_with_iobinding(io)
        return io.get_outputs()

    def _logit_bias(self, allowed: np.ndarray, colbias: np.ndarray, out=None):  # noqa: ANN001, ANN202
        """The logit bias [rows, U] on the device from each row's allowed columns; into
        ``out`` (a buffer of that shape) when given, else a new OrtValue."""
        io = self._bias_graph.io_binding()
        io.bind_cpu_input("allowed", np.ascontiguousarray(allowed, dtype=bool))
        io.bind_cpu_input("colbias", np.ascontiguousarray(colbias, dtype=np.float32))
        if out is None:
            io.bind_output("bias", self.device, self.device_id)
        else:
            io.bind_ortvalue_output("bias", out)
        self._bias_graph.run_with_iobinding(io)
        return out if out is not None else io.get_outputs()[0]

    def _steps(
        self,
        bindings: list,
        options: list,
        sets: list[dict],
        logprob_out: object,
        rows: _Rows,
        part: dict,
    ) -> tuple[np.ndarray, dict]:
        """Decoder steps on one bucket until the compaction policy says to move: (the
        slots to keep, the buffer set the last step wrote). Step j reads ``sets[j % 2]``
        and writes the other set. Times and counts go into ``part`` (LoopStats)."""
        j = 0
        clock = time.perf_counter
        step_s = sync_s = 0.0
        slots, live = len(rows.live), 0
        while True:
            k = j % 2
            t0 = clock()
            self.step.run_with_iobinding(bindings[k], options[k])
            t1 = clock()
            j += 1
            live += rows.record(sets[1 - k]["ids"].numpy(), logprob_out.numpy())
            sync_s += clock() - t1
            step_s += t1 - t0
            keep = compaction(rows.live, len(rows.live))
            if keep is not None:
                part["steps"] += j
                part["slot_steps"] += j * slots
                part["row_steps"] += live
                part["step_s"] += step_s
                part["sync_s"] += sync_s
                return keep, sets[j % 2]

    def _buffer_set(self, bucket: int) -> dict:
        d = self._table.shape()[1]
        s = {"ids": self._empty([bucket], np.int64), "step": self._empty([1], np.int64)}
        for name in self.state_names:
            s[name] = self._empty([bucket, d], self.types[name])
        return s

    # -- decoding ------------------------------------------------------------------------

    def greedy(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        cols: np.ndarray,
        out_w: np.ndarray,
        allowed: np.ndarray,
        colbias: np.ndarray,
        limits: np.ndarray,
    ) -> list[tuple[list[int], float]]:
        """(output ids without EOS, summed log-probability) per row of the batch.

        ``ids``/``mask``: the batch's source ids [B, T] (zero-padded) and their mask;
        ``cols``, ``out_w``: the output layer over the batch's shortlist columns,
        ``allowed`` [B, U] bool: each row's own shortlist among them, ``colbias`` [U]:
        the output bias of each column (-inf for a word never produced; see
        BergamotModel._shortlist_layer); ``limits``: the most steps per sentence.
        ``cols`` None: ``self.shortlist`` (DeviceShortlist) computes all four on the
        device from the ids.
        """
        clock, part = time.perf_counter, _new_part()
        t0 = clock()
        n = len(limits)
        bucket = bucket_for(n)
        encoded = self._encode(ids, mask)
        part["encode_s"] = clock() - t0
        rows = pad_rows(np.arange(n), bucket)
        cross = self._gather(self._pad_cross, rows, encoded)
        d = self._table.shape()[1]
        if cols is None:
            mapped = self.shortlist.map_ids(ids[rows], mask[rows])
            cols_v, out_w_v, bias_v = self.shortlist.layer(self._upload(mapped, np.int64))
        else:
            bias_v = self._logit_bias(allowed[rows], colbias)
            out_w_v = self._upload(out_w, self.types["out_w"])
            cols_v = self._upload(cols, np.int64)
        cur = {
            "attention_mask": self._upload(mask[rows], self.types["attention_mask"]),
            "logit_bias": bias_v,
            "prev_ids": self._upload(np.full(bucket, self.bos), np.int64),
            **{
                name: self._upload(np.zeros((bucket, d)), self.types[name])
                for name in self.state_names
            },
            **dict(zip(self.cross_names, cross, strict=True)),
        }
        shared = {
            "embeddings": self._table,
            "positions": self._positions,
            "out_w": out_w_v,
            "cols": cols_v,
        }
        step_value = self._upload(np.zeros(1), np.int64)
        progress = _Rows(n, bucket, rows, limits, self.eos)
        while True:
            sets, logprob_out, bindings = self._prepare(cur, shared, step_value, bucket)
            keep, latest = self._steps(bindings, [None, None], sets, logprob_out, progress, part)
            if len(keep) == 0:
                break
            t = clock()
            cur["prev_ids"] = latest["ids"]
            for name in self.state_names:
                cur[name] = latest[name]
            step_value = latest["step"]
            gathered = self._gather(self._compact, keep, [cur[n] for n in self._row_inputs])
            cur = dict(zip(self._row_inputs, gathered, strict=True))
            progress.compact(keep)
            bucket = len(keep)
            part["compact_s"] += clock() - t
            part["compactions"] += 1
        return self._finish(progress, part, t0)

    def _finish(self, progress: _Rows, part: dict, t0: float) -> list[tuple[list[int], float]]:
        """The batch's results; its figures into ``stats`` (``prepare_s``: the rest of
        its time - shortlist, bias, uploads, bindings, buffers, results)."""
        results = progress.results()
        total = time.perf_counter() - t0
        spent = part["encode_s"] + part["step_s"] + part["sync_s"] + part["compact_s"]
        part.update(batches=1, rows=progress.n, total_s=total, prepare_s=total - spent)
        self.stats.add(part)
        return results

    def _prepare(self, cur: dict, shared: dict, step_value, bucket: int):  # noqa: ANN001
        """The two buffer sets and bindings of a bucket: set 0 starts from ``cur``."""
        first = {"ids": cur["prev_ids"], "step": step_value}
        first.update({name: cur[name] for name in self.state_names})
        sets = [first, self._buffer_set(bucket)]
        logprob_out = self._empty([bucket], np.float32)
        fixed = {name: cur[name] for name in ["attention_mask", "logit_bias", *self.cross_names]}
        fixed.update(shared)
        return sets, logprob_out, self._bindings(fixed, sets, logprob_out)


class StaticDeviceLoop(DeviceLoop):
    """The device loop with every step tensor in a buffer of fixed address and shape, for
    CUDA graph capture (``cuda_graph``: ORT's ``enable_cuda_graph`` on the step session;
    each shape gets its own ``gpu_graph_id``, captured on its first runs and replayed
    after). Without ``cuda_graph`` (CPU EP) the same buffers and padding run uncaptured,
    which is how the tests check it gives the dynamic loop's tokens.

    Shapes per graph: rows = the batch bucket, sources = ``max_source`` tokens (padding is
    masked), columns = the shortlist union rounded up to a power of two (extra columns
    get a -inf bias). Buffers per bucket (keys/values, mask, states, ids) and per (bucket,
    columns) (bias) are shared by the graphs of that shape and refilled in place; ORT
    allows new contents, not new addresses. One batch at a time (a lock): the buffers are
    the loop's own. Captured and replayed on a lent H200 (2026-11-30): 1.3x the dynamic
    loop's words/min at batch 1024, 1.9x at batch 1 (bench/results/gpu).
    """

    def __init__(
        self,
        encoder,  # noqa: ANN001 - onnxruntime.InferenceSession
        step,  # noqa: ANN001
        embeddings: np.ndarray,
        positions: np.ndarray,
        eos: int,
        layers: int,
        make_session: Callable[[bytes], object],
        max_source: int,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__(encoder, step, embeddings, positions, eos, layers, make_session)
        self.max_source = max_source
        self.cuda_graph = cuda_graph and self.device == "cuda"
        enc_types = [_NP[o.type] for o in self.encoder.get_outputs()]
        step_cross = [self.types[n] for n in self.cross_names]
        ranks = {i.name: len(i.shape) for i in self.step.get_inputs()}
        # cross_k [B,H,dh,S] pads its last axis, cross_v [B,H,S,dh] its third
        axes = [3 if n.startswith("cross_k") else 2 for n in self.cross_names]
        self._pad_cross = make_session(
            gather_rows_model(enc_types, step_cross, [ranks[n] for n in self.cross_names], axes)
        )
        self._lock = threading.Lock()
        self._rows: dict[int, dict] = {}  # bucket -> its buffers
        self._cols: dict[int, dict] = {}  # columns -> out_w, cols
        self._bias: dict[tuple[int, int], object] = {}
        self._runs: dict[tuple[int, int], tuple[list, list]] = {}  # -> bindings, run options
        self._graph_ids = 0

    def _bucket_buffers(self, bucket: int) -> dict:
        if bucket not in self._rows:
            shapes = {o.name: o.shape for o in self.step.get_inputs()}
            b = {
                "attention_mask": self._empty([bucket, self.max_source], np.float32),
                "logprob": self._empty([bucket], np.float32),
                "sets": [self._buffer_set(bucket), self._buffer_set(bucket)],
            }
            for name in self.cross_names:
                # [bucket, heads, head dim, src_len] or [bucket, heads, src_len, head dim]
                dims = [self.max_source if isinstance(x, str) else x for x in shapes[name][1:]]
                b[name] = self._empty([bucket, *dims], self.types[name])
            self._rows[bucket] = b
        return self._rows[bucket]

    def _col_buffers(self, width: int) -> dict:
        if width not in self._cols:
            d = self._table.shape()[1]
            self._cols[width] = {
                "out_w": self._empty([d, width], self.types["out_w"]),
                "cols": self._empty([width], np.int64),
            }
        return self._cols[width]

    def _bias_buffer(self, bucket: int, width: int):  # noqa: ANN202
        if (bucket, width) not in self._bias:
            self._bias[bucket, width] = self._empty([bucket, width], np.float32)
        return self._bias[bucket, width]

    def _run_plan(self, bucket: int, width: int) -> tuple[list, list]:
        """The two bindings of a (bucket, columns) shape and their run options (one
        ``gpu_graph_id`` per binding: a captured graph never sees another shape)."""
        if (bucket, width) not in self._runs:
            rows, cols = self._bucket_buffers(bucket), self._col_buffers(width)
            fixed = {name: rows[name] for name in ["attention_mask", *self.cross_names]}
            fixed.update(out_w=cols["out_w"], cols=cols["cols"])
            fixed["logit_bias"] = self._bias_buffer(bucket, width)
            fixed.update(embeddings=self._table, positions=self._positions)
            bindings = self._bindings(fixed, rows["sets"], rows["logprob"])
            options = [None, None]
            if self.cuda_graph:
                for k in (0, 1):
                    self._graph_ids += 1  # 0 is ORT's own; ids start at 1
                    options[k] = self._ort.RunOptions()
                    options[k].add_run_config_entry("gpu_graph_id", str(self._graph_ids))
            self._runs[bucket, width] = (bindings, options)
        return self._runs[bucket, width]

    def greedy(self, ids, mask, cols, out_w, allowed, colbias, limits):  # noqa: ANN001, ANN201
        with self._lock:
            return self._greedy(ids, mask, cols, out_w, allowed, colbias, limits)

    def _greedy(self, ids, mask, cols, out_w, allowed, colbias, limits):  # noqa: ANN001, ANN202
        n, src_len = mask.shape
        if src_len > self.max_source:
            raise ValueError(f"source of {src_len} tokens; at most {self.max_source}")
        clock, part = time.perf_counter, _new_part()
        t0 = clock()
        bucket = bucket_for(n)
        width = cands_bucket(len(cols))
        encoded = self._encode(ids, mask)
        part["encode_s"] = clock() - t0
        rows = pad_rows(np.arange(n), bucket)
        buf = self._bucket_buffers(bucket)
        # keys/values: rows padded to the bucket, sources to max_source, into the buffers
        gio = self._pad_cross.io_binding()
        gio.bind_cpu_input("idx", rows)
        gio.bind_cpu_input("pad", np.array([self.max_source - src_len], dtype=np.int64))
        for i, value in enumerate(encoded):
            gio.bind_ortvalue_input(f"t_{i}", value)
            gio.bind_ortvalue_output(f"g_{i}", buf[self.cross_names[i]])
        self._pad_cross.run_with_iobinding(gio)
        full_mask = np.zeros((bucket, self.max_source), np.float32)
        full_mask[:, :src_len] = mask[rows]
        buf["attention_mask"].update_inplace(full_mask)
        cbuf = self._col_buffers(width)
        extra = width - len(cols)
        cbuf["cols"].update_inplace(np.concatenate([cols, np.zeros(extra, np.int64)]))
        w = np.zeros((out_w.shape[0], width), self.types["out_w"])
        w[:, : len(cols)] = out_w
        cbuf["out_w"].update_inplace(w)
        # extra columns: never allowed (-inf)
        full_allowed = np.zeros((bucket, width), bool)
        full_allowed[:, : len(cols)] = allowed[rows]
        self._logit_bias(full_allowed, np.resize(colbias, width), self._bias_buffer(bucket, width))
        self._reset(buf["sets"][0], bucket)

        progress = _Rows(n, bucket, rows, limits, self.eos)
        while True:
            bindings, options = self._run_plan(bucket, width)
            old = self._bucket_buffers(bucket)
            keep, latest = self._steps(
                bindings, options, old["sets"], old["logprob"], progress, part
            )
            if len(keep) == 0:
                break
            t = clock()
            new_bucket = len(keep)
            new = self._bucket_buffers(new_bucket)
            src = [old["attention_mask"], self._bias_buffer(bucket, width), latest["ids"]]
            src += [latest[name] for name in self.state_names]
            src += [old[name] for name in self.cross_names]
            dst = [new["attention_mask"], self._bias_buffer(new_bucket, width)]
            dst += [new["sets"][0]["ids"]] + [new["sets"][0][n] for n in self.state_names]
            dst += [new[name] for name in self.cross_names]
            cio = self._compact.io_binding()
            cio.bind_cpu_input("idx", keep)
            for i, (a, b) in enumerate(zip(src, dst, strict=True)):
                cio.bind_ortvalue_input(f"t_{i}", a)
                cio.bind_ortvalue_output(f"g_{i}", b)
            self._compact.run_with_iobinding(cio)
            new["sets"][0]["step"].update_inplace(latest["step"].numpy())
            progress.compact(keep)
            bucket = new_bucket
            part["compact_s"] += clock() - t
            part["compactions"] += 1
        return self._finish(progress, part, t0)

    def _reset(self, first: dict, bucket: int) -> None:
        """Step 0's inputs: no previous token, zero states, step 0."""
        first["ids"].update_inplace(np.full(bucket, self.bos, dtype=np.int64))
        first["step"].update_inplace(np.zeros(1, dtype=np.int64))
        d = self._table.shape()[1]
        for name in self.state_names:
            first[name].update_inplace(np.zeros((bucket, d), self.types[name]))
