"""Triton python-backend model ``translator``: the project's engine library behind Triton.

Each request carries one batch of segments (TEXT) of one language pair (SOURCE_LANG,
TARGET_LANG). The dynamic batcher hands ``execute`` up to ``max_batch_size`` requests,
possibly of different pairs: they are grouped by pair, each pair's segments run through
the engine as one batch (the engine sorts by length and batches internally; its output
per sentence does not depend on the batch), and the results are split back per request.
A request with an unknown pair gets an error of its own; the others are unaffected.

Overlap (``overlap`` > 1, the CPU configs): ``execute`` hands an execution's translation
to a thread of its own, answers through the requests' response senders when it is done
(a non-decoupled model may send one final response per request from any thread) and
returns at once while fewer than ``overlap`` executions are in flight, else when the
oldest ends. Triton then forms and hands in the next execution while this one still
translates, so its segments are encoded and its batches wait on the engine's lanes
before the lanes run dry: with one execution at a time the lanes idled at every
execution's end (its encode, its last batch on one lane, its decode, the responses, the
next execution's set-up; on the 2-core Xeon, 2026-12-01, `bench stack --inference triton`
lost 4.4 lane core-seconds in such gaps with overlap 1 and 2.9 with overlap 2, and ran
0.89x / 0.89x the engine alone against 0.93x / 0.91x, alternating). Only one execution
leaves Triton's priority queue early, so its levels, bounds and timeouts still order and
bound the backlog; the client is the same unary ``infer``. ``overlap`` 1 (the GPU
configs, not yet run with overlap on a device) keeps the plain synchronous ``execute``.
A pool thread only translates, builds responses, sends them and logs, which the backend
serves while execute waits; whatever else talks to the server (the custom metric) stays
on execute's thread (``_count``). Triton records an overlapped execution's statistics
when execute returns: its requests count as successes and its compute time ends at the
hand-over, even when the translation later fails or takes seconds; the control plane's
``mtb_triton_request_seconds`` and ``mtb_triton_requests_total`` (client side) keep the
real latency and outcome. An execution with nothing to translate (catalog queries, bad
requests) is answered by execute's return as before, so its statistics are recorded
before its answer arrives.

Configuration (config.pbtxt ``parameters``, written by control_plane/inference/
triton_config.py): precision, execution_provider (cpu|cuda|tensorrt), threads, lanes,
engine_batch, beam_size, overlap, nice (this process's scheduling niceness), model_dir (empty:
MTB_MODEL_DIR of the server's environment, else the control plane's default store). The
stub runs the venv's python3 (first on PATH), so ``control_plane`` imports from the venv.
The same file serves ``translator_urgent`` (critical and high requests, a process of its
own; control_plane/inference/triton_config.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Folders to import from ahead of the interpreter's own (MTB_STUB_PYTHONPATH, like
# PYTHONPATH): a stub whose embedded interpreter ignores PYTHONPATH - pytriton's on the
# lent GPU machine, where the checkout is not installed - still finds control_plane.
for _p in reversed(os.environ.get("MTB_STUB_PYTHONPATH", "").split(os.pathsep)):
    if _p and _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _param(config: dict, key: str, default: str = "") -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def _strings(array) -> list[str]:
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        provider = _param(config, "execution_provider", "cpu")
        if args.get("model_instance_kind") == "GPU":
            # one process per instance: pin ONNX Runtime's CUDA EP to this instance's GPU
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args.get("model_instance_device_id", 0))

        nice = int(_param(config, "nice", "0"))
        if nice:  # before the engine's threads start: they inherit it
            os.nice(nice)

        from control_plane.engine.store import load_engine
        from control_plane.settings import Settings
        from export.provision import ensure_default_models

        settings = Settings.from_env()
        model_dir = _param(config, "model_dir") or str(settings.model_dir)
        ensure_default_models(model_dir)
        self.engine = load_engine(
            model_dir,
            precision=_param(config, "precision", settings.precision),
            threads=int(_param(config, "threads", str(settings.threads))),
            max_batch=int(_param(config, "engine_batch", str(settings.max_batch_sentences))),
            beam_size=int(_param(config, "beam_size", "1")),
            lanes=int(_param(config, "lanes", str(settings.engine_lanes))),
            tensorrt=provider == "tensorrt",
            decoder_loop=_param(config, "decoder_loop", settings.decoder_loop),
            cuda_graph=_param(config, "cuda_graph", str(settings.cuda_graph)).lower()
            in ("1", "true"),
        )
        self.pairs = set(self.engine.pairs())
        if _param(config, "pairs"):  # a per-pair model (inference/lifecycle.py): its pairs only
            wanted = {tuple(p.split("-", 1)) for p in _param(config, "pairs").split(",")}
            self.pairs &= wanted
        t0 = time.monotonic()
        for src, tgt in sorted(self.pairs):  # load sessions now: the first request is not slow
            self.engine.translate(["Hello."], src, tgt)
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"translator {args.get('model_instance_name')}: pairs "
            f"{sorted(self.pairs)} from {model_dir}, {provider}, warm-up "
            f"{time.monotonic() - t0:.1f}s"
        )
        self._start_executions(int(_param(config, "overlap", "1")), nice)
        self._segments = self._requests = None
        try:  # custom metrics on :8002 next to Triton's own
            self._segments = pb_utils.MetricFamily(
                name="mtb_translator_segments_total",
                description="Segments the translator model gave its engine",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self._seg_metric = {
                p: self._segments.Metric(labels={"pair": f"{p[0]}-{p[1]}"}) for p in self.pairs
            }
        except Exception:  # noqa: BLE001 - older backends: no custom metrics
            self._segments = None

    def _start_executions(self, overlap: int, nice: int = 0) -> None:
        """Up to ``overlap`` executions in flight (1: the synchronous execute). The pool
        starts its threads when work comes, from whichever thread calls execute, and Linux
        keeps a niceness per thread: each sets the configured one itself."""
        self.overlap = max(1, overlap)
        self._inflight = 0
        self._idle = threading.Condition()
        self._pool = None
        if self.overlap > 1:
            self._pool = ThreadPoolExecutor(
                self.overlap,
                thread_name_prefix="execution",
                initializer=_set_nice,
                initargs=(nice,),
            )

    def _catalog(self) -> list[str]:
        return [f"{s}\t{t}\t{self.engine.model_version(s, t)}" for s, t in sorted(self.pairs)]

    def execute(self, requests):
        responses: list = [None] * len(requests)
        groups = self._parse(requests, responses)
        self._count(groups)
        if self._pool is None or not groups:  # nothing to translate: answered now, as ever
            self._translate_groups(groups, responses)
            return responses
        # overlap: what is known now (errors, the catalog) is sent now, the translation on a
        # thread of its own; the request objects' tensors are released when execute returns,
        # so only the parsed strings and the response senders go along
        senders = [request.get_response_sender() for request in requests]
        for i, response in enumerate(responses):
            if response is not None:
                _send(senders[i], response)
        with self._idle:  # hand it over, return when another execution may start
            self._inflight += 1
            self._pool.submit(self._answer, groups, senders)
            while self._inflight >= self.overlap:
                self._idle.wait()
        return None

    def _parse(self, requests, responses: list) -> dict[tuple[str, str], list]:
        """Requests grouped by pair as ``(index, segments)``; answers for the others (bad
        requests, unknown pairs, catalog queries) filled into ``responses``."""
        groups: dict[tuple[str, str], list[tuple[int, list[str]]]] = {}
        for i, request in enumerate(requests):
            try:
                text = _strings(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy())
                src = _strings(pb_utils.get_input_tensor_by_name(request, "SOURCE_LANG").as_numpy())
                tgt = _strings(pb_utils.get_input_tensor_by_name(request, "TARGET_LANG").as_numpy())
                pair = (src[0].strip(), tgt[0].strip())
            except Exception as exc:  # noqa: BLE001 - a malformed request fails alone
                responses[i] = _error(f"bad request: {exc}", invalid=True)
                continue
            if pair == ("", ""):
                responses[i] = _response(self._catalog(), [0.0] * len(self.pairs))
            elif pair not in self.pairs:
                listed = ", ".join(f"{s}-{t}" for s, t in sorted(self.pairs))
                responses[i] = _error(
                    f"no installed model translates {pair[0]}->{pair[1]}; supported: {listed}",
                    invalid=True,
                )
            else:
                groups.setdefault(pair, []).append((i, text))
        return groups

    def _translate_groups(self, groups: dict, responses: list) -> None:
        """Each pair's segments through the engine as one call, split back per request."""
        for (src, tgt), items in groups.items():
            segments = [s for _, text in items for s in text]
            try:
                out = self.engine.translate(segments, src, tgt) if segments else []
            except Exception as exc:  # noqa: BLE001 - reported per request
                for i, _ in items:
                    responses[i] = _error(f"translation failed: {type(exc).__name__}: {exc}")
                continue
            pos = 0
            for i, text in items:
                part = out[pos : pos + len(text)]
                pos += len(text)
                responses[i] = _response([t.text for t in part], [t.score for t in part])

    def _count(self, groups: dict) -> None:
        """Segments given to the engine, per pair, counted here on execute's thread: a
        custom metric's update waits for the server, which waits for execute to return,
        so one made from a pool thread while execute waits for a slot never ends (seen:
        the whole instance hung)."""
        if self._segments is None:
            return
        for pair, items in groups.items():
            n = sum(len(text) for _, text in items)
            if n:
                self._seg_metric[pair].increment(n)

    def _answer(self, groups: dict, senders: list) -> None:
        """An overlapped execution's translation and responses (a pool thread)."""
        try:
            responses: list = [None] * len(senders)
            try:
                self._translate_groups(groups, responses)
            except Exception as exc:  # noqa: BLE001 - no request may go unanswered
                for items in groups.values():
                    for i, _ in items:
                        responses[i] = _error(f"translation failed: {type(exc).__name__}: {exc}")
            for items in groups.values():
                for i, _ in items:
                    _send(senders[i], responses[i])
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def finalize(self) -> None:
        if self._pool is not None:  # executions in flight answer before the engine goes
            self._pool.shutdown(wait=True)
        self.engine = None


def _response(texts: list[str], scores: list[float]):
    translation = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(1, -1)
    score = np.asarray(scores, dtype=np.float32).reshape(1, -1)
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("TRANSLATION", translation),
            pb_utils.Tensor("SCORE", score),
        ]
    )


def _set_nice(nice: int) -> None:
    if nice and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # who=0: this thread (Linux)


def _send(sender, response) -> None:
    """A request's one and final response; a request the server gave up on (cancelled,
    its client gone) cannot be answered, which must not stop the others'."""
    try:
        sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except Exception as exc:  # noqa: BLE001
        pb_utils.Logger.log_warn(f"translator: a response could not be sent: {exc}")


def _error(message: str, invalid: bool = False):
    """INVALID_ARGUMENT for the caller's mistakes (never retried), INTERNAL otherwise."""
    try:
        code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
        error = pb_utils.TritonError(message, code)
    except (AttributeError, TypeError):  # backends without error codes
        error = pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)
