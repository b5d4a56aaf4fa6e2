"""Text handling below the job layer: protected spans, markup, glossaries.

Nothing here knows about HTTP, jobs or queues; every path that translates (REST, ingest,
CLI, Triton) goes through ``control_plane.text.protect``.
"""
