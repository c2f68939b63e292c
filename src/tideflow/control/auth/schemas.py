"""Wire shapes of the auth endpoints (as in the Streamkap API)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tideflow.control.auth.deps import Role
from tideflow.control.resources.wire import Body


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class AccessTokenRequest(Body):
    client_id: str = Field(min_length=1, max_length=255)
    secret: str = Field(min_length=1, max_length=1024)


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    accessToken: str
    refreshToken: str
    expires: datetime
    expiresIn: int


class CredentialCreate(Body):
    role: Role = "editor"
    description: str = Field("", max_length=255)


class CredentialOut(BaseModel):
    id: str
    client_id: str
    role: str
    description: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class CredentialCreated(CredentialOut):
    secret: str = Field(description="Shown once; store it now.")


class ApiKeyCreate(Body):
    name: str = Field(min_length=1, max_length=255)
    role: Role = "editor"


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    role: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; use it as 'Authorization: Bearer <key>'.")
