"""Exceptions -> clear JSON errors. Any input gets a 4xx with a message, never a 500."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from control_plane.db.database import is_database_unavailable
from control_plane.domain import DomainError

log = logging.getLogger(__name__)


# The one place where the domain's error codes become HTTP statuses; a code not listed
# is a 400. (ApiError below is for errors of the web layer itself: paging, routing.)
HTTP_STATUS = {
    "malformed_json": 400,
    "json_too_complex": 400,
    "unsupported_language_pair": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "priority_not_allowed": 403,
    "job_not_found": 404,
    "glossary_not_found": 404,  # also another user's: no existence leak
    "job_finished": 409,
    "glossary_name_taken": 409,
    "too_many_glossaries": 409,
    "content_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "invalid_markup": 422,
    "invalid_document": 422,  # a file that does not parse as its format
    "language_not_detected": 422,
    "unknown_format": 422,
    "malformed_form": 400,
    "quota_exceeded": 429,
    "not_ready": 503,
}


def domain_response(exc: DomainError) -> web.Response:
    status = HTTP_STATUS.get(exc.code, 400)
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mtb"'
    return error_response(status, exc.code, exc.message, exc.details, headers or None)


class ApiError(Exception):
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


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.Response(
        status=status,
        text=json.dumps({"error": body}, default=str),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "content_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _plain_text(value: str) -> bool:
    """No NUL or other control character and no lone surrogate (aiohttp decodes a path's
    %-escapes; PostgreSQL refuses NUL in a query parameter, and nothing encodes a lone
    surrogate)."""
    return value.isprintable() or not any(
        c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in value
    )


def check_request(request: web.Request) -> None:
    """Reject, before any handler runs, what no handler can use: an Authorization header
    that is not printable ASCII (credentials are; other bytes arrive decoded with
    surrogate escapes and made the key hash a 500), and path parameters with control
    characters or lone surrogates (no resource is named so: 404)."""
    auth = request.headers.get("Authorization")
    if auth is not None and not _printable_ascii(auth):
        raise ApiError(
            401,
            "unauthorized",
            "the Authorization header must be 'Bearer <api key or JWT>' in printable ASCII",
            headers={"WWW-Authenticate": 'Bearer realm="mtb"'},
        )
    for name, value in request.match_info.items():
        if not _plain_text(value):
            raise ApiError(
                404, "not_found", f"no such resource: {name} {value[:100]!r} is not plain text"
            )


def _payload_reason(exc: web.RequestPayloadError) -> str:
    """What was wrong with an unreadable body, in a sentence: aiohttp's parser error is
    the cause (its str() is "400, message:\n  Can not decode content-encoding: gzip")."""
    cause = exc.__cause__
    reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
    return " ".join(str(reason).split())[:300] or "the body is not well formed"


def _client_gone(request: web.Request, exc: BaseException) -> bool:
    """A ConnectionResetError because this request's client went away (aiohttp fails the
    body's read with one when the connection drops), not one from a call the handler
    made to another service, which is still a 500."""
    transport = request.transport
    return isinstance(exc, ConnectionResetError) and (transport is None or transport.is_closing())


def error_middleware(metrics=None):  # noqa: ANN001, ANN201
    @web.middleware
    async def middleware(request: web.Request, handler):  # noqa: ANN001, ANN202
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else "unmatched"
        started = time.perf_counter()
        try:
            check_request(request)
            resp = await handler(request)
        except ApiError as exc:
            resp = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        except DomainError as exc:
            resp = domain_response(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            resp = error_response(413, "content_too_large", exc.text or "request body too large")
        except web.RequestPayloadError as exc:
            # a body aiohttp could not decode (Content-Encoding that is not what it says,
            # broken chunked framing): the client's fault, not a bug
            resp = error_response(
                400,
                "malformed_body",
                f"the request body could not be read: {_payload_reason(exc)}",
            )
            # the rest of the body is unreadable: close the connection after the answer,
            # and end the body's stream, else aiohttp's drain of the unread body raises
            # this error again (logged as an unhandled exception, and the answer was lost)
            resp.force_close()
            request.content.feed_eof()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "http_error")
            message = exc.reason or code
            if exc.status == 404:
                message = f"no such endpoint: {request.method} {request.path}"
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            resp = error_response(exc.status, code, message, headers=headers)
        except Exception as exc:
            if is_database_unavailable(exc):  # an outage, not a bug: the client may retry
                log.warning(
                    "database unavailable", extra={"path": request.path, "error": repr(exc)}
                )
                if metrics is not None:
                    metrics.errors.labels("database_unavailable").inc()
                resp = error_response(
                    503,
                    "database_unavailable",
                    "the database is not reachable right now; retry shortly",
                    headers={"Retry-After": "5"},
                )
                return _observed(metrics, request, route_name, started, resp)
            if _client_gone(request, exc):  # nobody to answer; no bug either
                log.info(
                    "client disconnected before the request was read",
                    extra={"path": request.path, "error": repr(exc)},
                )
                if metrics is not None:
                    metrics.errors.labels("client_disconnected").inc()
                # never sent; 499 (nginx's "client closed request") labels it in metrics
                resp = error_response(499, "client_disconnected", "client closed the request")
                return _observed(metrics, request, route_name, started, resp)
            # a bug: say so without leaking internals
            log.exception("unhandled error", extra={"path": request.path})
            if metrics is not None:
                metrics.errors.labels("http_500").inc()
            resp = error_response(500, "internal_error", "internal error; it has been logged")
        return _observed(metrics, request, route_name, started, resp)

    return middleware


def _observed(metrics, request: web.Request, route_name: str, started: float, resp):  # noqa: ANN001, ANN202
    if metrics is not None:
        metrics.http_requests.labels(request.method, route_name, str(resp.status)).inc()
        metrics.http_seconds.labels(request.method, route_name).observe(
            time.perf_counter() - started
        )
    return resp
