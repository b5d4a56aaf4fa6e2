"""In-process workers: consume chunks, batch their segments, call the inference client."""

from control_plane.workers.worker import Worker

__all__ = ["Worker"]
