"""Authentication rules: credentials, access/refresh tokens, API keys, request checks.

No FastAPI here except :func:`authenticate_request`, the one bridge the dependency uses.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from tideflow.control.auth.deps import ROLES, Principal, Role
from tideflow.control.auth.hashing import hash_secret, hash_token, verify_secret
from tideflow.control.auth.ratelimit import RateLimiter
from tideflow.control.auth.tokens import TokenSigner
from tideflow.errors import Invalid, NotFound, Unauthorized
from tideflow.ids import new_id
from tideflow.store.models.auth import ApiKey, Credential, RefreshToken

if TYPE_CHECKING:
    from fastapi import Request

    from tideflow.control.context import AppContext

API_KEY_PREFIX = "tfk_"
REFRESH_PREFIX = "tfr_"
# How long a credential/key check is trusted before the store is asked again; bounds how long a
# revoked credential's live access tokens keep working.
_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires: datetime
    expires_in: int


@dataclass(frozen=True)
class Created:
    id: str
    identifier: str  # client_id or key prefix
    secret: str  # shown once
    role: Role


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}; got '{role}'")
    return role


class AuthService:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.signer = TokenSigner(ctx.secrets.key_material)
        self.limiter = RateLimiter(
            ctx.settings.rate_limit_per_second, ctx.settings.rate_limit_burst
        )
        self._valid_until: dict[str, tuple[float, Role]] = {}

    # credentials -----------------------------------------------------------------------

    def create_credential(
        self,
        role: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        description: str = "",
    ) -> Created:
        checked = _check_role(role)
        client_id = client_id or "tf_" + secrets.token_hex(8)
        secret = secret or secrets.token_urlsafe(32)
        with self.ctx.store.session() as s:
            if s.scalar(select(Credential).where(Credential.client_id == client_id)):
                raise Invalid(f"credential '{client_id}' already exists")
            cred = Credential(
                id=new_id(),
                client_id=client_id,
                secret_hash=hash_secret(secret),
                role=checked,
                description=description,
            )
            s.add(cred)
        return Created(cred.id, client_id, secret, checked)

    def list_credentials(self) -> list[Credential]:
        with self.ctx.store.session() as s:
            return list(s.scalars(select(Credential).order_by(Credential.created_at)))

    def revoke_credential(self, client_id_or_id: str) -> Credential:
        if "\x00" in client_id_or_id:  # cannot be stored, so cannot exist
            raise NotFound(f"no credential '{client_id_or_id!r}'")
        with self.ctx.store.session() as s:
            cred = s.scalar(
                select(Credential).where(
                    (Credential.client_id == client_id_or_id) | (Credential.id == client_id_or_id)
                )
            )
            if cred is None:
                raise NotFound(f"no credential '{client_id_or_id}'")
            cred.revoked_at = cred.revoked_at or _now()
            s.execute(
                update(RefreshToken)
                .where(RefreshToken.credential_id == cred.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        self._valid_until.pop(cred.id, None)
        return cred

    # tokens ----------------------------------------------------------------------------

    def issue_tokens(self, client_id: str, secret: str) -> TokenPair:
        with self.ctx.store.session() as s:
            cred = s.scalar(select(Credential).where(Credential.client_id == client_id))
            if cred is None or cred.revoked_at is not None:
                raise Unauthorized("invalid client_id or secret")
            if not verify_secret(secret, cred.secret_hash):
                raise Unauthorized("invalid client_id or secret")
            return self._new_pair(s, cred)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented refresh token is revoked and a new pair is issued."""
        with self.ctx.store.session() as s:
            row = s.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
            )
            if row is None or row.revoked_at is not None or _aware(row.expires_at) <= _now():
                raise Unauthorized("refresh token is invalid, expired or revoked")
            cred = s.get(Credential, row.credential_id)
            if cred is None or cred.revoked_at is not None:
                raise Unauthorized("the credential of this refresh token was revoked")
            row.revoked_at = _now()
            return self._new_pair(s, cred)

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self.ctx.store.session() as s:
            s.execute(
                update(RefreshToken)
                .where(RefreshToken.token_hash == hash_token(refresh_token))
                .values(revoked_at=_now())
            )

    def _new_pair(self, s: object, cred: Credential) -> TokenPair:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        ttl = self.ctx.settings.access_token_ttl_seconds
        access, expires_at = self.signer.issue(cred.id, cred.role, ttl)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        s.add(
            RefreshToken(
                id=new_id(),
                credential_id=cred.id,
                token_hash=hash_token(refresh),
                expires_at=_now() + timedelta(seconds=self.ctx.settings.refresh_token_ttl_seconds),
            )
        )
        return TokenPair(access, refresh, datetime.fromtimestamp(expires_at, UTC), ttl)

    # API keys --------------------------------------------------------------------------

    def create_api_key(self, name: str, role: str) -> Created:
        checked = _check_role(role)
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self.ctx.store.session() as s:
            row = ApiKey(
                id=new_id(), name=name, prefix=key[:12], key_hash=hash_token(key), role=checked
            )
            s.add(row)
        return Created(row.id, row.prefix, key, checked)

    def list_api_keys(self) -> list[ApiKey]:
        with self.ctx.store.session() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    def revoke_api_key(self, key_id: str) -> ApiKey:
        if "\x00" in key_id:  # cannot be stored, so cannot exist
            raise NotFound(f"no API key '{key_id!r}'")
        with self.ctx.store.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"no API key '{key_id}'")
            row.revoked_at = row.revoked_at or _now()
        self._valid_until.pop(key_id, None)
        return row

    # requests --------------------------------------------------------------------------

    def authenticate(self, bearer: str) -> Principal:
        if bearer.startswith(API_KEY_PREFIX):
            principal = self._api_key_principal(bearer)
        else:
            claims = self.signer.verify(bearer)
            if claims is None:
                raise Unauthorized("access token is invalid or expired")
            role = self._live_role(claims.credential_id, is_key=False)
            principal = Principal(claims.credential_id, role, "credential")
        self.limiter.take(principal.id)
        return principal

    def _api_key_principal(self, key: str) -> Principal:
        with self.ctx.store.session() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(key)))
            if row is None or row.revoked_at is not None:
                raise Unauthorized("API key is invalid or revoked")
            return Principal(row.id, _check_role(row.role), "api_key")

    def _live_role(self, principal_id: str, *, is_key: bool) -> Role:
        cached = self._valid_until.get(principal_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        with self.ctx.store.session() as s:
            cred = s.get(Credential, principal_id)
            if cred is None or cred.revoked_at is not None:
                raise Unauthorized("credential was revoked")
            role = _check_role(cred.role)
        self._valid_until[principal_id] = (time.monotonic() + _CACHE_SECONDS, role)
        return role


def service(ctx: AppContext) -> AuthService:
    svc = ctx.extras.get("auth")
    if svc is None:
        svc = ctx.extras["auth"] = AuthService(ctx)
    assert isinstance(svc, AuthService)
    return svc


def authenticate_request(request: Request) -> Principal:
    from tideflow.control.context import get_ctx

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return service(get_ctx(request)).authenticate(token.strip())
