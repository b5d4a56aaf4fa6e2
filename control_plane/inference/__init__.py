"""Inference clients: ``open_inference(settings)`` picks one from MTB_INFERENCE."""

from __future__ import annotations

from control_plane.inference.base import InferenceClient, InferenceUnavailable
from control_plane.inference.local import LocalInferenceClient

__all__ = ["InferenceClient", "InferenceUnavailable", "LocalInferenceClient", "open_inference"]


def open_inference(settings) -> InferenceClient:  # noqa: ANN001
    if settings.inference == "local":
        from control_plane.inference.local import open_local_engine

        return LocalInferenceClient(factory=lambda: open_local_engine(settings))
    control = settings.triton_model_control
    if control not in ("none", "explicit"):
        raise ValueError(f"MTB_TRITON_MODEL_CONTROL must be none or explicit, not {control!r}")
    if settings.inference == "triton" and settings.triton_model_control == "explicit":
        from control_plane.inference.lifecycle import LifecycleTritonClient

        return LifecycleTritonClient(settings)  # per-pair models, loaded on demand
    if settings.inference == "triton":
        from control_plane.inference.triton import TritonInferenceClient  # issue 4

        return TritonInferenceClient(settings)
    raise ValueError(f"MTB_INFERENCE must be local or triton, not {settings.inference!r}")
