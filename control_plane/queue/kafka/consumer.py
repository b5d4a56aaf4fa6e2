"""The Kafka consumer base: group membership, polling, commits of finished offsets.

Both consumers here (chunk workers, job ingestion) need the same things from a consumer
group, and got them subtly different when each had its own copy:

* one aiokafka consumer, manual commits, ``auto_offset_reset=earliest``, heartbeats and
  poll limits from ``MTB_KAFKA_SESSION_TIMEOUT_MS`` / ``MTB_KAFKA_MAX_POLL_INTERVAL_MS``;
* an ``OffsetTracker`` per assigned partition: an offset is committed only once the work
  of every record before it is finished (``commit``, every 0.2 s from the poll loop, on
  revocation and on stop). A commit the broker does not take is kept and sent again;
* rebalances: finished offsets of revoked partitions are committed, their trackers
  dropped (acks of records from them are then ignored), new partitions get fresh ones;
* a poll loop that never dies (a long job never holds polling past
  ``max.poll.interval.ms``; broker trouble is logged and retried).

A subclass says what to subscribe to and what to do with records (``on_records``), what to
do before each poll (``before_poll``: pausing partitions for back-pressure) and on
rebalances (``on_assigned``/``on_revoked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from control_plane.queue.kafka.offsets import OffsetTracker

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.2


class GroupConsumer:
    """One consumer in group ``group_id`` subscribed to ``topics`` (see the module
    docstring). ``label`` names it in log messages."""

    label = "Kafka"
    max_records = 500

    def __init__(
        self,
        settings: Any,
        *,
        topics: list[str],
        group_id: str,
        client_id: str,
        client_kwargs: dict[str, Any],
    ):
        self.settings = settings
        self.topics = topics
        self.group_id = group_id
        self.client_id = client_id
        self.client_kwargs = client_kwargs
        self.client: Any = None  # the aiokafka consumer, once started
        self.trackers: dict[Any, OffsetTracker] = {}  # TopicPartition -> its offsets
        self.closed = False

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        self.client = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=self.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(500, s.kafka_session_timeout_ms // 4),
            max_poll_interval_ms=s.kafka_max_poll_interval_ms,
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(40_000, s.kafka_session_timeout_ms + 5_000),
            **self.client_kwargs,
        )
        self.client.subscribe(self.topics, listener=_listener(self))
        await self.client.start()

    # -- what a subclass does --------------------------------------------------------

    async def before_poll(self) -> None:
        """Called before every fetch (pause or resume partitions here)."""

    async def on_records(self, data: dict[Any, list[Any]]) -> None:
        """The records of one fetch, per TopicPartition."""

    async def on_assigned(self, assigned: set[Any]) -> None:
        """After fresh trackers were made for ``assigned``."""

    async def on_revoked(self, revoked: set[Any]) -> None:
        """After ``revoked``'s finished offsets were committed and its trackers dropped."""

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until ``stop``: fetch, hand records to ``on_records``, commit regularly."""
        from aiokafka.errors import KafkaError

        client = self.client
        assert client is not None, "start() first"
        last_commit = 0.0
        while not self.closed:
            try:
                await self.before_poll()
                self.tune_fetch_wait()
                data = await client.getmany(timeout_ms=100, max_records=self.max_records)
                await self.on_records(data)
                now = time.monotonic()
                if now - last_commit >= COMMIT_EVERY_S:
                    last_commit = now
                    await self.commit()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning(f"{self.label} poll failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
            except Exception:  # never let the poller die
                log.exception(f"{self.label} poll loop error")
                await asyncio.sleep(0.5)

    def tune_fetch_wait(self) -> int | None:
        """The broker's wait for the next fetch: ``kafka_fetch_idle_wait_ms`` while no
        partition is paused (an empty fetch costs the broker CPU, and new records end the
        wait at once), ``kafka_fetch_max_wait_ms`` while any is (a resumed partition joins
        only the next fetch, so the one in flight must end soon). aiokafka fixes the wait
        at construction; its fetcher reads ``_fetch_max_wait_ms`` for every request it
        builds, which is set here (None, and the fixed wait, where a release lacks it)."""
        fetcher = getattr(self.client, "_fetcher", None)
        if self.client is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            return None
        s = self.settings
        # never shorter than the paused wait: a deployment that raised that one for idle
        # time (before the two existed) keeps its long polls
        idle = max(s.kafka_fetch_idle_wait_ms, s.kafka_fetch_max_wait_ms)
        wait = s.kafka_fetch_max_wait_ms if self.client.paused() else idle
        fetcher._fetch_max_wait_ms = wait
        return wait

    async def commit(self, only: Iterable[Any] | None = None) -> None:
        """Commit the finished prefix of every tracked partition (or of ``only``), plus
        any earlier commit that failed."""
        from aiokafka.errors import CommitFailedError, KafkaError

        client = self.client
        if client is None:
            return
        wanted = None if only is None else set(only)
        offsets = {}
        for tp, tracker in list(self.trackers.items()):
            if wanted is not None and tp not in wanted:
                continue
            pending = tracker.uncommitted
            nxt = tracker.committable()
            if nxt is not None:
                offsets[tp] = nxt
            elif pending is not None:
                offsets[tp] = pending
        if not offsets:
            return
        try:
            await client.commit(offsets)
            for tp in offsets:
                tracker = self.trackers.get(tp)
                if tracker is not None:
                    tracker.uncommitted = None
        except KafkaError as exc:  # broker away or group rebalancing: try again later
            for tp, off in offsets.items():
                tracker = self.trackers.get(tp)
                if tracker is not None:  # a revoked partition's new owner redelivers
                    tracker.uncommitted = off
            if isinstance(exc, CommitFailedError):
                log.info(
                    f"{self.label} offset commit rejected after a rebalance",
                    extra={"error": repr(exc)},
                )
            else:
                log.warning(
                    f"{self.label} offset commit failed; will retry", extra={"error": repr(exc)}
                )

    async def stop(self) -> None:
        """Commit what is finished and leave the group."""
        self.closed = True
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.commit()
            await stop_quietly(self.client)


async def stop_quietly(client: Any) -> None:
    """Stop an aiokafka client whatever state the broker is in.

    aiokafka's ``Fetcher.close`` cancels its pending fetch tasks and then awaits them, so
    with a fetch in flight (a broker that is already gone, say) their CancelledError leaks
    out of ``AIOKafkaConsumer.stop()``: a worker shutting down after its broker exited 1
    instead of 0. That error is swallowed here; a cancellation of the caller's own task is
    not (``Task.cancelling()``), nor is anything else left unlogged."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("Kafka client stop: a cancelled fetch leaked out of aiokafka; ignored")
    except Exception as exc:  # noqa: BLE001 - stopping: the broker may be gone
        log.debug("Kafka client stop failed", extra={"error": repr(exc)})


def _listener(owner: GroupConsumer) -> Any:
    """An aiokafka ConsumerRebalanceListener for ``owner`` (aiokafka imported lazily)."""
    from aiokafka.abc import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):  # noqa: ANN001, ANN202
            revoked = set(revoked)
            if not revoked:  # the first join revokes nothing
                return
            with contextlib.suppress(Exception):
                await owner.commit(only=revoked)
            for tp in revoked:
                owner.trackers.pop(tp, None)
            await owner.on_revoked(revoked)

        async def on_partitions_assigned(self, assigned):  # noqa: ANN001, ANN202
            assigned = set(assigned)
            for tp in assigned:
                owner.trackers[tp] = OffsetTracker()
            await owner.on_assigned(assigned)

    return Listener()


def tp_names(tps: Iterable[Any]) -> str:
    """``topic[partition]`` of each TopicPartition, sorted, comma-separated (for logs)."""
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))
