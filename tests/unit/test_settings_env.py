"""``Settings.from_env``: a value that does not parse or is not allowed is one
SettingsError naming the variable, its value and what is allowed; ``mtctl`` turns it
into one line and exit code 2."""

from __future__ import annotations

import os

import pytest

from control_plane.cli import main
from control_plane.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("MTB_PORT", "abc", "not an integer"),
        ("MTB_THREADS", "x", "not an integer"),
        ("MTB_DRAIN_TIMEOUT_S", "abc", "not a number"),
        ("MTB_JWT_TTL_S", "abc", "not an integer"),
        ("MTB_PORT", "-1", "0..65535"),
        ("MTB_METRICS_PORT", "70000", "0..65535"),
        ("MTB_PRECISION", "bogus", "int8, fp32, fp16, auto"),
        ("MTB_QUEUE", "bogus", "memory, kafka"),
        ("MTB_INFERENCE", "bogus", "local, triton"),
        ("MTB_TRACING", "bogus", "off, console, otlp"),
        ("MTB_LOG_LEVEL", "bogus", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("MTB_LOG_FORMAT", "yaml", "json, text"),
        ("MTB_DECODER_LOOP", "gpu", "auto, host, device"),
        ("MTB_TRITON_MODEL_CONTROL", "poll", "none, explicit"),
        ("MTB_TENSORRT", "maybe", "1/true/yes/on or 0/false/no/off"),
    ],
)
def test_bad_values_name_the_variable(name, raw, allowed):
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({name: raw})
    assert str(exc.value).startswith(f"{name}={raw!r}: ") and allowed in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_every_configuration_in_use_still_loads():
    # values from k8s/, devstack/, tests and the README
    for env in (
        {"MTB_QUEUE": "kafka", "MTB_INFERENCE": "triton", "MTB_PRODUCTION": "true",
         "MTB_LOG_FORMAT": "json", "MTB_LOG_LEVEL": "INFO", "MTB_TRACING": "otlp",
         "MTB_TRACING_SAMPLE_RATIO": "0.1", "MTB_TRITON_MODEL_CONTROL": "explicit",
         "MTB_COST_INSTANCE_KIND": "policy"},
        {"MTB_QUEUE": "memory", "MTB_INFERENCE": "local", "MTB_TRACING": "off",
         "MTB_LOG_LEVEL": "DEBUG", "MTB_TRITON_FALLBACK": "0", "MTB_CUDA_GRAPH": "1"},
        {"MTB_PRECISION": "auto", "MTB_DECODER_LOOP": "device", "MTB_PORT": "0"},
        {"MTB_PRECISION": "fp16", "MTB_DECODER_LOOP": "host", "MTB_TRACING": "console"},
        {"MTB_PRECISION": "int8", "MTB_DECODER_LOOP": "auto", "MTB_LOG_FORMAT": "text"},
        {"MTB_PRECISION": "fp32", "MTB_PORT": "", "MTB_LOG_LEVEL": "warning"},
    ):  # fmt: skip
        Settings.from_env(env)
    s = Settings.from_env({"MTB_QUEUE": "Kafka", "MTB_LOG_LEVEL": "debug", "MTB_TENSORRT": "off"})
    assert (s.queue, s.log_level, s.tensorrt) == ("kafka", "DEBUG", False)


@pytest.mark.parametrize(
    ("name", "raw"), [("MTB_PORT", "abc"), ("MTB_PRECISION", "bogus"), ("MTB_QUEUE", "bogus")]
)
def test_mtctl_says_it_in_one_line(name, raw, monkeypatch, capsys, tmp_path):
    for var in [n for n in os.environ if n.startswith("MTB_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MTB_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv(name, raw)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtctl models: {name}={raw!r}: ") and len(err.splitlines()) == 1
