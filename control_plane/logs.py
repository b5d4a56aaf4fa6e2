"""JSON logs: one object per line with timestamp, level, logger, message and any
``extra={...}`` fields (job_id, user_id, priority, ...).

A line logged inside a span carries its ``trace_id`` and ``span_id`` (the W3C ids Jaeger
shows), so a log line leads to its trace; a line about a job carries ``correlation_id``
(the job id, the design's name). The job-finished line adds the design's fields
(``processing_time_ms``, ``words_per_minute``, ``cache_hit``, ``cost_usd``,
``model_version``; ``control_plane.runtime``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _trace_ids() -> tuple[str, str] | None:
    from control_plane.tracing import ids

    return ids()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "mt-backend"):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = _trace_ids()
        if current:
            entry["trace_id"], entry["span_id"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = (
                    value if value is None or isinstance(value, str | int | float | bool)
                    else str(value)
                )  # fmt: skip
        if "job_id" in entry and "correlation_id" not in entry:
            entry["correlation_id"] = entry["job_id"]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
