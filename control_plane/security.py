"""Trust boundaries (issue 10, item 5): secrets, webhook targets and fair use.

- **JWT secret** (``resolve_jwt_secret``): there is no built-in default any more. The
  embedded default (SQLite, in-process queue) generates 256 random bits on first start and
  keeps them in ``<data_dir>/jwt-secret`` (mode 0600), so restarts and ``mtctl users token``
  on the same data dir agree. With PostgreSQL or Kafka configured (several processes must
  share one secret, and a per-host file would silently differ) ``MTB_JWT_SECRET`` is
  required. A secret shorter than 32 bytes is refused everywhere: HS256 with a short key
  is brute-forceable offline from any token.
- **Production mode** (``production_mode``): ``MTB_PRODUCTION=1``, or PostgreSQL or Kafka
  configured. There callback URLs must be https.
- **Webhook secrets** (``new_webhook_secret``, ``webhook_secret_for``): every user gets
  their own signing secret at creation; it is never the JWT secret (whoever holds the
  signing key of webhooks could otherwise mint login tokens). Users created before
  per-user secrets have none: their callbacks are signed with ``MTB_CALLBACK_SECRET`` if
  set, else sent unsigned with a warning in the log (receivers that check signatures then
  reject them, which is the safe failure).
- **Callback URLs** (``vet_callback_url``, ``GuardedResolver``): http(s) only (https only in
  production mode), and every address the host resolves to must be publicly routable: no
  loopback, private, link-local (cloud metadata 169.254.169.254 included), multicast,
  reserved, unspecified or shared (CGNAT) ranges, IPv4-mapped IPv6 judged by its IPv4.
  Checked at submit (422) and again at every delivery attempt by the resolver the
  delivering connection itself uses, so a DNS answer that changes between the check and
  the connection (rebinding) is checked too. ``MTB_CALLBACK_ALLOW_HOSTS`` lists host names
  or addresses exempt from the address check (tests receive callbacks on 127.0.0.1).
- **Fair use** (``WordQuota``): words per minute and per day per user, by tier, counted
  from the jobs table so every API process and worker agrees.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from control_plane.domain import TIERS, DomainError

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
JWT_SECRET_FILE = "jwt-secret"
WEBHOOK_SECRET_PREFIX = "whsec_"


class ConfigError(Exception):
    """A configuration that must not start (``mtctl`` prints it and exits 2)."""


# -- production mode and the JWT secret ---------------------------------------------------


def production_mode(settings: Any) -> bool:
    """True with ``MTB_PRODUCTION`` set, or PostgreSQL or Kafka configured: a deployment
    that is more than one process on a laptop."""
    if settings.production:
        return True
    url = (settings.database_url or "").lower()
    return url.startswith("postgres") or settings.queue == "kafka"


def _shared_stack(settings: Any) -> bool:
    url = (settings.database_url or "").lower()
    return url.startswith("postgres") or settings.queue == "kafka"


def resolve_jwt_secret(settings: Any) -> str:
    """The JWT secret to use; sets ``settings.jwt_secret`` to it. Raises ConfigError when
    it is missing where it is required, or too short."""
    secret = settings.jwt_secret or ""
    if secret:
        if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"MTB_JWT_SECRET is {len(secret.encode('utf-8'))} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return secret
    if _shared_stack(settings):
        raise ConfigError(
            "MTB_JWT_SECRET must be set (at least 32 bytes, the same in every process) when "
            "PostgreSQL (MTB_DATABASE_URL) or Kafka (MTB_QUEUE=kafka) is configured; generate "
            "one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    settings.jwt_secret = load_or_create_secret(Path(settings.data_dir) / JWT_SECRET_FILE)
    return settings.jwt_secret


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, created (0600, atomically: two processes starting together
    end up with the same one) when missing."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_urlsafe(48) + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return secret


# -- webhook secrets -------------------------------------------------------------------


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_secret_for(engine: Any, user_id: str) -> str | None:
    """Blocking. The user's own webhook signing secret (None for users from before)."""
    from sqlalchemy import select

    from control_plane.db.models import User

    with engine.connect() as conn:
        return conn.execute(select(User.webhook_secret).where(User.id == user_id)).scalar()


