"""Temporary alias while ``queue/ingest.py`` (being edited elsewhere) still imports this
name; removed when ingest moves to ``jobs/``."""

from control_plane.queue.kafka.offsets import OffsetTracker  # noqa: F401
