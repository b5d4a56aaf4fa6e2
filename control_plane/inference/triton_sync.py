"""A blocking facade over the async Triton client, for ``mtctl translate --backend triton``.

``TritonTranslator(settings)`` runs a ``TritonInferenceClient`` on an event loop in a
daemon thread, so the CLI gets the same priorities, deadlines, retries, circuit breaker and
(optional) in-process fallback as the service.
"""

from __future__ import annotations

import asyncio
import threading

from control_plane.engine.base import Translation
from control_plane.inference.base import InferenceUnavailable
from control_plane.inference.triton import TritonInferenceClient


class TritonTranslator:
    def __init__(self, settings, priority: str = "normal") -> None:  # noqa: ANN001
        self.priority = priority
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="triton-client", daemon=True
        )
        self._thread.start()
        self.client = self._call(_build(settings))
        self._call(self.client.start())
        if not self.client.ready():
            self.close()
            raise InferenceUnavailable(
                f"Triton at {settings.triton_url} is not ready (model {settings.triton_model});"
                " start it with `make services` or pass --triton-url"
            )

    def _call(self, coro, timeout: float | None = None):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def pairs(self) -> list[tuple[str, str]]:
        return self.client.pairs()

    def model_version(self, source: str, target: str) -> str:
        return self.client.model_version(source, target)

    def translate(self, segments: list[str], source: str, target: str) -> list[Translation]:
        return self._call(self.client.translate(list(segments), source, target, self.priority))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self.client.close(), timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TritonTranslator:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()


async def _build(settings) -> TritonInferenceClient:  # noqa: ANN001
    # built on the loop's thread: the grpc aio channel binds to the running loop
    return TritonInferenceClient(settings)
