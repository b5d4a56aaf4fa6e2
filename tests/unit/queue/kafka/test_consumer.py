"""GroupConsumer shutdown: aiokafka's leaked CancelledError must not fail a clean stop."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from control_plane.queue.kafka.consumer import GroupConsumer, stop_quietly
from control_plane.settings import Settings


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


# -- the broker's fetch wait: long while nothing is paused, short while something is --


class FakeFetcher:
    _fetch_max_wait_ms = 100


class PausingClient:
    def __init__(self) -> None:
        self._fetcher = FakeFetcher()
        self.held: set[str] = set()

    def paused(self) -> set[str]:
        return set(self.held)


def consumer_with(client) -> GroupConsumer:  # noqa: ANN001
    settings = Settings.from_env({})
    c = GroupConsumer(settings, topics=["t"], group_id="g", client_id="c", client_kwargs={})
    c.client = client
    return c


def test_the_fetch_wait_is_long_while_nothing_is_paused_and_short_while_something_is():
    client = PausingClient()
    c = consumer_with(client)
    assert c.tune_fetch_wait() == 500 and client._fetcher._fetch_max_wait_ms == 500
    client.held.add("chunks.normal-0")  # a resume must not wait behind a long fetch
    assert c.tune_fetch_wait() == 100 and client._fetcher._fetch_max_wait_ms == 100
    client.held.clear()
    assert c.tune_fetch_wait() == 500


def test_a_raised_paused_wait_is_never_undercut_while_idle():
    client = PausingClient()
    c = consumer_with(client)
    c.settings = Settings.from_env({"MTB_KAFKA_FETCH_MAX_WAIT_MS": "1000"})
    assert c.tune_fetch_wait() == 1000


def test_without_the_fetcher_attribute_the_fixed_wait_stays():
    class Other:
        _fetcher = object()

        def paused(self) -> set:
            return set()

    assert consumer_with(Other()).tune_fetch_wait() is None
    assert consumer_with(None).tune_fetch_wait() is None


def test_aiokafka_builds_every_fetch_request_from_the_attribute_set_here():
    """The attribute is aiokafka's private one: an upgrade that drops it must fail here,
    not silently fall back to a fixed wait."""
    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
