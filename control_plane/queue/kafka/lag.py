"""Queue depth for a process that publishes but does not consume (the API).

The API's estimates and metrics need the chunk messages waiting per priority; with Kafka
that is the workers' consumer-group lag: end offsets minus the group's committed offsets,
over every partition of the chunk topics. ``LagMonitor`` refreshes it in the background
every ``MTB_KAFKA_LAG_INTERVAL_S``; while the broker is away the last value stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from control_plane.domain import PRIORITIES
from control_plane.queue.kafka.topics import Topics

log = logging.getLogger(__name__)


class LagMonitor:
    def __init__(self, settings: Any, topics: Topics, client_kwargs: dict[str, Any]):
        self.settings = settings
        self.topics = topics
        self.client_kwargs = client_kwargs
        self.interval_s = float(settings.kafka_lag_interval_s)
        self.lag: dict[str, int] = {p: 0 for p in PRIORITIES}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="kafka-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def group_lag(self, admin: Any, probe: Any) -> dict[str, int]:
        """Per priority: end offsets minus the group's committed offsets (all partitions).
        ``admin``: a started AIOKafkaAdminClient; ``probe``: a started group-less consumer."""
        from aiokafka.structs import TopicPartition

        tps = [
            TopicPartition(t["topic"], part["partition"])
            for t in await admin.describe_topics(self.topics.chunk_topics())
            for part in t.get("partitions", ())
        ]
        lag = {p: 0 for p in PRIORITIES}
        if not tps:
            return lag
        ends = await probe.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(
            self.settings.kafka_group, partitions=tps
        )
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag[self.topics.priority_of(tp.topic)] += max(0, ends.get(tp, 0) - done)
        return lag

    async def _loop(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        bootstrap = self.settings.kafka_bootstrap
        sec = self.client_kwargs
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **sec)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **sec)
        try:
            await admin.start()
            await probe.start()
            while True:
                try:
                    self.lag = await asyncio.wait_for(self.group_lag(admin, probe), 30)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - broker away: keep the last value
                    log.debug("group lag not refreshed", extra={"error": repr(exc)})
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(probe.stop())
            with contextlib.suppress(Exception):
                await admin.close()
