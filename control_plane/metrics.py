"""Prometheus metrics, one registry per app (several apps can live in one process)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 720, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "mtb_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "mtb_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.jobs_submitted = Counter(
            "mtb_jobs_submitted_total", "Jobs accepted", ["priority"], registry=r
        )
        self.jobs_finished = Counter(
            "mtb_jobs_finished_total", "Jobs ended", ["priority", "status"], registry=r
        )
        self.job_latency = Histogram(
            "mtb_job_latency_seconds",
            "Submit to completion, per priority (the SLA)",
            ["priority"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.words_translated = Counter(
            "mtb_words_translated_total", "Source words translated", ["pair"], registry=r
        )
        self.words_per_minute = Gauge(
            "mtb_words_per_minute", "Words translated over the last minute", registry=r
        )
        self.segments_translated = Counter(
            "mtb_segments_translated_total", "Segments sent to the engine", ["pair"], registry=r
        )
        self.segments_protected = Counter(
            "mtb_segments_protected_total",
            "Segments by how their protected spans came through (control_plane.text."
            "protect): passthrough, plain, terms, masked, split (the piece-by-piece fallback)",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "mtb_inference_batch_segments",
            "Segments per inference call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "mtb_inference_seconds", "Inference call latency", ["priority"], registry=r
        )
        self.queue_depth = Gauge(
            "mtb_queue_depth", "Chunks waiting per priority", ["priority"], registry=r
        )
        self.cache_hits = Counter("mtb_cache_hits_total", "Segment cache hits", registry=r)
        self.cache_misses = Counter("mtb_cache_misses_total", "Segment cache misses", registry=r)
        self.cache_hit_ratio = Gauge(
            "mtb_cache_hit_ratio", "Segment cache hits / lookups since start", registry=r
        )
        self.errors = Counter("mtb_errors_total", "Errors by kind", ["kind"], registry=r)
        self.dead_letters = Counter(
            "mtb_dead_letters_total",
            "Messages and chunks sent to the dead letter (a chunk that failed for good: "
            "chunk_failed; an ingest message refused: the API's error code)",
            ["reason"],
            registry=r,
        )
        self.cost = Counter("mtb_cost_usd_total", "Actual cost of completed jobs", registry=r)
        self.callbacks = Counter(
            "mtb_callbacks_total", "Webhook deliveries", ["outcome"], registry=r
        )
        self._recent: deque[tuple[float, int]] = deque()

    def record_words(self, pair: str, words: int) -> None:
        self.words_translated.labels(pair).inc(words)
        now = time.monotonic()
        self._recent.append((now, words))
        self._refresh_rate(now)

    def _refresh_rate(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > 60:
            self._recent.popleft()
        self.words_per_minute.set(sum(w for _, w in self._recent))

    def record_cache(self, hits: int, misses: int) -> None:
        if hits:
            self.cache_hits.inc(hits)
        if misses:
            self.cache_misses.inc(misses)
        h = self.cache_hits._value.get()
        m = self.cache_misses._value.get()
        self.cache_hit_ratio.set(h / (h + m) if h + m else 0.0)

    def render(self, depth: dict[str, int] | None = None) -> bytes:
        if depth is not None:
            for priority, n in depth.items():
                self.queue_depth.labels(priority).set(n)
        self._refresh_rate(time.monotonic())
        return generate_latest(self.registry)
