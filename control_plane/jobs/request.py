"""The submission schema, shared by every way a job comes in (REST, the Kafka ingest
topic): pydantic validates it, and the OpenAPI document shows it."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AliasChoices, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from control_plane.domain import PRIORITIES

Priority = Literal[PRIORITIES]
# text/html/xml: content is the text itself; the others are document formats
# (control_plane.text.formats): content is the file (base64 for docx), or upload it to
# POST /api/v1/documents
Format = Literal["text", "html", "xml", "po", "xliff", "markdown", "srt", "vtt", "docx"]
LANG_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
SOURCE_PATTERN = r"^([Aa][Uu][Tt][Oo]|[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?)$"  # or "auto"
MAX_METADATA_BYTES = 4096
MAX_DO_NOT_TRANSLATE = 200  # strings per request
MAX_SPAN_CHARS = 200  # characters per do_not_translate string and per glossary term
MAX_GLOSSARY_TERMS = 1000  # terms per inline glossary and per stored glossary
GLOSSARY_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


def check_terms(terms: dict[str, str], what: str = "glossary") -> dict[str, str]:
    """A glossary's terms, checked (inline ones here, stored ones by
    control_plane.jobs.glossaries): at most ``MAX_GLOSSARY_TERMS`` pairs, each side 1 to
    ``MAX_SPAN_CHARS`` characters of text (no NUL, no other control character but tab, no
    lone surrogate, not only spaces), and no two source terms the same once case and
    surrounding spaces are ignored (terms are matched that way, so one of them would
    never apply). Raises ValueError with a message naming the term."""
    if not isinstance(terms, dict):
        raise ValueError(f"{what} must be a JSON object of source term -> target term")
    if len(terms) > MAX_GLOSSARY_TERMS:
        raise ValueError(f"{what} has {len(terms)} terms; at most {MAX_GLOSSARY_TERMS} are allowed")
    seen: dict[str, str] = {}
    for source, target in terms.items():
        for side, value in (("source term", source), ("target term", target)):
            if not isinstance(value, str):
                raise ValueError(f"{what} {side} {value!r} must be a string")
            _check_span(value, f"{what} {side}")
        key = source.strip().casefold()
        if key in seen:
            raise ValueError(
                f"{what} source terms {seen[key]!r} and {source!r} differ only in case or "
                "surrounding spaces; terms are matched ignoring both, so keep one"
            )
        seen[key] = source
    return terms


def _check_span(value: str, what: str) -> None:
    shown = value[:40] + ("..." if len(value) > 40 else "")
    if not value.strip():
        raise ValueError(f"{what} {shown!r} is empty or only spaces")
    if len(value) > MAX_SPAN_CHARS:
        raise ValueError(
            f"{what} {shown!r} is {len(value)} characters; at most {MAX_SPAN_CHARS} are allowed"
        )
    if any((c < " " and c != "\t") or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in value):
        raise ValueError(
            f"{what} {shown!r} must be plain text: no NUL or other control characters, "
            "no line breaks, no lone surrogates"
        )


class TranslateRequest(BaseModel):
    """The design's request body. The field names before the design was followed
    (``text``, ``source_lang``, ``target_lang``) are still accepted, so existing clients
    keep working; the OpenAPI document shows the design's names."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source_language": "en",
                    "target_language": "pt",
                    "content": "Hello, world! This is a test document.",
                    "priority": "high",
                    "callback_url": "https://client.example.com/webhook",
                    "metadata": {"document_type": "technical", "domain": "software"},
                },
                {
                    "source_language": "en",
                    "target_language": "pt",
                    "content": "<p>Click <b>Save</b> to keep {count} files in ~/Documents.</p>",
                    "format": "html",
                    "do_not_translate": ["Acme Cloud"],
                    "glossary": {"file": "arquivo"},
                    "glossary_id": "0b6f7c1e-3f0a-4a53-9a8e-2d4d0c2b7e11",
                },
            ]
        },
    )

    content: str = Field(
        min_length=1,
        validation_alias=AliasChoices("content", "text"),
        description="The document; paragraphs and line breaks are kept. Alias: text.",
    )
    source_language: str = Field(
        pattern=SOURCE_PATTERN,
        validation_alias=AliasChoices("source_language", "source_lang"),
        description="ISO 639 code, e.g. en, or auto: detected from the content (the "
        "detected language and its confidence are kept with the job; 400 naming it when "
        "no model translates it). Alias: source_lang.",
    )
    target_language: str = Field(
        pattern=LANG_PATTERN,
        validation_alias=AliasChoices("target_language", "target_lang"),
        description="ISO 639 code, e.g. pt. Alias: target_lang.",
    )
    priority: Priority = Field("normal", description="Capped by the caller's tier.")
    callback_url: AnyHttpUrl | None = Field(
        None, description="POSTed (HMAC-SHA256 signed) when the job completes or fails."
    )
    metadata: dict[str, Any] | None = Field(
        None,
        description="Free JSON object kept with the job and returned with its status and "
        f"result (e.g. document_type, domain); at most {MAX_METADATA_BYTES} bytes as JSON.",
    )
    format: Format = Field(
        "text",
        description="text: plain text (paragraphs and line breaks kept). html / xml: the "
        "content is a document whose tags, attributes and entities are kept; text nodes are "
        "translated with their inline tags carried along, <code>, <pre>, <script>, <style> "
        'and translate="no" are left as they are, alt and title attributes are '
        "translated. word_count (and so cost and quota) counts the text, not the tags. "
        "po, xliff, markdown, srt, vtt, docx: content is the file (docx: base64); its "
        "structure is kept and the result is the translated file (see POST "
        "/api/v1/documents for uploads).",
    )
    do_not_translate: list[str] | None = Field(
        None,
        description=f"Strings that must come out exactly as written, wherever they occur "
        f"(product names, identifiers); at most {MAX_DO_NOT_TRANSLATE} strings of 1 to "
        f"{MAX_SPAN_CHARS} characters. Placeholders (%s, {{count}}, ${{VAR}}), inline code, "
        "URLs, e-mail addresses, file paths and numbers with units are kept without being "
        "listed.",
    )
    glossary: dict[str, str] | None = Field(
        None,
        description=f"Inline glossary, source term -> target term (at most "
        f"{MAX_GLOSSARY_TERMS} terms of 1 to {MAX_SPAN_CHARS} characters each side). A term "
        "is matched as a whole word ignoring case, and its target comes out exactly as given "
        "(ALL CAPS or a capital first letter in the text carry over). With glossary_id the "
        "two are merged and the inline term wins where both have the same source term.",
    )
    glossary_id: str | None = Field(
        None,
        pattern=GLOSSARY_ID_PATTERN,
        description="id of one of the caller's stored glossaries (/api/v1/glossaries). Its "
        "terms at submit time are kept with the job: editing or deleting the glossary later "
        "does not change the job. An id that is not the caller's is 404 glossary_not_found.",
    )

    @field_validator("content")
    @classmethod
    def _text_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must contain at least one word")
        if "\x00" in v:
            raise ValueError("content must not contain NUL characters")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("content must be valid Unicode (no lone surrogates)") from exc
        return v

    @field_validator("do_not_translate")
    @classmethod
    def _dnt_ok(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(v) > MAX_DO_NOT_TRANSLATE:
            raise ValueError(
                f"do_not_translate has {len(v)} strings; at most {MAX_DO_NOT_TRANSLATE} are allowed"
            )
        for s in v:
            _check_span(s, "do_not_translate string")
        return v

    @field_validator("glossary")
    @classmethod
    def _glossary_ok(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return v if v is None else check_terms(v)

    @field_validator("source_language", "target_language")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower().replace("_", "-")

    @field_validator("callback_url")
    @classmethod
    def _url_len(cls, v: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if v is not None and len(str(v)) > 2048:
            raise ValueError("callback_url must be at most 2048 characters")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_ok(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        from control_plane.jobs.json_body import MAX_DEPTH, too_deep

        # every entry path (JSON, upload fields, Kafka) checks depth before this; here too,
        # since json.dumps past ~1,000 levels raises RecursionError, not ValueError
        if too_deep(v, MAX_DEPTH - 1):
            raise ValueError(f"metadata nests more than {MAX_DEPTH - 1} levels")
        try:
            size = len(metadata_json(v).encode("utf-8"))
        except (ValueError, TypeError, UnicodeEncodeError, RecursionError) as exc:
            raise ValueError(f"metadata must be a plain JSON object of valid text: {exc}") from exc
        if size > MAX_METADATA_BYTES:
            raise ValueError(
                f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are kept"
            )
        return v


def metadata_json(value: dict[str, Any] | None) -> str | None:
    """The stored form of ``metadata`` (compact JSON, NaN refused)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def metadata_value(stored: str | None) -> dict[str, Any] | None:
    return json.loads(stored) if stored else None
