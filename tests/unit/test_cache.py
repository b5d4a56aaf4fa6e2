"""Segment cache: normalization, LRU, DB persistence, model-version keys."""

from __future__ import annotations

from control_plane.cache import SegmentCache, cache_key, cached_translate_sync, normalize
from control_plane.db import Database
from control_plane.engine.base import Translation
from control_plane.settings import Settings
from tests.unit.api.fake_engine import FakeEngine


def test_normalize_and_key():
    assert normalize("  Hello \n\t world ") == "Hello world"
    assert normalize("e\u0301") == "\u00e9"
    assert cache_key(" a  b", "en", "pt", "v1") == cache_key("a b", "en", "pt", "v1")
    assert cache_key("a b", "en", "pt", "v1") != cache_key("a b", "en", "pt", "v2")
    assert cache_key("a b", "en", "pt", "v1") != cache_key("a b", "pt", "en", "v1")


def test_lru_and_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    c = SegmentCache(db.engine, capacity=2)
    c.put_many(["one", "two", "three"], [Translation(t, 0.5) for t in "123"], "en", "pt", "v")
    assert len(c._lru) == 2  # LRU bounded; the table has all three
    fresh = SegmentCache(db.engine, capacity=10)
    hits = fresh.get_many(["one", "x", "three", "one"], "en", "pt", "v")
    assert {i: t.text for i, t in hits.items()} == {0: "1", 2: "3", 3: "1"}
    assert fresh.hits == 3 and fresh.misses == 1
    assert fresh.get_many(["one"], "en", "pt", "other-version") == {}
    c.put_many(["one"], [Translation("1", 0.5)], "en", "pt", "v")  # duplicate: harmless


def test_cli_cached_translate(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = FakeEngine()
    run = cached_translate_sync(engine, settings, "en", "pt")
    assert run(["Hello world.", "", "Hello world."]) == [
        "world. Hello [pt]",
        "",
        "world. Hello [pt]",
    ]
    again = cached_translate_sync(engine, settings, "en", "pt")
    calls = len(engine.calls)
    assert again(["Hello   world."]) == ["world. Hello [pt]"]
    assert len(engine.calls) == calls  # served from the DB table


def test_ttl_expiry_access_counts_and_purge(tmp_path):
    """An entry nobody used for ttl_s is neither served (LRU or table) nor kept; hits are
    counted into access_count/last_accessed and push the expiry ahead."""
    import time

    from sqlalchemy import select

    from control_plane.db.models import SegmentCacheEntry

    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    c = SegmentCache(db.engine, capacity=10, ttl_s=1.5, access_flush_s=3600)
    c.put_many(["kept", "dropped"], [Translation("k", 0.9), Translation("d", 0.8)], "en", "pt", "v")

    def rows():
        with db.session() as s:
            return {r.translation: r for r in s.execute(select(SegmentCacheEntry)).scalars()}

    first = rows()
    assert first["k"].access_count == 0 and first["k"].ttl_expires_at is not None
    time.sleep(0.8)
    assert set(c.get_many(["kept", "kept"], "en", "pt", "v")) == {0, 1}  # LRU hits
    assert c.flush_access() == 1
    after = rows()["k"]
    assert after.access_count == 2 and after.last_accessed is not None
    assert after.ttl_expires_at > first["k"].ttl_expires_at  # pushed ahead by the use
    time.sleep(1.0)  # "dropped" is past its TTL (1.5 s), "kept" is not (0.8 + 1.5 s)
    fresh = SegmentCache(db.engine, capacity=10, ttl_s=1.5)
    assert set(fresh.get_many(["kept", "dropped"], "en", "pt", "v")) == {0}
    assert c.get_many(["dropped"], "en", "pt", "v") == {}  # the LRU honours the TTL too
    assert c.purge_expired() == 1
    assert set(rows()) == {"k"}
    # an expired key translated again is written again (not skipped as a conflict)
    time.sleep(1.6)
    c.put_many(["kept"], [Translation("k2", 0.7)], "en", "pt", "v")
    assert SegmentCache(db.engine, ttl_s=1.5).get_many(["kept"], "en", "pt", "v")[0].text == "k2"


def test_no_ttl_never_expires(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    c = SegmentCache(db.engine, ttl_s=0)
    c.put_many(["a"], [Translation("b", 0.5)], "en", "pt", "v")
    assert c.purge_expired() == 0
    assert SegmentCache(db.engine).get_many(["a"], "en", "pt", "v")[0].text == "b"
