"""POST /api/v1/documents: a file upload that becomes the same job as a JSON submission.

The format comes from the ``format`` field or the file name's extension; the file is
stored as the job's content (base64 for a binary format) and the result endpoint gives
the translated file back with its content type and a file name (``guide.pt.md``)."""

from __future__ import annotations

import asyncio
import unicodedata

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from control_plane.auth import Principal
from control_plane.jobs import documents
from control_plane.jobs.admission import admit
from control_plane.jobs.json_body import MAX_DEPTH, parse_json
from control_plane.jobs.service import SubmitRequest
from control_plane.text import formats

from ..errors import ApiError
from ..openapi import AUTH_ERRORS, SECURED, err, json_spec, operation, ref
from ..state import authenticate, runtime_of
from .translate import accept

routes = web.RouteTableDef()

FIELD_BYTES = 1 << 20  # a form field (a glossary as JSON can be large), not the file
JSON_FIELDS = ("metadata", "glossary", "do_not_translate")  # sent as JSON text
TEXT_FIELDS = (
    "source_language", "target_language", "priority", "format", "callback_url", "glossary_id",
)  # fmt: skip


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "content_too_large", f"{what} over the {limit}-byte limit")
    return bytes(data)


async def read_form(request: web.Request, limit: int) -> tuple[dict, bytes, str | None]:
    """(fields, file bytes, file name) of a multipart/form-data upload: text fields as
    str, JSON fields as their bytes (parse_json reads them, invalid UTF-8 included)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with a 'file' part")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "content_too_large", f"request body over the {limit}-byte limit")
    fields: dict = {}
    data, filename = None, None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(422, "invalid_request", "nested multipart bodies are not read")
            if part.name == "file":
                filename = part.filename
                data = await _read_part(part, limit, "file")
            elif part.name in JSON_FIELDS:
                fields[part.name] = await _read_part(part, FIELD_BYTES, f"field {part.name}")
            elif part.name in TEXT_FIELDS:
                raw = await _read_part(part, FIELD_BYTES, f"field {part.name}")
                fields[part.name] = raw.decode("utf-8", "replace")
            elif part.name is None:
                raise ApiError(
                    422,
                    "invalid_request",
                    "a form part without a name (its Content-Disposition needs name=...)",
                )
            else:
                raise ApiError(422, "invalid_request", f"unknown form field {part.name[:100]!r}")
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # a broken body
        reason = " ".join(str(exc).split())[:300]  # aiohttp's: "400, message:\n  ..."
        raise ApiError(
            400, "malformed_form", f"multipart body could not be read: {reason}"
        ) from exc
    if data is None:
        raise ApiError(422, "invalid_request", "the form has no 'file' part")
    return fields, data, filename


def request_body(fields: dict, data: bytes, filename: str | None) -> dict:
    """The JSON submission this upload stands for."""
    fmt = fields.get("format") or documents.format_of(filename)
    if fmt is None:
        known = ", ".join(sorted({*documents.OWN_PATH, *formats.names()}))
        raise ApiError(
            422,
            "unknown_format",
            f"cannot tell the format of {filename or 'the file'!r} from its name; "
            f"send format= one of: {known}",
        )
    body: dict = {k: v for k, v in fields.items() if k in TEXT_FIELDS}
    body["format"] = fmt
    for key in JSON_FIELDS:
        if key in fields:
            # the JSON endpoint's parser and limits (BodyError: 400 malformed_json or
            # json_too_complex), one level less deep: in a JSON body the field is nested
            # in the request object, and deeper metadata was kept and then broke every
            # read of the user's jobs
            body[key] = parse_json(fields[key], f"form field {key}", MAX_DEPTH - 1)
    try:
        body["content"] = (
            documents.encode(data, fmt) if documents.is_document(fmt) else data.decode("utf-8")
        )
    except UnicodeDecodeError as exc:
        raise ApiError(
            422, "invalid_document", f"{filename or 'the file'} is not UTF-8 text: {exc}"
        ) from exc
    return body


@routes.post("/api/v1/documents")
@operation(
    {
        "summary": "Upload a file for translation (the same job as POST /api/v1/translate)",
        "operationId": "submitDocument",
        "security": SECURED,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "source_language", "target_language"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "source_language": {"type": "string"},
                            "target_language": {"type": "string"},
                            "priority": {"type": "string", "enum": ["critical", "high", "normal"]},
                            "format": {
                                "type": "string",
                                "description": "default: from the file name's extension",
                            },
                            "callback_url": {"type": "string"},
                            "glossary_id": {"type": "string"},
                            "metadata": {"type": "string", "description": "a JSON object"},
                            "glossary": {"type": "string", "description": "a JSON object"},
                            "do_not_translate": {"type": "string", "description": "a JSON list"},
                        },
                    }
                }
            },
        },
        "responses": {
            "202": json_spec(ref("SubmitResponse"), "Job accepted"),
            "400": err(
                "malformed_form, malformed_body (a Content-Encoding that does not decode), "
                "malformed_json or json_too_complex (a JSON field: metadata, glossary, "
                "do_not_translate; the limits of a JSON body), or unsupported_language_pair"
            ),
            "404": err("glossary_not_found"),
            **AUTH_ERRORS,
            "413": err("File or word count over the configured limit"),
            "415": err("Not multipart/form-data"),
            "422": err(
                "invalid_request (fields), unknown_format (say format=), invalid_document "
                "(the file does not parse as its format, or is not UTF-8 text)"
            ),
            "503": err("Engine still loading"),
        },
    }
)
async def upload(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    fields, data, filename = await read_form(request, svc.settings.max_body_bytes)
    # always off the loop: counting a file's words parses it, and what that costs is not
    # what the file weighs (37 KB of docx held the loop 1.5 s); the JSON fields (1 MiB
    # each) are parsed there too
    req = await asyncio.to_thread(
        admit_upload, fields, data, filename, who, svc.client, svc.settings
    )
    return await accept(svc, who, req)


def admit_upload(
    fields: dict,
    data: bytes,
    filename: str | None,
    who: Principal,
    client,  # noqa: ANN001 - an InferenceClient
    settings,  # noqa: ANN001 - Settings
) -> SubmitRequest:
    """An upload admitted as its JSON submission would be (blocking: run in a thread)."""
    name = clean_filename(filename)
    req = admit(request_body(fields, data, name), who, client, settings)
    req.filename = name
    return req


def clean_filename(name: str | None) -> str | None:
    """The upload's file name as text that can be stored and sent back: bytes that are
    not UTF-8 (a raw Latin-1 name arrives as surrogate escapes, which no database encoding
    takes) become U+FFFD, control characters (NUL, line breaks) are dropped, and at most
    255 characters are kept."""
    if not name:
        return None
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (a %ED%A0%80 name)
        raw = name.encode("utf-8", "replace")
    text = raw.decode("utf-8", "replace")
    text = "".join(c for c in text if unicodedata.category(c) != "Cc").strip()
    return text[:255] or None
