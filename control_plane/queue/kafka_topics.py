"""Temporary alias of ``control_plane.queue.kafka.topics`` while ``queue/ingest.py`` (being
edited elsewhere) still imports this name; removed when ingest moves to ``jobs/``."""

from control_plane.queue.kafka.topics import *  # noqa: F403
from control_plane.queue.kafka.topics import headers_to_dict, redact_secrets  # noqa: F401
