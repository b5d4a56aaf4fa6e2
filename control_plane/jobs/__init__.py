"""Jobs: chunking and the job service (submit, progress, assemble, cancel)."""
