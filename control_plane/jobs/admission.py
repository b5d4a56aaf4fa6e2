"""Admission: one validation path for every way a job comes in (REST now, the Kafka
ingest topic in issue 5), so both reject the same input with the same reasons.

    req = admit(body, principal, client, settings)   # -> SubmitRequest, or raises Rejected

``Rejected.status`` is the HTTP status the REST API answers with (400, 403, 413, 422, 503);
``code``/``message``/``details`` are what the API returns and what the ingest consumer
writes into a dead-letter record's reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from control_plane.auth import Principal
from control_plane.domain import TIER_MAX_PRIORITY
from control_plane.jobs.chunking import count_words
from control_plane.jobs.request import TranslateRequest, metadata_json
from control_plane.jobs.service import SubmitRequest


class Rejected(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers or {}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


def validation_details(exc: ValidationError) -> list[dict]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "body",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def admit(body: object, who: Principal, client, settings) -> SubmitRequest:  # noqa: ANN001
    """Validate a decoded JSON request for ``who``; the checks and their order are the API's:
    shape/fields 422, tier 403, engine loading 503, pair 400, size 413."""
    if not isinstance(body, dict):
        raise Rejected(422, "invalid_request", "request body must be a JSON object")
    try:
        req = TranslateRequest.model_validate(body)
    except ValidationError as exc:
        raise Rejected(
            422, "invalid_request", "request fields are invalid", validation_details(exc)
        ) from exc
    if not who.allows(req.priority):
        raise Rejected(
            403,
            "priority_not_allowed",
            f"tier {who.tier} may use priority up to {TIER_MAX_PRIORITY[who.tier]}, "
            f"not {req.priority}",
        )
    if not client.ready():
        raise Rejected(
            503,
            "not_ready",
            "the translation engine is still loading; retry shortly",
            headers={"Retry-After": "5"},
        )
    pairs = client.pairs()
    if (req.source_language, req.target_language) not in set(pairs):
        listed = ", ".join(f"{s}-{t}" for s, t in pairs)
        raise Rejected(
            400,
            "unsupported_language_pair",
            f"no model translates {req.source_language}->{req.target_language}; "
            f"supported: {listed}",
            details={"supported_pairs": [{"source": s, "target": t} for s, t in pairs]},
        )
    words = count_words(req.content)
    if words > settings.max_words:
        raise Rejected(
            413,
            "content_too_large",
            f"content has {words} words; the limit is {settings.max_words} per request",
        )
    return SubmitRequest(
        user_id=who.user_id,
        text=req.content,
        source_lang=req.source_language,
        target_lang=req.target_language,
        priority=req.priority,
        callback_url=str(req.callback_url) if req.callback_url else None,
        metadata=metadata_json(req.metadata),
    )
