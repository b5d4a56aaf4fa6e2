"""The chunk queue interface: what the API publishes to and workers consume from.

The in-process implementation (``memory``) and the Kafka one (issue 5) both provide it.
Delivery is at-least-once: a consumer ``ack``s a delivery only after the chunk's result is
in the database; ``nack`` hands it back (redelivery); results are upserted per
(job_id, chunk_index), so a redelivered chunk has no second effect.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from control_plane.domain import PRIORITIES, PRIORITY_RANK  # noqa: F401 - re-exported


@dataclass
class ChunkMessage:
    """One unit of queue work; small on purpose (the chunk text lives in the database)."""

    job_id: str
    chunk_index: int
    priority: str
    source_lang: str
    target_lang: str
    word_count: int = 0
    attempt: int = 0
    enqueued_at: float = field(default_factory=time.time)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. trace context

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkMessage:
        return cls(**data)


@dataclass
class Delivery:
    """A message handed to a consumer, plus whatever the backend needs to ack it."""

    message: ChunkMessage
    token: Any = None


class ChunkQueue(Protocol):
    # True: messages live only in this process (the memory queue): they die with it, so
    # the process re-publishes unfinished chunks at start and translates them itself
    in_process: bool

    async def start(self) -> None: ...

    async def publish(self, message: ChunkMessage) -> None:
        """Enqueue on the message's priority level."""
        ...

    async def consume(
        self,
        max_words: int,
        timeout: float | None = None,
        levels: tuple[str, ...] | None = None,
    ) -> list[Delivery]:
        """Wait (up to ``timeout`` s, None: forever) for work, then return the most urgent
        deliveries available, up to about ``max_words`` words (at least one). Strict
        priority with aging: lower levels are never starved forever. ``levels`` restricts
        the call to some priorities (workers reserved for urgent work)."""
        ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None: ...

    async def hold(self, holder: str, held: bool) -> None:
        """Back-pressure: while any ``holder`` (a worker waiting for a dependency that is
        down) holds the queue, ``consume`` hands out nothing new."""
        ...

    def depth(self) -> dict[str, int]:
        """Messages waiting per priority (for metrics, estimates and autoscaling)."""
        ...

    async def publish_result(self, job_id: str, event: dict[str, Any]) -> None:
        """Announce a finished job (``control_plane.jobs.events.job_event``) to other
        systems (Kafka: the results topic); the in-process queue has nobody to tell."""
        ...

    async def close(self) -> None: ...
