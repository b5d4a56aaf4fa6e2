"""Chunk queues: ``open_queue(settings)`` picks the implementation from MTB_QUEUE."""

from __future__ import annotations

from control_plane.domain import PRIORITIES
from control_plane.queue.base import ChunkMessage, ChunkQueue, Delivery
from control_plane.queue.memory import MemoryChunkQueue

__all__ = ["PRIORITIES", "ChunkMessage", "ChunkQueue", "Delivery", "MemoryChunkQueue", "open_queue"]


def open_queue(settings) -> ChunkQueue:  # noqa: ANN001
    if settings.queue == "memory":
        return MemoryChunkQueue(aging_s=settings.aging_s)
    if settings.queue == "kafka":
        from control_plane.queue.kafka import KafkaChunkQueue  # issue 5

        return KafkaChunkQueue(settings)
    raise ValueError(f"MTB_QUEUE must be memory or kafka, not {settings.queue!r}")
