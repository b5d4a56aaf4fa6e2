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

CUDA graph capture is not used: ORT replays a captured graph only with the same bound
addresses and shapes, which this loop's per-batch source lengths and compactions change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from control_plane.engine.buckets import bucket_for, compaction, pad_rows

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


def gather_rows_model(types_in: list[type], types_out: list[type], ranks: list[int]) -> bytes:
    """An ONNX graph: ``idx`` [N] int64 and tensors ``t_i`` -> ``g_i`` = the rows ``idx``
    of ``t_i`` (axis 0), cast to ``types_out[i]``. The loop's one device-side copy: it
    pads a new batch to its bucket (and casts the encoder's float32 keys/values to a
    float16 decoder's type) and compacts finished rows away, without a host round trip."""
    import onnx
    from onnx import TensorProto, helper

    elem = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}
    elem[np.int64] = TensorProto.INT64
    nodes, inputs, outputs = (
        [],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["n"])],
        [],
    )
    for i, (a, b, rank) in enumerate(zip(types_in, types_out, ranks, strict=True)):
        inputs.append(
            helper.make_tensor_value_info(f"t_{i}", elem[a], [f"d{i}_{r}" for r in range(rank)])
        )
        out_shape = ["n"] + [f"d{i}_{r}" for r in range(1, rank)]
        outputs.append(helper.make_tensor_value_info(f"g_{i}", elem[b], out_shape))
        rows = f"g_{i}" if a is b else f"rows_{i}"
        nodes.append(helper.make_node("Gather", [f"t_{i}", "idx"], [rows], axis=0))
        if a is not b:
            nodes.append(helper.make_node("Cast", [rows], [f"g_{i}"], to=elem[b]))
    graph = helper.make_graph(nodes, "gather_rows", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


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

    def _buffer_set(self, bucket: int) -> dict:
        d = self._table.shape()[1]
        s = {"ids": self._empty([bucket], np.int64), "step": self._empty([1], np.int64)}
        for name in self.state_names:
            s[name] = self._empty([bucket, d], self.types[name])
        return s

    # -- decoding ------------------------------------------------------------------------

    def greedy(
        self,
        embeds: np.ndarray,
        mask: np.ndarray,
        cols: np.ndarray,
        out_w: np.ndarray,
        bias: np.ndarray,
        limits: np.ndarray,
    ) -> list[tuple[list[int], float]]:
        """(output ids without EOS, summed log-probability) per row of the batch.

        ``embeds``/``mask``: the encoder's inputs for the batch's sentences; ``cols``,
        ``out_w``, ``bias``: the output layer over the batch's shortlist columns (see
        BergamotModel._output_layer); ``limits``: the most steps per sentence.
        """
        n = len(limits)
        bucket = bucket_for(n)
        io = self.encoder.io_binding()
        io.bind_cpu_input("embeds", np.ascontiguousarray(embeds))
        io.bind_cpu_input("attention_mask", np.ascontiguousarray(mask))
        for name in self.cross_names:
            io.bind_output(name, self.device, self.device_id)
        self.encoder.run_with_iobinding(io)
        rows = pad_rows(np.arange(n), bucket)
        cross = self._gather(self._pad_cross, rows, io.get_outputs())
        d = self._table.shape()[1]
        cur = {
            "attention_mask": self._upload(mask[rows], self.types["attention_mask"]),
            "logit_bias": self._upload(bias[rows], self.types["logit_bias"]),
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
            "out_w": self._upload(out_w, self.types["out_w"]),
            "cols": self._upload(cols, np.int64),
        }
        step_value = self._upload(np.zeros(1), np.int64)
        where = rows.copy()  # bucket slot -> row of the batch
        live = np.zeros(bucket, dtype=bool)
        live[:n] = True
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprob = np.zeros(n, dtype=np.float64)
        t = 0
        while True:
            sets, logprob_out, bindings = self._prepare(cur, shared, step_value, bucket)
            j = 0  # steps run in this bucket: step j reads sets[j % 2]
            while True:
                k = j % 2
                self.step.run_with_iobinding(bindings[k])
                j += 1
                ids = sets[1 - k]["ids"].numpy()
                lp = logprob_out.numpy()
                t += 1
                slots = np.flatnonzero(live)
                owners = where[slots]
                logprob[owners] += lp[slots]
                toks = ids[slots]
                ended = toks == self.eos
                for r in np.flatnonzero(~ended):
                    tokens[owners[r]].append(int(toks[r]))
                live[slots[ended | (t >= limits[owners])]] = False
                keep = compaction(live, bucket)
                if keep is not None:
                    break
            if len(keep) == 0:
                break
            latest = sets[j % 2]
            cur["prev_ids"] = latest["ids"]
            for name in self.state_names:
                cur[name] = latest[name]
            step_value = latest["step"]
            gathered = self._gather(self._compact, keep, [cur[n] for n in self._row_inputs])
            cur = dict(zip(self._row_inputs, gathered, strict=True))
            alive = int(live.sum())
            where = where[keep]
            bucket = len(keep)
            live = np.zeros(bucket, dtype=bool)
            live[:alive] = True
        return [(tokens[r], float(logprob[r])) for r in range(n)]

    def _prepare(self, cur: dict, shared: dict, step_value, bucket: int):  # noqa: ANN001
        """The two buffer sets and bindings of a bucket: set 0 starts from ``cur``."""
        first = {"ids": cur["prev_ids"], "step": step_value}
        first.update({name: cur[name] for name in self.state_names})
        sets = [first, self._buffer_set(bucket)]
        logprob_out = self._empty([bucket], np.float32)
        fixed = {name: cur[name] for name in ["attention_mask", "logit_bias", *self.cross_names]}
        fixed.update(shared)
        return sets, logprob_out, self._bindings(fixed, sets, logprob_out)
