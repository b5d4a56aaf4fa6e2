"""Segment translation cache: an in-process LRU in front of the ``segment_cache`` table.

Key: sha256 over (normalized text, source, target, model version). Normalization is
Unicode NFC plus whitespace collapsing, so " Hello  world " and "Hello world" share a
translation, and a new model version never serves an old model's output.

Entries carry the design's ``access_count``, ``last_accessed`` and ``ttl_expires_at``:
every hit (LRU or table) is counted in memory and written to the table in one batch at
most every ``access_flush_s`` (a row update per hit would put a write on every lookup);
each use pushes the entry's expiry ``ttl_s`` ahead; ``purge_expired`` deletes what
nobody used for ``ttl_s``, so the table stops growing.

The class is synchronous (callers on an event loop run it in the DB executor) so the CLI
(``mtctl translate``) can use the same cache without an event loop:

    cache = SegmentCache.open(settings)
    hits = cache.get_many(texts, "en", "pt", version)   # {index: Translation}
    cache.put_many(texts, translations, "en", "pt", version)
"""

from __future__ import annotations

import hashlib
import threading
import time
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, or_, select, update
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
    def __init__(
        self,
        engine: Engine | None,
        capacity: int = 100_000,
        ttl_s: float = 0.0,
        access_flush_s: float = 5.0,
    ):
        self.engine = engine  # None: LRU only
        self.capacity = capacity
        self.ttl_s = ttl_s  # 0: entries never expire
        self.access_flush_s = access_flush_s
        # key -> (translation, monotonic expiry or None): the LRU honours the TTL too
        self._lru: OrderedDict[str, tuple[Translation, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._touched: Counter[str] = Counter()  # hits not yet written to the table
        self._flushed_at = time.monotonic()
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(cls, settings) -> SegmentCache:  # noqa: ANN001
        from control_plane.db import Database

        db = Database(settings.effective_database_url)
        db.migrate()
        return cls(db.engine, settings.cache_size, settings.cache_ttl_s)

    def _expires(self) -> datetime | None:
        """The table's expiry for an entry written or used now; None: never expires."""
        if self.ttl_s <= 0:
            return None
        return utcnow() + timedelta(seconds=self.ttl_s)

    def _insert_stmt(self):  # noqa: ANN202
        stmt = getattr(self, "_insert", None)
        if stmt is None:
            insert = _insert_for(self.engine)
            ins = insert(SegmentCacheEntry.__table__)
            # a key is only translated again when its entry expired (not yet purged) or
            # another worker raced us to it: both are fine to overwrite, and rare
            stmt = ins.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    c: ins.excluded[c]
                    for c in ("translation", "score", "created_at", "ttl_expires_at")
                },
            )
            self._insert = stmt
        return stmt

    def _lru_get(self, key: str) -> Translation | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is None:
                return None
            value, expires = hit
            if expires is not None and expires < time.monotonic():
                del self._lru[key]
                return None
            self._lru.move_to_end(key)
            return value

    def _lru_put(self, key: str, value: Translation) -> None:
        expires = time.monotonic() + self.ttl_s if self.ttl_s > 0 else None
        with self._lock:
            self._lru[key] = (value, expires)
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
            now = utcnow()
            live = or_(
                SegmentCacheEntry.ttl_expires_at.is_(None), SegmentCacheEntry.ttl_expires_at > now
            )
            with Session(self.engine) as session:
                for start in range(0, len(wanted), 500):
                    rows = session.execute(
                        select(
                            SegmentCacheEntry.key,
                            SegmentCacheEntry.translation,
                            SegmentCacheEntry.score,
                        ).where(SegmentCacheEntry.key.in_(wanted[start : start + 500]), live)
                    ).all()
                    for key, text, score in rows:
                        tr = Translation(text, score)
                        self._lru_put(key, tr)
                        for i in missing[key]:
                            found[i] = tr
        self.hits += len(found)
        self.misses += len(texts) - len(found)
        if found:
            with self._lock:
                self._touched.update(keys[i] for i in found)
            if time.monotonic() - self._flushed_at >= self.access_flush_s:
                self.flush_access()
        return found

    def flush_access(self) -> int:
        """Blocking. Write the hits counted since the last flush: ``access_count``,
        ``last_accessed`` and a new ``ttl_expires_at`` per entry. Returns rows touched."""
        with self._lock:
            touched, self._touched = self._touched, Counter()
            self._flushed_at = time.monotonic()
        if not touched or self.engine is None:
            return 0
        now = utcnow()
        expires = self._expires()
        table = SegmentCacheEntry.__table__
        stmt = (
            update(table)
            .where(table.c.key == bindparam("k"))
            .values(
                access_count=table.c.access_count + bindparam("n"),
                last_accessed=now,
                ttl_expires_at=expires,
            )
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, [{"k": k, "n": n} for k, n in touched.items()])
        return len(touched)

    def purge_expired(self) -> int:
        """Blocking. Delete the table's expired entries; returns how many."""
        if self.engine is None:
            return 0
        with self.engine.begin() as conn:
            res = conn.execute(
                delete(SegmentCacheEntry).where(SegmentCacheEntry.ttl_expires_at < utcnow())
            )
        return res.rowcount or 0

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
        # One INSERT ... ON CONFLICT executemany: no read of existing keys first and
        # no ORM objects: a worker writes every batch it translated, and per-row ORM
        # inserts after a SELECT were a visible share of the worker's CPU.
        now = utcnow()
        expires = self._expires()
        values = [
            {"key": key, "source_lang": source, "target_lang": target,
             "model_version": model_version, "translation": tr.text, "score": tr.score,
             "created_at": now, "access_count": 0, "ttl_expires_at": expires}
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
