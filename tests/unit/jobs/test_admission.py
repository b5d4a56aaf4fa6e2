"""One admission path for REST and the Kafka ingest topic: same checks, same reasons."""

from __future__ import annotations

import pytest

from control_plane.api.errors import HTTP_STATUS  # where the API maps codes
from control_plane.auth import Principal
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.admission import Rejected, admit
from control_plane.settings import Settings
from tests.unit.api.fake_engine import FakeEngine

PRO = Principal("u1", "u@x.io", "pro", "k")
OK = {"text": "Hello there.", "source_lang": "EN", "target_lang": "pt", "priority": "high"}


def run(body, who=PRO, max_words=100):
    return admit(
        body, who, LocalInferenceClient(engine=FakeEngine()), Settings(max_words=max_words)
    )


def test_accepts_and_normalizes():
    req = run(OK)
    assert (req.user_id, req.source_lang, req.priority) == ("u1", "en", "high")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("text", 422, "invalid_request"),
        ({**OK, "priority": "asap"}, 422, "invalid_request"),
        ({**OK, "priority": "critical"}, 403, "priority_not_allowed"),
        ({**OK, "target_lang": "fr"}, 400, "unsupported_language_pair"),
        ({**OK, "text": "w " * 101}, 413, "content_too_large"),
    ],
)
def test_rejections(body, status, code):
    with pytest.raises(Rejected) as info:
        run(body)
    assert (HTTP_STATUS[info.value.code], info.value.code) == (status, code)
    reason = info.value.as_dict()
    assert reason["message"] and reason["code"] == code
