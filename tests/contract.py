"""The design's API contract (../shared/DESIGN.md, "API contract"): the response fields
every test of the REST API checks, written once."""

DESIGN_SUBMIT = {"job_id", "status", "estimated_completion", "priority", "word_count",
                 "estimated_cost"}  # fmt: skip
DESIGN_STATUS = {"job_id", "status", "progress", "created_at", "started_at",
                 "estimated_completion", "word_count", "words_processed",
                 "current_speed"}  # fmt: skip
DESIGN_RESULT = {"job_id", "status", "source_content", "translated_content", "source_language",
                 "target_language", "word_count", "processing_time_ms", "confidence_score",
                 "completed_at"}  # fmt: skip
