"""``mtctl users``: create users (prints the webhook secret, then the API key last: scripts
take the last line), list them, mint JWTs."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from control_plane.domain import TIERS


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="manage API users and keys")
    us = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    c = us.add_parser("create", help="create a user; the API key is the last line of stdout")
    c.add_argument("--email", required=True, help="the user's e-mail address (unique)")
    c.add_argument("--tier", choices=TIERS, default="basic")
    c.add_argument(
        "--rate-limit-per-minute",
        type=_count(0),
        default=None,
        metavar="N",
        help="requests per minute for this user, 0: unlimited (default: the tier's "
        "MTB_RATE_LIMIT_<TIER>)",
    )
    c.set_defaults(func=create)
    ls = us.add_parser("list", help="list users (never their keys)")
    ls.set_defaults(func=list_users)
    t = us.add_parser("token", help="print a JWT for a user (signed with MTB_JWT_SECRET)")
    t.add_argument("--email", required=True, help="the e-mail address of an existing user")
    t.add_argument(
        "--ttl", type=_count(1), default=None, help="seconds, > 0 (default MTB_JWT_TTL_S)"
    )
    t.set_defaults(func=token)


def _database_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """A database that cannot be used is one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from control_plane.commands.migrate import database_error

        try:
            return fn(args)
        except Exception as exc:  # noqa: BLE001 - database ones become one line, others raise
            message = database_error(exc)
            if message is None:
                raise
            print(f"mtctl users {args.users_command}: {message}", file=sys.stderr)
            return 2

    return wrapper


def _db():  # noqa: ANN202
    from control_plane.db import Database
    from control_plane.settings import Settings

    settings = Settings.from_env()
    db = Database(settings.effective_database_url)
    db.migrate()
    return settings, db


@_database_errors
def create(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError

    from control_plane.auth import create_user

    _, db = _db()
    try:
        user, key = create_user(db.engine, args.email, args.tier, args.rate_limit_per_minute)
    except IntegrityError:
        print(f"error: a user with email {args.email} already exists", file=sys.stderr)
        return 1
    limit = user.rate_limit_per_minute
    print(
        f"user {user.id} email {user.email} tier {user.tier}"
        + (f" rate_limit_per_minute {limit}" if limit is not None else "")
    )
    print("webhook secret (verifies X-MTB-Signature of this user's callbacks; shown once):")
    print(user.webhook_secret)
    print("API key (shown once; store it now):")
    print(key)
    return 0


@_database_errors
def list_users(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from control_plane.db import User

    _, db = _db()
    with db.session() as session:
        for u in session.execute(select(User).order_by(User.created_at)).scalars():
            print(f"{u.id}\t{u.email}\t{u.tier}\t{u.api_key_prefix}...\t{u.created_at:%Y-%m-%d}")
    return 0


@_database_errors
def token(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from control_plane.auth import issue_jwt
    from control_plane.db import User
    from control_plane.security import ConfigError, resolve_jwt_secret

    settings, db = _db()
    try:  # the secret `mtctl serve` uses: MTB_JWT_SECRET, or the one in the data dir
        secret = resolve_jwt_secret(settings)
    except ConfigError as exc:
        print(f"mtctl users token: {exc}", file=sys.stderr)
        return 2
    with db.session() as session:
        user = session.execute(select(User).where(User.email == args.email)).scalar_one_or_none()
    if user is None:
        print(f"error: no user {args.email}", file=sys.stderr)
        return 1
    print(issue_jwt(user.id, secret, args.ttl if args.ttl is not None else settings.jwt_ttl_s))
    return 0
