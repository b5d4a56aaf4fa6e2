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
