"""Segment translation cache: an in-process LRU in front of the ``segment_cache`` table.

Key: sha256 over (normalized text, source, target, model version). Normalization is
Unicode NFC plus whitespace collapsing, so " Hello  world " and "Hello world" share a
translation, and a new model version never serves an old model's output.

The class is synchronous (callers on an event loop run it in the DB executor) so the CLI
(``mtctl translate``) can use the same cache without an event loop:

    cache = SegmentCache.open(settings)
    hits = cache.get_many(texts, "en", "pt", version)   # {index: Translation}
    cache.put_many(texts, translations, "en", "pt", version)
"""

from __future__ import annotations

import hashlib
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from control_plane.db.models import SegmentCacheEntry, utcnow
from control_plane.engine.base import Translation


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def cache_key(text: str, source: str, target: str, model_version: str) -> str:
    raw = "\x1f".join((normalize(text), source, target, model_version))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _insert_for(engine: Engine):  # noqa: ANN202
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` (PostgreSQL, SQLite)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class SegmentCache:
    def __init__(self, engine: Engine | None, capacity: int = 100_000):
        self.engine = engine  # None: LRU only
        self.capacity = capacity
        self._lru: OrderedDict[str, Translation] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(cls, settings) -> SegmentCache:  # noqa: ANN001
        from control_plane.db import Database

        db = Database(settings.effective_database_url)
        db.migrate()
        return cls(db.engine, settings.cache_size)

    def _insert_stmt(self):  # noqa: ANN202
        stmt = getattr(self, "_insert", None)
        if stmt is None:
            insert = _insert_for(self.engine)
            stmt = insert(SegmentCacheEntry.__table__).on_conflict_do_nothing(
                index_elements=["key"]
            )
            self._insert = stmt
        return stmt

    def _lru_get(self, key: str) -> Translation | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
            return hit

    def _lru_put(self, key: str, value: Translation) -> None:
        with self._lock:
            self._lru[key] = value
            self._lru.move_to_end(key)
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)

    def get_many(
        self, texts: Sequence[str], source: str, target: str, model_version: str
    ) -> dict[int, Translation]:
        """Cached translations by position in ``texts``."""
        keys = [cache_key(t, source, target, model_version) for t in texts]
        found: dict[int, Translation] = {}
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self._lru_get(key)
            if hit is not None:
                found[i] = hit
            else:
                missing.setdefault(key, []).append(i)
        if missing and self.engine is not None:
            wanted = list(missing)
            with Session(self.engine) as session:
                for start in range(0, len(wanted), 500):
                    rows = session.execute(
                        select(
                            SegmentCacheEntry.key,
                            SegmentCacheEntry.translation,
                            SegmentCacheEntry.score,
                        ).where(SegmentCacheEntry.key.in_(wanted[start : start + 500]))
                    ).all()
                    for key, text, score in rows:
                        tr = Translation(text, score)
                        self._lru_put(key, tr)
                        for i in missing[key]:
                            found[i] = tr
        self.hits += len(found)
        self.misses += len(texts) - len(found)
        return found

    def put_many(
        self,
        texts: Sequence[str],
        translations: Sequence[Translation],
        source: str,
        target: str,
        model_version: str,
    ) -> None:
        rows: dict[str, Translation] = {}
        for text, tr in zip(texts, translations, strict=True):
            key = cache_key(text, source, target, model_version)
            self._lru_put(key, tr)
            rows[key] = tr
        if not rows or self.engine is None:
            return
        # One INSERT ... ON CONFLICT DO NOTHING executemany: no read of existing keys first and
        # no ORM objects (a worker writes every batch it translated; per-row ORM inserts
        # after a SELECT cost ~3 CPU-s per 100,000 words on the worker's event-loop host).
        now = utcnow()
        values = [
            {"key": key, "source_lang": source, "target_lang": target,
             "model_version": model_version, "translation": tr.text, "score": tr.score,
             "created_at": now}
            for key, tr in rows.items()
        ]  # fmt: skip
        with self.engine.begin() as conn:  # executemany: compiled once, batched by the driver
            conn.execute(self._insert_stmt(), values)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def cached_translate_sync(engine, settings, source: str, target: str):  # noqa: ANN001, ANN201
    """For ``mtctl translate``: a callable (segments) -> list[str] that serves cached
    segments from the service's cache (LRU + DB table) and translates and stores the rest.
    Blank segments pass through untouched."""
    cache = SegmentCache.open(settings)
    version = engine.model_version(source, target)

    def run(segments: list[str]) -> list[str]:
        out: list[str | None] = [s if not s.strip() else None for s in segments]
        todo = [i for i, s in enumerate(out) if s is None]
        hits = cache.get_many([segments[i] for i in todo], source, target, version)
        for j, tr in hits.items():
            out[todo[j]] = tr.text
        missing = [todo[j] for j in range(len(todo)) if j not in hits]
        if missing:
            texts = [segments[i] for i in missing]
            translations = engine.translate(texts, source, target)
            cache.put_many(texts, translations, source, target, version)
            for i, tr in zip(missing, translations, strict=True):
                out[i] = tr.text
        return [s or "" for s in out]

    return run
