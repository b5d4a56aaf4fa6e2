"""Everything this service writes to Kafka: chunks, retries, dead letters, result events.

One idempotent producer (``enable_idempotence``, ``acks=all``) per process, messages keyed
by job id. Two ways to send:

* fire and forget (``wait=False``: ``publish``, ``publish_result``): the REST call that
  published answers at once and the producer keeps retrying while the broker is away; a
  failure is counted and logged. A lost chunk message stays ``queued`` in the database and
  the reconciler publishes it again (the database is the source of truth);
* confirmed (``wait=True``: ``publish_wait``, retries, ``dead_letter``): the caller commits
  the offset it is moving on from only once the broker has the new message.

``start`` also creates missing topics, waiting up to a minute for a broker that is still
starting, but not for one that refuses our credentials (``KafkaAuthError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from control_plane.domain import PRIORITY_RANK
from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka.topics import (
    KafkaAuthError,
    Topics,
    dead_letter_value,
    encode_chunk,
    ensure_topics,
    result_event,
)

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self, settings: Any, topics: Topics, *, client_id: str, client_kwargs: dict[str, Any]
    ):
        self.settings = settings
        self.topics = topics
        self.bootstrap = settings.kafka_bootstrap
        self.client_id = client_id
        self.client_kwargs = client_kwargs
        self.producer: Any = None
        self.stats = {"published": 0, "publish_errors": 0, "retried": 0, "dead_lettered": 0}

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        await self._ensure_topics()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            **self.client_kwargs,
        )
        await self.producer.start()

    async def _ensure_topics(self, wait_s: float = 60.0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                created = await ensure_topics(
                    self.bootstrap, self.topics.all(), self.settings.kafka_partitions,
                    **self.client_kwargs,
                )  # fmt: skip
                if created:
                    log.info("created Kafka topics", extra={"topics": ",".join(created)})
                return
            except KafkaAuthError:  # wrong credentials: waiting cannot help
                raise
            except Exception as exc:  # noqa: BLE001 - broker not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Kafka at {self.bootstrap} unreachable for {wait_s:.0f} s: {exc}"
                    ) from exc
                log.warning("waiting for Kafka", extra={"bootstrap": self.bootstrap})
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 15)

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: list, *, wait: bool
    ) -> None:
        """Hand one message to the producer; ``wait``: until the broker acknowledged it
        (raises on failure), else failures are only counted and logged."""
        if self.producer is None:
            raise RuntimeError("KafkaChunkQueue.start() was not called")
        timeout = self.settings.kafka_publish_timeout_s
        fut = await asyncio.wait_for(
            self.producer.send(topic, value, key=key, headers=headers), timeout
        )
        if wait:
            await asyncio.wait_for(fut, timeout)
            self.stats["published"] += 1
            return

        def done(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                self.stats["publish_errors"] += 1
                log.warning(
                    "Kafka publish failed; the reconciler will publish it again",
                    extra={"topic": topic, "key": key.decode(errors="replace"),
                           "error": repr(None if f.cancelled() else f.exception())},
                )  # fmt: skip
            else:
                self.stats["published"] += 1

        fut.add_done_callback(done)

    async def publish(self, message: ChunkMessage) -> None:
        """Hand a chunk to the producer (delivery is confirmed asynchronously). Never
        raises for broker trouble: the chunk is in the DB and the reconciler re-publishes."""
        if message.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {message.priority!r}")
        key, value, headers = encode_chunk(message)
        try:
            await self.send(self.topics.chunks(message.priority), key, value, headers, wait=False)
        except Exception as exc:  # noqa: BLE001
            self.stats["publish_errors"] += 1
            log.warning(
                "Kafka publish failed; the reconciler will publish it again",
                extra={"job_id": message.job_id, "chunk": message.chunk_index,
                       "error": repr(exc)},
            )  # fmt: skip

    async def publish_wait(self, message: ChunkMessage) -> None:
        """Publish and wait for the broker's acknowledgement (raises on failure)."""
        key, value, headers = encode_chunk(message)
        await self.send(self.topics.chunks(message.priority), key, value, headers, wait=True)

    async def retry(self, message: ChunkMessage, not_before: float) -> None:
        """A failed chunk to the retry topic, due at ``not_before`` (confirmed)."""
        key, value, headers = encode_chunk(message, not_before=not_before)
        await self.send(self.topics.retry, key, value, headers, wait=True)
        self.stats["retried"] += 1

    async def dead_letter(
        self,
        reason: str,
        message: str,
        *,
        key: bytes | None = None,
        source_topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        value: bytes | None = None,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        """A message that will never be processed, with why, on the dead-letter topic
        (confirmed; API keys in ``value`` are masked by ``dead_letter_value``)."""
        body = dead_letter_value(
            reason,
            message,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            headers=headers,
            details=details,
        )
        hdrs = [("mtb-dlq-reason", reason.encode())]
        hdrs += [(k, v.encode()) for k, v in (headers or {}).items() if k.startswith("trace")]
        await self.send(self.topics.dead_letter, key or b"", body, hdrs, wait=True)
        self.stats["dead_lettered"] += 1
        log.warning(
            "message dead-lettered",
            extra={"reason": reason, "detail": message[:500], "source_topic": source_topic,
                   "key": (key or b"").decode(errors="replace")},
        )  # fmt: skip

    async def publish_result(self, job_id: str, event: dict[str, Any]) -> None:
        """A completion event on the results topic (best effort: logged on failure)."""
        try:
            await self.send(
                self.topics.results, job_id.encode(), result_event(event), [], wait=False
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("results event not published", extra={"job_id": job_id, "error": repr(exc)})
