"""What every aiokafka client made here shares: rate-limited aiokafka logs.

aiokafka logs each failed reconnect, thousands of lines per second while a broker is away;
producers, consumers and admin clients all go through ``quiet_aiokafka_logs`` first.
"""

from __future__ import annotations

import logging
import time


class _RateLimitFilter(logging.Filter):
    """At most one record per (logger, message template) every ``every_s`` seconds."""

    def __init__(self, every_s: float = 10.0):
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, object], float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.every_s:
            self.suppressed += 1
            return False
        self._last[key] = now
        return True


_AIOKAFKA_FILTER = _RateLimitFilter()


def quiet_aiokafka_logs() -> None:
    """Rate-limit aiokafka's warnings and errors (idempotent)."""
    import aiokafka  # noqa: F401 - registers its loggers

    names = [n for n in logging.root.manager.loggerDict if n.startswith("aiokafka")]
    for name in ["aiokafka", *names]:
        logger = logging.getLogger(name)
        if _AIOKAFKA_FILTER not in logger.filters:
            logger.addFilter(_AIOKAFKA_FILTER)
