"""One settings object for the whole process, read from ``MTB_*`` environment variables.

Switching between the embedded default and production (PostgreSQL, Kafka, Triton) is
configuration only; every component receives this object instead of reading the
environment itself, which keeps tests able to build several differently configured apps
in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


def _default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mt-backend"


class SettingsError(ValueError):
    """An ``MTB_*`` variable that does not parse or is not one of its allowed values; the
    message names the variable, its value and what is allowed (``mtctl``: exit code 2)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Fields whose value selects a code path: anything else used to pass silently and fail
# later (MTB_PRECISION=bogus: ready, then every job failed) or fall back unseen. The sets
# are the consumers': control_plane/queue, control_plane/inference, engine/store.py and
# engine/precision.py, engine/bergamot_engine.py (DECODER_LOOPS), tracing.configure,
# logs.configure. Compared lower-case. (MTB_COST_INSTANCE_KIND is not here: its kinds
# come from bench/results, and capacity/cost.py names the known ones when it is wrong.)
CHOICES: dict[str, tuple[str, ...]] = {
    "queue": ("memory", "kafka"),
    "inference": ("local", "triton"),
    "precision": ("int8", "fp32", "fp16", "auto"),
    "decoder_loop": ("auto", "host", "device"),
    "tracing": ("off", "console", "otlp"),
    "log_format": ("json", "text"),
    "triton_model_control": ("none", "explicit"),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PORT_FIELDS = ("port", "metrics_port")  # 0: any free port (port) or off (metrics_port)


def _parse(kind: Any, raw: str) -> Any:
    if kind is bool:
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError("not a boolean (use 1/true/yes/on or 0/false/no/off)")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("not an integer") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("not a number") from None
    if kind is Path:
        return Path(raw).expanduser()
    return raw


def _check(name: str, value: Any) -> Any:
    """``value`` (parsed) if ``name`` allows it, else ValueError saying what is allowed."""
    if name in CHOICES:
        value = value.strip().lower()
        if value not in CHOICES[name]:
            raise ValueError(f"use one of {', '.join(CHOICES[name])}")
    elif name == "log_level":
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        value = value.strip().upper()
    elif name in PORT_FIELDS and not 0 <= value <= 65535:
        raise ValueError("a port is 0..65535")
    return value


@dataclass
class StorageSettings:
    """Where data and models live."""

    data_dir: Path = field(default_factory=lambda: _default_cache_root() / "data")
    model_dir: Path = field(default_factory=lambda: _default_cache_root() / "models")
    database_url: str = ""  # empty: sqlite file in data_dir


@dataclass
class PlumbingSettings:
    """Which queue and inference backend a process uses (embedded default or production)."""

    queue: str = "memory"  # memory | kafka
    inference: str = "local"  # local | triton


@dataclass
class EngineSettings:
    """The in-process ONNX Runtime engine."""

    precision: str = "int8"  # int8 | fp32 | fp16 | auto (engine/precision.py: measured)
    threads: int = 0  # 0: every core this process may use (affinity, CPU quota)
    engine_lanes: int = 0  # batches run side by side; 0: one 1-thread lane per core (max 8)
    max_batch_sentences: int = 32
    beam_size: int = 1
    tensorrt: bool = False  # fp16 on a GPU: TensorRT execution provider before CUDA
    # greedy loop: host (numpy between steps) | device (state stays on the GPU, argmax in
    # the graph: engine/device_loop.py) | auto (device when the graphs run on a GPU)
    decoder_loop: str = "auto"
    # device loop only: fixed-shape buffers captured as CUDA graphs on the CUDA EP
    cuda_graph: bool = False


@dataclass
class ServiceSettings:
    """The HTTP service, logs and traces."""

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    tracing: str = "off"  # off | console | otlp
    otlp_endpoint: str = "127.0.0.1:4317"
    # parent-based: a span follows its parent's decision; a root span (a REST request, an
    # ingest message without traceparent) is sampled at this ratio; critical jobs always
    tracing_sample_ratio: float = 1.0
    # mtctl worker: serve GET /metrics on this port (0: off); mtctl serve has it on its
    # own port. On Kafka the workers count finished jobs, latency and cost
    metrics_port: int = 0
    # mtctl worker: created once its consumers run, removed on shutdown (empty: none); a
    # readiness probe or a launcher (tests, bench) watches it
    ready_file: str = ""


@dataclass
class LimitsSettings:
    """Request size limits, per-key rate limits and per-user word quotas."""

    max_words: int = 200_000  # per request; more -> 413
    max_body_bytes: int = 8 * 1024 * 1024  # per request body; more -> 413
    rate_limit_basic: int = 60  # requests per minute per API key / token
    rate_limit_pro: int = 600
    rate_limit_enterprise: int = 6000
    # fair use (issue 10): words per user per minute / per day by tier (0: unlimited),
    # counted from the jobs table so every process agrees; over it: 429 (REST), the ingest
    # message waits. A basic user cannot fill the normal queue for everyone.
    quota_words_per_minute_basic: int = 20_000
    quota_words_per_day_basic: int = 200_000
    quota_words_per_minute_pro: int = 100_000
    quota_words_per_day_pro: int = 2_000_000
    quota_words_per_minute_enterprise: int = 500_000
    quota_words_per_day_enterprise: int = 20_000_000


@dataclass
class SecuritySettings:
    """Secrets, tokens and webhook delivery."""

    # no default: embedded mode generates one into data_dir/jwt-secret; PostgreSQL or
    # Kafka require MTB_JWT_SECRET (>= 32 bytes). See control_plane/security.py
    jwt_secret: str = ""
    production: bool = False  # https-only callbacks (also implied by PostgreSQL or Kafka)
    jwt_ttl_s: int = 3600
    auth_cache_s: float = 10.0  # a resolved key/JWT is remembered this long
    # signs callbacks of users without their own webhook secret (created before per-user
    # secrets); empty: those callbacks go unsigned. Never the JWT secret.
    callback_secret: str = ""
    callback_attempts: int = 5
    callback_backoff_s: float = 1.0
    callback_timeout_s: float = 10.0
    # hosts (names or addresses, comma-separated) exempt from the public-address check of
    # callback URLs: tests receiving callbacks on 127.0.0.1
    callback_allow_hosts: str = ""


@dataclass
class JobsSettings:
    """Jobs, the chunk queue and the workers (any queue, any inference backend)."""

    chunk_words: int = 1000  # target words per chunk (unit of queue work)
    workers: int = 2  # in-process worker tasks (memory queue)
    urgent_workers: int = 1  # extra in-process workers that take only critical/high chunks
    # A worker task takes ready chunks until it holds this many words (less when less is
    # queued, so a light load still gets small batches): the engine sorts a whole batch by
    # length, and the larger the batch the less padding (measured: README, "Benchmarks",
    # stack). Critical/high work does not wait behind it: urgent worker tasks take it,
    # and the engine's lanes run its batches first.
    batch_words: int = 8000
    aging_s: float = 30.0  # a waiting chunk climbs one priority level per aging_s
    inference_timeout_s: float = 300.0
    drain_timeout_s: float = 30.0  # on shutdown, workers finish the batch in hand this long
    max_chunk_attempts: int = 3
    requeue_after_s: float = 600.0  # reconciler: chunks queued longer than this are re-published
    # a dependency down (database, broker, Triton): the worker keeps its batch and retries
    # after outage_backoff_s, doubling up to outage_backoff_max_s; no attempt is spent
    outage_backoff_s: float = 0.5
    outage_backoff_max_s: float = 5.0


@dataclass
class KafkaSettings:
    """The Kafka production stack (MTB_QUEUE=kafka)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Kafka (issue 5): topics <prefix>chunks.{critical,high,normal,retry}, <prefix>dead-letter,
    # <prefix>ingest, <prefix>results; created on start with kafka_partitions partitions
    kafka_topic_prefix: str = "mtb."
    kafka_partitions: int = 6
    kafka_group: str = "mtb-workers"  # consumer group of `mtctl worker`
    # `mtctl worker --priorities`: the chunk topics it consumes, comma-separated from
    # critical,high,normal,retry (empty: all). Deployments per priority share the group
    worker_priorities: str = ""
    kafka_session_timeout_ms: int = 10_000  # a dead worker's partitions move after this
    kafka_max_poll_interval_ms: int = 300_000
    # how long the broker holds a fetch that finds nothing new. Each empty fetch costs the
    # broker ~3.5 ms of CPU on a 2-core VM (0.035 of a core per idle worker at 100 ms), but
    # a partition resumed after a priority pause joins only the next fetch: at 500 ms the
    # capacity replay's small normal jobs finished later than its model (L0_capacity,
    # median error 22%). So the short wait holds while any partition is paused, and the
    # long one (kafka_fetch_idle_wait_ms) while none is: then new records end the wait
    # anyway, and nothing can be resumed late (control_plane/queue/kafka/consumer.py)
    kafka_fetch_max_wait_ms: int = 100
    kafka_fetch_idle_wait_ms: int = 500
    kafka_publish_timeout_s: float = 10.0
    kafka_lag_interval_s: float = 5.0  # API: refresh of the group's lag (queue depth)
    retry_backoff_s: float = 1.0  # retry topic delay: retry_backoff_s * 2**attempt (max 60 s)
    reconcile_interval_s: float = 30.0  # how often `mtctl worker` looks for stale chunks
    ingest_concurrency: int = 8  # ingest messages admitted in parallel per worker
    ingest_quota_backlog: int = 256  # over-quota ingest messages held waiting; more: pause
    # Kafka security (every producer, consumer and admin client): PLAINTEXT | SSL |
    # SASL_PLAINTEXT | SASL_SSL; SASL mechanism PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""  # CA bundle for SSL / SASL_SSL (empty: the system's)
    kafka_ssl_certfile: str = ""  # client certificate (mutual TLS), optional
    kafka_ssl_keyfile: str = ""


@dataclass
class CacheSettings:
    """The segment cache."""

    cache_size: int = 100_000  # in-process LRU entries
    # a DB cache entry expires this long after its last use (0: never); expired rows are
    # deleted every cache_purge_interval_s by each API process (harmless when several do)
    cache_ttl_s: float = 30 * 86_400.0
    cache_purge_interval_s: float = 600.0
    cache_access_flush_s: float = 5.0  # hit counts reach the table in batches this often


@dataclass
class TritonSettings:
    """The Triton client (MTB_INFERENCE=triton)."""

    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "translator"
    # critical/high requests go to this model (its own process) while it is ready; empty: off
    triton_urgent_model: str = "translator_urgent"
    triton_timeout_s: float = 120.0  # per translate() call unless the caller gives one
    triton_request_segments: int = 16  # segments per gRPC request; larger calls are split
    triton_inflight_requests: int = 0  # per translate() call (0: all at once); see triton.py
    triton_retries: int = 3  # extra attempts on UNAVAILABLE, full-jitter exponential backoff
    triton_backoff_s: float = 0.2  # first backoff cap; doubles per attempt, capped at 5 s
    triton_breaker_failures: int = 5  # consecutive connection failures that open the circuit
    triton_breaker_reset_s: float = 10.0  # open circuit lets one probe through after this
    triton_connect_timeout_s: float = 30.0  # start() waits this long for a ready server
    triton_health_interval_s: float = 5.0  # background readiness polling
    triton_fallback: bool = False  # serve from the in-process engine while Triton is down
    # none: one all-pairs model (triton_model); explicit: one Triton model per pair
    # (translator-<src>-<tgt>), loaded on first demand, unloaded after model_idle_s
    # (control_plane/inference/lifecycle.py; tritonserver --model-control-mode=explicit)
    triton_model_control: str = "none"
    model_idle_s: float = 600.0  # explicit mode: idle time before unloading a pair (<= 0: never)
    triton_load_timeout_s: float = 300.0  # explicit mode: one load_model call may take this


@dataclass
class CostSettings:
    """Estimates and cost: the cost model (control_plane/capacity/cost.py) prices instance
    time, storage and transfer; ``mtctl cost`` and every job's cost read the same fields."""

    # words/s assumed before any job has been measured; 0: the measured speed of this
    # process's instance kind (bench/results, control_plane/capacity/rates.py)
    throughput_wps: float = 0.0
    # instance prices (USD per hour, on demand); spot: the GPU price less this fraction
    price_cpu_per_hour: float = 2.05
    price_gpu_per_hour: float = 1.20
    spot_discount: float = 0.60
    # the kind this process's jobs are billed as: cpu | gpu | gpu-spot | policy (the kind
    # of the Triton pool a job's priority goes to in the scaling policy: prod-gpu)
    cost_instance_kind: str = "cpu"
    # a job's engine seconds / this = its instance seconds: how many engine calls share one
    # instance at a time (1: each call's wall time in full, an upper bound when they overlap)
    cost_engine_overlap: float = 1.0
    # measured words/min come from bench/results (control_plane/capacity/rates.py)
    cost_results_dir: Path = field(
        default_factory=lambda: Path(__file__).resolve().parents[1] / "bench" / "results"
    )
    # pool rules and the kind each priority runs on (control_plane/capacity/policy.py);
    # the image copies both this and the results to /app (Containerfile)
    cost_policy_path: Path = field(
        default_factory=lambda: Path(__file__).resolve().parents[1] / "k8s" / "scaling-policy.yaml"
    )
    cost_cpu_cores: int = 0  # cores of the priced CPU instance (0: the measured machine's)
    # until bench/results/gpu/gpu.json exists: issue 15's goal for the engine on an H200
    cost_gpu_words_per_minute_estimate: float = 4_650_000.0
    # storage: bytes kept per word (job source + result, chunks, segment cache and its
    # indexes; measured: a 4,839-word job took 443 KB of SQLite pages, 92 B/word) for
    # retention days, priced like managed PostgreSQL block storage (USD per GB-month)
    cost_storage_price_gb_month: float = 0.115
    cost_stored_bytes_per_word: float = 92.0
    cost_retention_days: float = 30.0
    # transfer: bytes per word in and out, priced as internet egress: the request's text
    # (6.3 B/word on the gettext evaluation text) and the result, which carries source and
    # translation (13.2 B/word), plus JSON and HTTP around them
    cost_transfer_price_gb: float = 0.09
    cost_transfer_bytes_per_word: float = 20.0
    cost_cache_hit_rate: float = 0.0  # mtctl cost: share of words served from the cache
    # mtctl cost: the busiest hour over the day's mean (1..2, a cosine day: replicas per
    # hour), and the busy periods a day of a scale-to-zero pool (each ends with a cooldown)
    cost_peak_to_mean: float = 2.0
    cost_active_periods_per_day: float = 24.0
    # mtctl cost, prod-gpu row: the share of words at normal priority (the spot pool); the
    # rest goes to the premium pool. The simulator's mix: 65% of jobs normal, the larger ones
    cost_normal_share: float = 0.7
    # an API without in-process workers (Kafka) re-reads backlog and throughput this often
    estimate_refresh_s: float = 2.0


@dataclass
class Settings(
    CostSettings,
    TritonSettings,
    CacheSettings,
    KafkaSettings,
    JobsSettings,
    SecuritySettings,
    LimitsSettings,
    ServiceSettings,
    EngineSettings,
    PlumbingSettings,
    StorageSettings,
):
    """Every group composed into the one object a process reads from the environment;
    each field ``name`` is overridden by ``MTB_<NAME>``. A component may declare the group
    it reads (``settings: KafkaSettings``); it is handed this whole object."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"MTB_{f.name.upper()}")
            if raw is not None and raw != "":
                try:
                    values[f.name] = _check(f.name, _parse(hints[f.name], raw))
                except ValueError as exc:
                    raise SettingsError(f"MTB_{f.name.upper()}={raw!r}: {exc}") from None
        values.update(overrides)
        return cls(**values)

    @property
    def effective_callback_secret(self) -> str:
        """The fallback signing secret (never the JWT secret); empty: unsigned."""
        return self.callback_secret

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'mt-backend.db'}"
