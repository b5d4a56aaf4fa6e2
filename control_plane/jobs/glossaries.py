"""Stored glossaries: each user's named source term -> target term lists.

Blocking functions over an sqlmodel ``Engine`` (call them through ``Database.run``); the
web part is control_plane/api/routes/glossaries.py. Every read and write is scoped to one
user: another user's glossary is ``GlossaryNotFound`` (the API's 404), never a
"forbidden" that would tell the caller it exists.

A job that names a glossary (``glossary_id``) copies its terms at submit
(``terms_for``); editing or deleting the glossary later changes no submitted job.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from control_plane.db.models import Glossary, utcnow
from control_plane.domain import DomainError
from control_plane.jobs.request import check_terms

MAX_NAME_CHARS = 200
MAX_GLOSSARIES_PER_USER = 100


class GlossaryNotFound(DomainError):
    code = "glossary_not_found"

    def __init__(self, glossary_id: str):
        shown = glossary_id[:64] + ("..." if len(glossary_id) > 64 else "")
        super().__init__(
            f"no glossary {shown!r} for this user (see GET /api/v1/glossaries)",
            details={"glossary_id": shown},
        )


class GlossaryNameTaken(DomainError):
    code = "glossary_name_taken"

    def __init__(self, name: str):
        super().__init__(
            f"you already have a glossary named {name!r}; names are unique per user "
            "(PUT /api/v1/glossaries/{id} replaces one)",
            details={"name": name},
        )


class TooManyGlossaries(DomainError):
    code = "too_many_glossaries"

    def __init__(self):
        super().__init__(f"at most {MAX_GLOSSARIES_PER_USER} glossaries per user; delete one first")


def invalid(field: str, message: str) -> DomainError:
    return DomainError(
        f"{field}: {message}",
        details=[{"field": field, "message": message, "type": "value_error"}],
        code="invalid_request",
    )


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise invalid("name", "must be a string")
    name = name.strip()
    if not name:
        raise invalid("name", "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise invalid("name", f"is {len(name)} characters; at most {MAX_NAME_CHARS}")
    if not name.isprintable():
        raise invalid("name", "must be printable text (no control characters)")
    return name


def checked_terms(terms: Any) -> dict[str, str]:
    """``terms`` as a glossary (control_plane.jobs.request.check_terms), else an
    ``invalid_request`` error naming the bad term."""
    if not isinstance(terms, dict):
        raise invalid("terms", "must be a JSON object of source term -> target term")
    if not terms:
        raise invalid("terms", "must hold at least one term")
    for source, target in terms.items():
        if not isinstance(target, str):
            raise invalid("terms", f"target of {source!r} must be a string")
    try:
        return check_terms(terms, "terms")
    except ValueError as exc:
        raise invalid("terms", str(exc)) from exc


def terms_json(terms: dict[str, str]) -> str:
    """The stored form: compact JSON, keys sorted (so the hash is the content's)."""
    return json.dumps(terms, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(terms: dict[str, str]) -> str:
    return hashlib.sha256(terms_json(terms).encode("utf-8")).hexdigest()


@dataclass
class GlossaryRecord:
    id: str
    name: str
    term_count: int
    content_hash: str
    created_at: datetime
    updated_at: datetime
    terms: dict[str, str] | None = None  # None: not loaded (listings)

    @classmethod
    def of(cls, row: Glossary, with_terms: bool) -> GlossaryRecord:
        return cls(
            id=row.id,
            name=row.name,
            term_count=row.term_count,
            content_hash=row.content_hash,
            created_at=row.created_at,
            updated_at=row.updated_at,
            terms=json.loads(row.terms) if with_terms else None,
        )


def _own(session: Session, user_id: str, glossary_id: str) -> Glossary:
    row = session.get(Glossary, glossary_id)
    if row is None or row.user_id != user_id:
        raise GlossaryNotFound(glossary_id)
    return row


def _name_taken(session: Session, user_id: str, name: str, other_than: str | None) -> bool:
    q = select(Glossary.id).where(Glossary.user_id == user_id, Glossary.name == name)
    if other_than is not None:
        q = q.where(Glossary.id != other_than)
    return session.execute(q).first() is not None


def create(engine, user_id: str, name: Any, terms: Any) -> GlossaryRecord:  # noqa: ANN001
    name, terms = check_name(name), checked_terms(terms)
    now = utcnow()
    row = Glossary(
        id=str(uuid.uuid4()),
        user_id=user_id,
        name=name,
        terms=terms_json(terms),
        content_hash=content_hash(terms),
        term_count=len(terms),
        created_at=now,
        updated_at=now,
    )
    with Session(engine, expire_on_commit=False) as session:
        count = session.execute(
            select(func.count()).select_from(Glossary).where(Glossary.user_id == user_id)
        ).scalar_one()
        if count >= MAX_GLOSSARIES_PER_USER:
            raise TooManyGlossaries()
        if _name_taken(session, user_id, name, None):
            raise GlossaryNameTaken(name)
        session.add(row)
        try:
            session.commit()
        except IntegrityError as exc:  # a concurrent create with the same name
            raise GlossaryNameTaken(name) from exc
        return GlossaryRecord.of(row, with_terms=True)


def get(engine, user_id: str, glossary_id: str) -> GlossaryRecord:  # noqa: ANN001
    with Session(engine) as session:
        return GlossaryRecord.of(_own(session, user_id, glossary_id), with_terms=True)


def terms_for(engine, user_id: str, glossary_id: str) -> dict[str, str]:  # noqa: ANN001
    """The terms of the user's glossary (what a job copies at submit)."""
    with Session(engine) as session:
        terms = session.execute(
            select(Glossary.terms).where(Glossary.id == glossary_id, Glossary.user_id == user_id)
        ).scalar_one_or_none()
    if terms is None:
        raise GlossaryNotFound(glossary_id)
    return json.loads(terms)


def list_for(engine, user_id: str, limit: int = 100, offset: int = 0):  # noqa: ANN001, ANN201
    """(records without terms, newest first; total)."""
    with Session(engine) as session:
        total = session.execute(
            select(func.count()).select_from(Glossary).where(Glossary.user_id == user_id)
        ).scalar_one()
        rows = session.execute(
            select(
                Glossary.id,
                Glossary.name,
                Glossary.term_count,
                Glossary.content_hash,
                Glossary.created_at,
                Glossary.updated_at,
            )
            .where(Glossary.user_id == user_id)
            .order_by(Glossary.created_at.desc(), Glossary.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return [GlossaryRecord(*r) for r in rows], total


def replace(
    engine,  # noqa: ANN001
    user_id: str,
    glossary_id: str,
    name: Any = None,
    terms: Any = None,
) -> GlossaryRecord:
    """Replace the name and/or the terms (at least one given)."""
    if name is None and terms is None:
        raise invalid("body", "give name, terms or both")
    name = check_name(name) if name is not None else None
    terms = checked_terms(terms) if terms is not None else None
    with Session(engine, expire_on_commit=False) as session:
        row = _own(session, user_id, glossary_id)
        if name is not None and name != row.name:
            if _name_taken(session, user_id, name, glossary_id):
                raise GlossaryNameTaken(name)
            row.name = name
        if terms is not None:
            row.terms = terms_json(terms)
            row.content_hash = content_hash(terms)
            row.term_count = len(terms)
        row.updated_at = utcnow()
        session.add(row)
        try:
            session.commit()
        except IntegrityError as exc:
            raise GlossaryNameTaken(name or row.name) from exc
        return GlossaryRecord.of(row, with_terms=True)


def delete(engine, user_id: str, glossary_id: str) -> None:  # noqa: ANN001
    with Session(engine) as session:
        session.delete(_own(session, user_id, glossary_id))
        session.commit()


__all__ = [
    "GlossaryNameTaken",
    "GlossaryNotFound",
    "GlossaryRecord",
    "MAX_GLOSSARIES_PER_USER",
    "TooManyGlossaries",
    "content_hash",
    "create",
    "delete",
    "get",
    "list_for",
    "replace",
    "terms_for",
]
