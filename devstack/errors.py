"""The one error the dev stack raises, so callers (CLI, fixtures) can show its message
instead of a traceback."""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why."""
