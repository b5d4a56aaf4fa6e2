"""TranslateRequest's metadata check holds on its own: a value nested past the JSON
body's depth is refused with a ValueError (json.dumps raised RecursionError past ~1,000
levels, which escaped the check as a 500 wherever a request was built without the body
parser in front)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control_plane.jobs.request import TranslateRequest


def nested(levels: int) -> dict:
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[return-value]


@pytest.mark.parametrize("levels", [64, 3000])
def test_deep_metadata_is_refused_readably(levels):
    with pytest.raises(ValidationError, match="metadata nests more than 63 levels"):
        TranslateRequest.model_validate(
            {"source_language": "en", "target_language": "pt", "content": "Hi.",
             "metadata": nested(levels)}
        )  # fmt: skip


def test_metadata_within_the_depth_is_kept():
    req = TranslateRequest.model_validate(
        {"source_language": "en", "target_language": "pt", "content": "Hi.", "metadata": nested(62)}
    )
    assert req.metadata == nested(62)
