"""The submission schema, shared by every way a job comes in (REST, the Kafka ingest
topic): pydantic validates it, and the OpenAPI document shows it."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AliasChoices, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from control_plane.domain import PRIORITIES

Priority = Literal[PRIORITIES]
LANG_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
MAX_METADATA_BYTES = 4096


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
                }
            ]
        },
    )

    content: str = Field(
        min_length=1,
        validation_alias=AliasChoices("content", "text"),
        description="The document; paragraphs and line breaks are kept. Alias: text.",
    )
    source_language: str = Field(
        pattern=LANG_PATTERN,
        validation_alias=AliasChoices("source_language", "source_lang"),
        description="ISO 639 code, e.g. en. Alias: source_lang.",
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
        try:
            size = len(metadata_json(v).encode("utf-8"))
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
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
