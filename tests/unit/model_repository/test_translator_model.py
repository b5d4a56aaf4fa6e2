"""model_repository/translator/1/model.py's execute, outside Triton: the python backend's
``triton_python_backend_utils`` is replaced by a small fake and the engine by one that
waits on an event, so the order of events is under the test's control. The real model
in a real tritonserver is tested in tests/functional/L0_triton (every CPU config there
runs with overlap 2)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from control_plane.engine.base import Translation

REPO = Path(__file__).resolve().parents[3]
MODEL_PY = REPO / "model_repository" / "translator" / "1" / "model.py"
FINAL = 1


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, output_tensors=(), error=None) -> None:  # noqa: ANN001
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error

    def texts(self) -> list[str]:
        return [x.decode() for x in self.outputs["TRANSLATION"].reshape(-1)]


class _Error:
    INVALID_ARG, INTERNAL = "invalid", "internal"

    def __init__(self, message: str, code: str = "internal") -> None:
        self.message, self.code = message, code


class _Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[_Response, int]] = []
        self.done = threading.Event()

    def send(self, response=None, flags: int = 0) -> None:  # noqa: ANN001
        self.sent.append((response, flags))
        if flags & FINAL:
            self.done.set()


class _Request:
    def __init__(self, texts: list[str], src: str = "en", tgt: str = "pt") -> None:
        def array(values: list[str]) -> np.ndarray:
            return np.array([v.encode() for v in values], dtype=np.object_).reshape(1, -1)

        self.tensors = {
            "TEXT": _Tensor("TEXT", array(texts)),
            "SOURCE_LANG": _Tensor("SOURCE_LANG", array([src])),
            "TARGET_LANG": _Tensor("TARGET_LANG", array([tgt])),
        }
        self.sender = _Sender()

    def get_response_sender(self) -> _Sender:
        return self.sender


def _fake_pb_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = _Tensor
    pb.InferenceResponse = _Response
    pb.TritonError = _Error
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    pb.get_input_tensor_by_name = lambda request, name: request.tensors[name]
    pb.Logger = types.SimpleNamespace(log_info=lambda m: None, log_warn=lambda m: None)
    return pb


class _Engine:
    """Upper-cases; each call waits until the test opens its gate (calls in order)."""

    def __init__(self, fail: bool = False) -> None:
        self.gates: list[threading.Event] = []
        self.calls: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def translate(self, segments: list[str], src: str, tgt: str) -> list[Translation]:
        with self.lock:
            gate = threading.Event()
            self.gates.append(gate)
            self.calls.append(list(segments))
        assert gate.wait(10), "the test never opened this call's gate"
        if self.fail:
            raise RuntimeError("model blew up")
        return [Translation(s.upper(), 0.5) for s in segments]

    def wait_calls(self, n: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.gates) < n:
            assert time.monotonic() < deadline, f"{len(self.gates)} engine calls, not {n}"
            time.sleep(0.005)


@pytest.fixture()
def model_module(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location("translator_model_under_test", MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(module, engine: _Engine, overlap: int):  # noqa: ANN001, ANN202
    model = module.TritonPythonModel()  # initialize() would load the real engine
    model.engine = engine
    model.pairs = {("en", "pt")}
    model._segments = None
    model._start_executions(overlap)
    return model


def _in_thread(fn, *args):  # noqa: ANN001, ANN002, ANN202
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn(*args)), daemon=True)
    thread.start()
    return thread, out


def test_overlap_returns_before_the_translation_and_answers_through_senders(model_module):
    engine = _Engine()
    model = _model(model_module, engine, overlap=2)
    first = [_Request(["a", "b"]), _Request(["c"]), _Request(["x"], "en", "xx")]
    assert model.execute(first) is None  # returned while the engine still works on it
    engine.wait_calls(1)
    # the unknown pair is answered at once, the others wait for the engine
    assert first[2].sender.done.is_set() and first[2].sender.sent[0][0].error.code == "invalid"
    assert not first[0].sender.done.is_set()

    # a second execution is handed in and reaches the engine while the first still runs,
    # but execute does not return until one of the two ends (overlap 2)
    second = [_Request(["d"])]
    thread, out = _in_thread(model.execute, second)
    engine.wait_calls(2)
    assert engine.calls == [["a", "b", "c"], ["d"]]
    thread.join(0.2)
    assert thread.is_alive(), "execute returned with two executions in flight"

    engine.gates[0].set()
    thread.join(5)
    assert not thread.is_alive() and out["value"] is None
    assert [r.sender.sent[0][0].texts() for r in first[:2]] == [["A", "B"], ["C"]]
    for request in first:  # one response each, final
        assert len(request.sender.sent) == 1 and request.sender.sent[0][1] == FINAL

    engine.gates[1].set()
    assert second[0].sender.done.wait(5)
    assert second[0].sender.sent == [(second[0].sender.sent[0][0], FINAL)]
    assert second[0].sender.sent[0][0].texts() == ["D"]
    model.finalize()


def test_overlap_one_is_the_synchronous_execute(model_module):
    engine = _Engine()
    model = _model(model_module, engine, overlap=1)
    requests = [_Request(["a"]), _Request(["b", "c"])]
    thread, out = _in_thread(model.execute, requests)
    engine.wait_calls(1)
    engine.gates[0].set()
    thread.join(5)
    responses = out["value"]
    assert [r.texts() for r in responses] == [["A"], ["B", "C"]]
    assert all(not r.sender.sent for r in requests)  # returned, not sent


def test_a_failed_translation_answers_every_request_and_frees_the_slot(model_module):
    engine = _Engine(fail=True)
    model = _model(model_module, engine, overlap=2)
    requests = [_Request(["a"]), _Request(["b"])]
    assert model.execute(requests) is None
    engine.wait_calls(1)
    engine.gates[0].set()
    for request in requests:
        assert request.sender.done.wait(5)
        response, flags = request.sender.sent[0]
        assert flags == FINAL and "model blew up" in response.error.message
    # the failed execution no longer counts: two more may be handed in without blocking
    assert model.execute([_Request(["c"])]) is None
    engine.wait_calls(2)
    engine.gates[1].set()
    model.finalize()


def test_finalize_waits_for_executions_in_flight(model_module):
    engine = _Engine()
    model = _model(model_module, engine, overlap=2)
    request = _Request(["a"])
    model.execute([request])
    engine.wait_calls(1)
    thread, _ = _in_thread(model.finalize)
    thread.join(0.2)
    assert thread.is_alive(), "finalize did not wait for the execution in flight"
    engine.gates[0].set()
    thread.join(5)
    assert not thread.is_alive() and request.sender.done.is_set()


def test_the_segment_metric_is_counted_on_executes_thread(model_module):
    """A custom metric's update from a pool thread, made while execute waited for a slot,
    hung the real instance: the server answers it only after execute returns."""
    engine = _Engine()
    model = _model(model_module, engine, overlap=2)
    counted: list[tuple[int, str]] = []

    class Metric:
        def increment(self, n: int) -> None:
            counted.append((n, threading.current_thread().name))

    model._segments = object()
    model._seg_metric = {("en", "pt"): Metric()}
    thread, _ = _in_thread(model.execute, [_Request(["a", "b"]), _Request(["c"])])
    thread.join(5)
    engine.wait_calls(1)
    assert counted == [(3, thread.name)]
    engine.gates[0].set()
    model.finalize()
    assert counted == [(3, thread.name)]


def test_an_execution_with_nothing_to_translate_is_answered_by_its_return(model_module):
    """Catalog queries and bad requests alone: execute returns their responses, so Triton
    records their statistics before the caller sees the answer (a caller that loads a
    model, asks its catalog and then reads the model's success count relies on that)."""
    engine = _Engine()
    model = _model(model_module, engine, overlap=2)
    engine.model_version = lambda src, tgt: "v1"
    requests = [_Request([""], "", ""), _Request(["x"], "en", "xx")]
    responses = model.execute(requests)
    assert responses[0].texts() == ["en\tpt\tv1"] and responses[1].error.code == "invalid"
    assert all(not r.sender.sent for r in requests) and not engine.calls
    model.finalize()