# -- callback URLs ---------------------------------------------------------------------


class UnsafeCallback(DomainError):
    """A callback URL the service refuses to call; the message says why."""

    code = "invalid_request"

    def __init__(self, message: str):
        field = {"field": "callback_url", "message": message, "type": "value_error"}
        super().__init__(message, details=[field])


def allow_hosts(settings: Any) -> frozenset[str]:
    raw = settings.callback_allow_hosts or ""
    return frozenset(h.strip().lower().strip("[]") for h in raw.split(",") if h.strip())


def address_problem(address: str) -> str | None:
    """Why ``address`` (an IP literal) must not be called, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata)"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, attr):
            return f"is a {what} address"
    if not ip.is_global:
        return "is not a publicly routable address"
    return None


def _split(
    url: str, production: bool, allowed: frozenset[str] = frozenset()
) -> tuple[str, str, int]:
    """(scheme, host, port). An allow-listed host (MTB_CALLBACK_ALLOW_HOSTS: tests, a
    trusted internal receiver) may use plain http even in production mode."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallback(f"callback_url is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeCallback("callback_url must be an http(s) URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeCallback("callback_url has no host")
    if production and scheme != "https" and host not in allowed:
        raise UnsafeCallback("callback_url must use https")
    return scheme, host, port or (443 if scheme == "https" else 80)


def check_addresses(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise UnsafeCallback(f"callback_url host {host} does not resolve")
    for addr in addresses:
        problem = address_problem(addr)
        if problem:
            shown = host if host == addr else f"{host} ({addr})"
            raise UnsafeCallback(
                f"callback_url host {shown} {problem}; callbacks go to public addresses only"
            )


async def resolve(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the loop's resolver (a thread: never blocks the loop)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallback(f"callback_url host {host} does not resolve: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def vet_callback_url(url: str, settings: Any) -> None:
    """Raise UnsafeCallback unless ``url`` may be called (see the module docstring)."""
    allowed = allow_hosts(settings)
    _, host, port = _split(url, production_mode(settings), allowed)
    if host in allowed:
        return
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        addresses = await resolve(host, port)
    check_addresses(host, addresses)


def guarded_resolver(allowed: frozenset[str]):  # noqa: ANN201 - an aiohttp AbstractResolver
    """An aiohttp resolver that refuses hosts resolving to any non-public address (unless
    allow-listed). The connector connects to exactly the addresses it returns, so the
    check and the connection use the same DNS answer (no rebinding window)."""
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import DefaultResolver

    class GuardedResolver(AbstractResolver):
        def __init__(self) -> None:
            self._inner = DefaultResolver()

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):  # noqa: ANN202
            infos = await self._inner.resolve(host, port, family)
            if host.lower() not in allowed:
                try:
                    check_addresses(host, [i["host"] for i in infos])
                except UnsafeCallback as exc:
                    raise OSError(str(exc)) from exc
            return infos

        async def close(self) -> None:
            await self._inner.close()

    return GuardedResolver()


def literal_problem(url: str, production: bool, allowed: frozenset[str]) -> str | None:
    """Delivery-time check of what the resolver never sees: the scheme, and hosts that are
    IP literals (aiohttp connects to those without resolving)."""
    try:
        _, host, _ = _split(url, production, allowed)
    except UnsafeCallback as exc:
        return str(exc)
    if host in allowed:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: the GuardedResolver checks it at connect time
    try:
        check_addresses(host, [host])
    except UnsafeCallback as exc:
        return str(exc)
    return None


# -- fair use: word quotas -------------------------------------------------------------


class QuotaExceeded(DomainError):
    """Over a word quota; ``retry_after_s`` until the window has room (None: never, the
    request alone is larger than the quota: content_too_large)."""

    def __init__(self, message: str, retry_after_s: float | None):
        code = "quota_exceeded" if retry_after_s is not None else "content_too_large"
        retry = max(1, math.ceil(retry_after_s)) if retry_after_s is not None else None
        super().__init__(message, code=code, retry_after=retry)
        self.retry_after_s = retry_after_s


WINDOWS = (("minute", 60.0), ("day", 86_400.0))


class WordQuota:
    """Words per user per minute and per day, ``MTB_QUOTA_WORDS_PER_<MINUTE|DAY>_<TIER>``
    (0: unlimited), counted from the jobs table (``ix_jobs_user_created``): the sum of
    ``word_count`` of the user's jobs created within the window, whatever their status. A
    job larger than the per-minute quota is admitted when the user's minute window is
    empty, so the minute quota limits the rate and ``MTB_MAX_WORDS`` the size; the day
    quota is strict. Concurrent submissions of one user can overshoot by what is in
    flight at once (the check and the insert are separate transactions)."""

    def __init__(self, settings: Any):
        self.limits: dict[str, dict[str, int]] = {}
        for tier in TIERS:  # MTB_QUOTA_WORDS_PER_{MINUTE,DAY}_{TIER}
            self.limits[tier] = {
                name: int(getattr(settings, f"quota_words_per_{name}_{tier}") or 0)
                for name, _ in WINDOWS
            }

    def check(self, engine: Any, user_id: str, tier: str, words: int) -> None:
        """Blocking. Raise QuotaExceeded when ``words`` more would exceed a quota."""
        from sqlalchemy import func, select

        from control_plane.db.models import Job, utcnow

        limits = self.limits.get(tier, {})
        if not any(limits.values()):
            return
        now = utcnow()
        with engine.connect() as conn:
            for name, seconds in WINDOWS:
                limit = limits.get(name, 0)
                if limit <= 0:
                    continue
                since = now - timedelta(seconds=seconds)
                used, oldest = conn.execute(
                    select(
                        func.coalesce(func.sum(Job.word_count), 0), func.min(Job.created_at)
                    ).where(Job.user_id == user_id, Job.created_at >= since)
                ).one()
                used = int(used or 0)
                if used + words <= limit or (name == "minute" and used == 0):
                    continue
                if words > limit and name == "day":
                    raise QuotaExceeded(
                        f"this request has {words} words, more than the {tier} tier's "
                        f"{limit} words per day",
                        None,
                    )
                retry = seconds
                if oldest is not None:
                    from control_plane.db import as_utc

                    retry = max(1.0, (as_utc(oldest) + timedelta(seconds=seconds) - now)
                                .total_seconds())  # fmt: skip
                raise QuotaExceeded(
                    f"word quota of the {tier} tier exceeded: {used} of {limit} words per "
                    f"{name} used, this request has {words}; retry after {math.ceil(retry)} s",
                    retry,
                )


# -- Kafka client security -------------------------------------------------------------

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def kafka_client_kwargs(settings: Any) -> dict[str, Any]:
    """Security keyword arguments for every aiokafka producer, consumer and admin client
    (``MTB_KAFKA_SECURITY_PROTOCOL``, ``MTB_KAFKA_SASL_*``, ``MTB_KAFKA_SSL_*``).
    PLAINTEXT (the default, for the local broker) adds nothing. Raises ConfigError for
    settings that cannot work, before any connection is tried."""
    protocol = (settings.kafka_security_protocol or "PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(
            f"MTB_KAFKA_SECURITY_PROTOCOL={protocol!r}; choose one of {', '.join(KAFKA_PROTOCOLS)}"
        )
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        mechanism = (settings.kafka_sasl_mechanism or "SCRAM-SHA-512").upper()
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigError(
                f"MTB_KAFKA_SASL_MECHANISM={mechanism!r}; choose one of "
                f"{', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise ConfigError(
                f"MTB_KAFKA_SECURITY_PROTOCOL={protocol} needs MTB_KAFKA_SASL_USERNAME and "
                "MTB_KAFKA_SASL_PASSWORD"
            )
        out.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        out["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )
    return out


def is_kafka_auth_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the broker refused our credentials."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        seen += 1
        name = type(cur).__name__
        if "Sasl" in name or "Authentication" in name or "Authorization" in name:
            return True
        cur = cur.__cause__ or cur.__context__
    return False
