"""Wire shapes of the auth endpoints (as in the Streamkap API)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tideflow.control.auth.deps import Role


class AccessTokenRequest(BaseModel):
    client_id: str = Field(min_length=1, max_length=255)
    secret: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    accessToken: str
    refreshToken: str
    expires: datetime
    expiresIn: int


class CredentialCreate(BaseModel):
    role: Role = "editor"
    description: str = Field("", max_length=255)


class CredentialOut(BaseModel):
    id: str
    client_id: str
    role: str
    description: str
    created_at: datetime
    revoked_at: datetime | None = None


class CredentialCreated(CredentialOut):
    secret: str = Field(description="Shown once; store it now.")


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    role: Role = "editor"


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; use it as 'Authorization: Bearer <key>'.")
