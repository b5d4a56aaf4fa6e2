"""Translation engines: the in-process ONNX Runtime engine and its model store.

Public entry points (stable; the control plane, the CLI and the Triton model use them):

- ``open_engine(settings)``: an engine serving every pair in ``settings.model_dir``,
  exporting the bundled Bergamot models there first when the store is empty.
- ``load_engine(model_root, precision, threads)``: the same for an explicit folder.
"""

from control_plane.engine.base import Translation, TranslationEngine, UnsupportedPair

__all__ = ["Translation", "TranslationEngine", "UnsupportedPair", "open_engine", "load_engine"]


def open_engine(settings):  # noqa: ANN001, ANN201
    from control_plane.engine.store import open_engine as _open

    return _open(settings)


def load_engine(model_root, precision: str = "int8", threads: int = 0, **kwargs):  # noqa: ANN001, ANN201
    from control_plane.engine.store import load_engine as _load

    return _load(model_root, precision=precision, threads=threads, **kwargs)
