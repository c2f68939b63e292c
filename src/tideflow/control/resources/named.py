"""Lookup and name-uniqueness rules shared by the named resources (sources, destinations,
pipelines): ids are 24-hex, an unknown id on an action is a 404, and names are unique per kind
(422 "already exists", also when a concurrent create wins the race at flush time)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.control.resources import configs
from tideflow.errors import Invalid, NotFound

RowT = TypeVar("RowT")


class Named(Generic[RowT]):
    def __init__(self, model: type[RowT], kind: str) -> None:
        self.model = model
        self.kind = kind

    def find(self, session: Session, uid: str) -> RowT | None:
        # A malformed id cannot exist (and a NUL byte would be refused by Postgres).
        return session.get(self.model, uid) if configs.is_object_id(uid) else None

    def require(self, session: Session, uid: str) -> RowT:
        row = self.find(session, uid)
        if row is None:
            raise NotFound(f"{self.kind} '{uid}' does not exist")
        return row

    def check_name_free(self, session: Session, name: str, own_id: str | None = None) -> None:
        model: Any = self.model
        stmt = select(model.id).where(model.name == name)
        if own_id is not None:
            stmt = stmt.where(model.id != own_id)
        if session.scalar(stmt) is not None:
            raise self.taken(name)

    def flush(self, session: Session, name: str) -> None:
        try:
            session.flush()
        except IntegrityError:
            # Lost a race with a concurrent create of the same name.
            raise self.taken(name) from None

    def taken(self, name: str) -> Invalid:
        return Invalid(f"a {self.kind} named '{name}' already exists", code="already_exists")
