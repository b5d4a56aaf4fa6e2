"""The product's vocabulary, defined once: priorities, job statuses, tiers, and the base
class of the errors every layer raises.

Everything else (database columns, the API schema, queue topics, Triton's priority levels,
auth's tier caps) takes its values from here, so adding a priority or a status is one edit.
"""

from __future__ import annotations

from typing import Any

# strict order, most urgent first
PRIORITIES = ("critical", "high", "normal")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
URGENT_PRIORITIES = ("critical", "high")  # what the urgent worker tasks take

# the design's API contract; chunks use queued|processing|done|failed|cancelled
JOB_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "processing")  # for jobs and for chunks
TERMINAL_STATUSES = ("completed", "failed", "cancelled")

TIERS = ("basic", "pro", "enterprise")
TIER_MAX_PRIORITY = {"basic": "normal", "pro": "high", "enterprise": "critical"}


def priority_allowed(tier: str, priority: str) -> bool:
    """May a user of ``tier`` ask for ``priority``?"""
    return PRIORITY_RANK[priority] >= PRIORITY_RANK[TIER_MAX_PRIORITY[tier]]


class DomainError(Exception):
    """An error the caller can act on: a stable ``code`` (what the API answers and what a
    dead letter's ``reason`` says), a readable ``message`` and optional ``details``.
    ``retry_after`` (seconds): the same request may succeed then; ``transient``: not the
    request's fault (e.g. the engine is still loading), so a queue retries it instead of
    dead-lettering it. Layers below the API never name HTTP statuses; the API maps codes
    to them once (control_plane/api/errors.py)."""

    code = "error"
    transient = False

    def __init__(
        self,
        message: str,
        details: Any = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out
