"""GroupConsumer shutdown: aiokafka's leaked CancelledError must not fail a clean stop."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.queue.kafka.consumer import stop_quietly


class LeakyClient:
    """Stands in for AIOKafkaConsumer.stop() with a fetch in flight: aiokafka's
    Fetcher.close cancels its pending fetch task and awaits it, re-raising the
    CancelledError into the caller."""

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        async def fetch() -> None:
            await asyncio.sleep(3600)

        task = asyncio.ensure_future(fetch())
        await asyncio.sleep(0)
        task.cancel()
        self.stopped = True
        await task  # raises CancelledError, as aiokafka 0.x does


class BrokenClient:
    async def stop(self) -> None:
        raise ConnectionError("broker gone")


def test_a_leaked_cancellation_does_not_escape():
    client = LeakyClient()
    asyncio.run(stop_quietly(client))  # would raise CancelledError without the guard
    assert client.stopped


def test_connection_errors_while_stopping_are_swallowed():
    asyncio.run(stop_quietly(BrokenClient()))


def test_a_cancellation_of_the_caller_itself_still_propagates():
    async def main() -> None:
        started = asyncio.Event()

        class SlowClient:
            async def stop(self) -> None:
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.ensure_future(stop_quietly(SlowClient()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
