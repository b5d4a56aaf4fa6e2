"""What the planner does when a large text's plan fails: the plan's own errors reach the
caller and leave the pool alone; a text that kills its child is refused (never planned in
this process) and the next plan gets a fresh pool; texts that only shared the broken pool
are planned again; a pool that cannot start at all means planning here.

The planning function is replaced by functions of this module, which the spawned children
import by name (pytest's importlib mode names it tests.unit.jobs.test_planner_failures).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from control_plane.jobs import documents, planner
from control_plane.text import chunking

_real_plan = planner._plan_here
PARENT = "MTB_TEST_PLANNER_PARENT"  # the test process's pid, inherited by the children
KILL, SLOW_KILL = "KILL-THE-PLANNER", "SLOWLY-KILL-THE-PLANNER"


def _kill_this_child() -> None:
    if os.environ.get(PARENT) == str(os.getpid()):
        raise AssertionError("a text that kills its planner was planned in this process")
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer does


def _deadly_plan(text: str, target_words: int, lang: str, fmt: str = "text"):  # noqa: ANN202
    if text.startswith(SLOW_KILL):
        time.sleep(1.5)  # long enough for another plan to queue behind this one
        _kill_this_child()
    if text.startswith(KILL):
        _kill_this_child()
    return _real_plan(text, target_words, lang, fmt)


def _dies_on_start() -> None:
    _kill_this_child()


def expected(text: str, words: int, lang: str):
    chunks, layouts = chunking.plan(text, words, lang)
    return chunks, [lay.dumps() for lay in layouts], [s for lay in layouts for s in lay.segments]


GOOD = "\n\n".join(f"Paragraph {i}. It has two sentences, e.g. this one!" for i in range(40))


@pytest.fixture(autouse=True)
def large_is_small(monkeypatch):
    monkeypatch.setattr(planner, "PROCESS_CHARS", 100)
    monkeypatch.setattr(planner, "PROCESS_WORKERS", 1)
    monkeypatch.setenv(PARENT, str(os.getpid()))
    planner.shutdown()
    yield
    planner.shutdown()


def test_a_plan_error_reaches_the_caller_and_the_pool_serves_the_next_plan():
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    pool = planner._pool
    assert pool is not None
    bad_xml = "<doc>" + "<p>text</p>" * 50 + "<unclosed>"
    with pytest.raises(ValueError, match="XML does not parse"):
        planner.plan_stored(bad_xml, 1000, "en", "xml")
    not_base64 = "this is not base64! " * 20
    with pytest.raises(documents.InvalidDocument, match="base64") as caught:
        planner.plan_stored(not_base64, 1000, "en", "docx")
    assert caught.value.code == "invalid_document"  # pickled back whole: code and details
    assert caught.value.details == [{"field": "content", "message": "not base64"}]
    assert planner._pool is pool
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    assert planner._pool is pool


def test_a_text_that_kills_its_child_is_refused_and_the_next_plan_gets_a_fresh_pool(
    monkeypatch,
):
    monkeypatch.setattr(planner, "_plan_here", _deadly_plan)
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    pool = planner._pool
    started = time.monotonic()
    with pytest.raises(planner.PlanNotFinished, match="ran out of resources") as caught:
        planner.plan_stored(KILL + " " + GOOD, 200, "en")
    assert caught.value.code == "invalid_document"  # the API's 422
    assert time.monotonic() - started < 60
    assert planner._pool is None
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    assert planner._pool is not None and planner._pool is not pool


def test_a_text_that_shared_the_broken_pool_is_planned_again(monkeypatch, caplog):
    monkeypatch.setattr(planner, "_plan_here", _deadly_plan)
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")  # warm
    outcome: dict[str, object] = {}

    def killer() -> None:
        try:
            planner.plan_stored(SLOW_KILL + " " + GOOD, 200, "en")
        except Exception as exc:  # noqa: BLE001 - what the test looks at
            outcome["killer"] = exc

    caplog.set_level(logging.WARNING, logger=planner.__name__)
    thread = threading.Thread(target=killer)
    thread.start()
    time.sleep(0.3)  # the killer's plan is in the one child; this one queues behind it
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    thread.join()
    assert isinstance(outcome["killer"], planner.PlanNotFinished)
    retried = [r for r in caplog.records if "a process of its own" in r.getMessage()]
    assert len(retried) == 2  # both, the innocent one planned again in a child


def test_no_pool_at_all_means_planning_here(monkeypatch):
    def cannot(workers: int):  # noqa: ANN202
        raise OSError("no semaphores here")

    monkeypatch.setattr(planner, "_start", cannot)
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    assert planner._pool is None


def test_a_child_that_dies_on_start_means_planning_here(monkeypatch):
    monkeypatch.setattr(planner, "_ready", _dies_on_start)
    assert planner.plan_stored(GOOD, 200, "en") == expected(GOOD, 200, "en")
    assert planner._pool is None
