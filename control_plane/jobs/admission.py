"""Admission: one validation path for every way a job comes in (REST now, the Kafka
ingest topic in issue 5), so both reject the same input with the same reasons.

    req = admit(body, principal, client, settings)   # -> SubmitRequest, or raises Rejected

``Rejected`` is a ``DomainError``: ``code``/``message``/``details`` are what the API returns
(its HTTP status comes from the code, in control_plane/api/errors.py) and what the ingest
consumer writes into a dead-letter record's reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from control_plane.auth import Principal
from control_plane.domain import TIER_MAX_PRIORITY, DomainError
from control_plane.jobs.json_body import MAX_DEPTH, THREAD_BYTES, too_deep
from control_plane.jobs.request import TranslateRequest, metadata_json
from control_plane.jobs.service import SubmitRequest, count_text_words


class Rejected(DomainError):
    """A submission that is not admitted; ``not_ready`` (engine loading) is transient."""

    def __init__(
        self, code: str, message: str, details: Any = None, retry_after: float | None = None
    ):
        super().__init__(message, details, code=code, retry_after=retry_after)
        self.transient = code == "not_ready"


def detects(body: object) -> bool:
    """Whether admission will detect the language (its first call loads the detector's
    models, about 2 s): then callers run it in a thread, off the event loop."""
    if not isinstance(body, dict):
        return False
    source = body.get("source_language", body.get("source_lang"))
    return isinstance(source, str) and source.lower() == "auto"


def off_loop(body: object) -> bool:
    """Whether ``admit(body, ...)`` should run in a thread, off the event loop: when it
    detects the language, and whenever its cost is not bounded by a short plain text.
    Counting a document's words parses it, and what that costs is not what the body
    weighs: a 37 KB docx of 350,000 empty paragraphs took 1.5 s, 60 KB of markdown "["
    0.7 s. Only ``format`` text (the default) of at most THREAD_BYTES characters is
    admitted on the loop."""
    if not isinstance(body, dict):
        return False  # rejected at once
    if detects(body) or body.get("format", "text") != "text":
        return True
    return any(
        isinstance(body.get(key), str) and len(body[key]) > THREAD_BYTES
        for key in ("content", "text")
    )


def detect_source(content: str, fmt: str, served: list[str] | None = None):  # noqa: ANN201
    """The content's language (a ``language.Detection``): a document's (or markup's)
    text, not its syntax; 422 ``language_not_detected`` when there is nothing to tell it
    by. Detection looks at every configured language, so a German text is named German;
    a served language close enough to the top one wins (``language.detect_preferring``:
    short Portuguese often reads a little more Spanish)."""
    from control_plane.jobs import documents
    from control_plane.text import language

    text = content
    if documents.is_document(fmt):
        text = "\n".join(u.text for u in documents.extract(content, fmt)[:200])
    if documents.markup_of(fmt) != "text":
        text = documents.TAG.sub(" ", text)
    try:
        return language.detect_preferring(text, served or [])
    except ValueError as exc:
        raise Rejected(
            "language_not_detected",
            f"source_language auto: {exc}; name the source language",
        ) from exc


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
    shape/fields, tier, engine loading, pair, size."""
    if not isinstance(body, dict):
        raise Rejected("invalid_request", "request body must be a JSON object")
    # a JSON body is bounded by parse_json already; this holds for every other way a body
    # is put together (upload form fields) before anything is validated or stored: deeper
    # metadata passed the size check, was kept, and then every read of the user's jobs
    # failed to serialize it (and json.dumps raised RecursionError past ~1,000 levels)
    if too_deep(body, MAX_DEPTH):
        raise Rejected(
            "json_too_complex",
            f"request nests JSON more than {MAX_DEPTH} levels deep (counting the request "
            "object itself)",
        )
    try:
        req = TranslateRequest.model_validate(body)
    except ValidationError as exc:
        raise Rejected(
            "invalid_request", "request fields are invalid", validation_details(exc)
        ) from exc
    if not who.allows(req.priority):
        raise Rejected(
            "priority_not_allowed",
            f"tier {who.tier} may use priority up to {TIER_MAX_PRIORITY[who.tier]}, "
            f"not {req.priority}",
        )
    if not client.ready():
        raise Rejected(
            "not_ready",
            "the translation engine is still loading; retry shortly",
            retry_after=5,
        )
    pairs = client.pairs()
    detection = None
    if req.source_language.lower() == "auto":
        detection = detect_source(req.content, req.format, sorted({s for s, _ in pairs}))
        req.source_language = detection.language
        if (detection.language, req.target_language) not in set(pairs):
            listed = ", ".join(f"{s}-{t}" for s, t in pairs)
            raise Rejected(
                "unsupported_language_pair",
                f"the content reads as {detection.language} (confidence "
                f"{detection.confidence:.2f}); no model translates "
                f"{detection.language}->{req.target_language}; supported: {listed}",
                details={
                    "detected_language": detection.language,
                    "confidence": round(detection.confidence, 4),
                    "supported_pairs": [{"source": s, "target": t} for s, t in pairs],
                },
            )
    if (req.source_language, req.target_language) not in set(pairs):
        listed = ", ".join(f"{s}-{t}" for s, t in pairs)
        raise Rejected(
            "unsupported_language_pair",
            f"no model translates {req.source_language}->{req.target_language}; "
            f"supported: {listed}",
            details={"supported_pairs": [{"source": s, "target": t} for s, t in pairs]},
        )
    words = count_text_words(req.content, req.format)  # html/xml: the text, not the tags
    if words > settings.max_words:
        raise Rejected(
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
        word_count=words,
        format=req.format,
        do_not_translate=req.do_not_translate,
        glossary=req.glossary,
        glossary_id=req.glossary_id,
        detected_language=detection.language if detection else None,
        detection_confidence=round(detection.confidence, 4) if detection else None,
    )
