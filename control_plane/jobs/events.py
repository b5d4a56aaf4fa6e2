"""The finished-job event: one shape for the webhook callback and the Kafka results topic,
so a consumer of either reads the same fields (the design's names)."""

from __future__ import annotations

from typing import Any

from control_plane.db import Job


def job_event(job: Job) -> dict[str, Any]:
    return {
        "event": f"job.{job.status}",
        "job_id": job.id,
        "status": job.status,
        "priority": job.priority,
        "source_language": job.source_lang,
        "target_language": job.target_lang,
        "word_count": job.word_count,
        "format": job.format,
        "glossary_id": job.glossary_id,
        "error": job.error,
        "cost_usd": job.cost_usd,
        "processing_time_ms": job.processing_time_ms,
        "confidence_score": job.confidence_score,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "result_url": f"/api/v1/jobs/{job.id}/result",
    }
