"""Large texts are planned in a child process, with the same result as in-process."""

from __future__ import annotations

from control_plane.jobs import planner
from control_plane.text import chunking


def expected(text: str, words: int, lang: str):
    chunks, layouts = chunking.plan(text, words, lang)
    return chunks, [lay.dumps() for lay in layouts], [s for lay in layouts for s in lay.segments]


def test_small_texts_are_planned_here(monkeypatch):
    monkeypatch.setattr(planner, "_executor", lambda: (_ for _ in ()).throw(AssertionError))
    text = "Short text. Two sentences.\n\n  - and a list item\n"
    assert planner.plan_stored(text, 1000, "en") == expected(text, 1000, "en")
    nothing = planner.plan_stored("\u200b", 1000, "en")  # no segment at all
    assert nothing == expected("\u200b", 1000, "en") and nothing[2] == []


def test_large_texts_are_planned_in_a_child_process_identically(monkeypatch):
    monkeypatch.setattr(planner, "PROCESS_CHARS", 1000)
    text = "\n\n".join(f"Paragraph {i}. It has two sentences, e.g. this one!" for i in range(300))
    text += "\n" + "a\u3002" * 3000 + "\n" + "word " * 2500
    try:
        assert planner.plan_stored(text, 200, "pt") == expected(text, 200, "pt")
        assert planner._pool is not None  # it went to the child
    finally:
        planner.shutdown()
    assert planner._pool is None


def test_a_broken_pool_is_replaced_and_the_text_planned_in_a_child_of_its_own(monkeypatch):
    """Never in this process (test_planner_failures: a text that kills that child too)."""
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *args):
            raise BrokenProcessPool("killed")

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(planner, "PROCESS_CHARS", 10)
    monkeypatch.setattr(planner, "_pool", Broken())
    text = "One. Two. " * 10
    assert planner.plan_stored(text, 1000, "en") == expected(text, 1000, "en")
    assert planner._pool is None  # the next large text starts a new child
