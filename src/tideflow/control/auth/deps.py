"""Request dependencies: who is calling and what they may do.

Contract used by every router:

- ``Authenticated``: any valid access token or API key (401 otherwise; 429 when the caller's
  rate-limit bucket is empty).
- ``Writer``: role ``admin`` or ``editor`` (403 for ``viewer``).
- ``Admin``: role ``admin``.
- ``Principal.can_read_secrets``: whether ``secret_returned=true`` may reveal secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from tideflow.errors import Forbidden

Role = Literal["admin", "editor", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "editor", "viewer")


@dataclass(frozen=True)
class Principal:
    id: str
    role: Role
    kind: Literal["credential", "api_key"]

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "editor")

    @property
    def can_read_secrets(self) -> bool:
        return self.role in ("admin", "editor")


def authenticate(request: Request) -> Principal:
    from tideflow.control.auth.service import authenticate_request

    return authenticate_request(request)


def require_writer(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.can_write:
        raise Forbidden(f"role '{principal.role}' may only read; this needs editor or admin")
    return principal


def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.role != "admin":
        raise Forbidden(f"role '{principal.role}' may not do this; it needs admin")
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]
Writer = Annotated[Principal, Depends(require_writer)]
Admin = Annotated[Principal, Depends(require_admin)]
