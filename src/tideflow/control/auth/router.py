"""Auth endpoints: token exchange (Streamkap-compatible) and credential/API-key admin."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tideflow.control.auth import schemas
from tideflow.control.auth.deps import Admin
from tideflow.control.auth.service import service
from tideflow.control.context import get_ctx
from tideflow.control.resources.wire import ERROR_RESPONSES

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


def _tokens(pair: object) -> schemas.TokenResponse:
    from tideflow.control.auth.service import TokenPair

    assert isinstance(pair, TokenPair)
    return schemas.TokenResponse(
        accessToken=pair.access_token,
        refreshToken=pair.refresh_token,
        expires=pair.expires,
        expiresIn=pair.expires_in,
    )


@router.post("/access-token", response_model=schemas.TokenResponse)
def access_token(body: schemas.AccessTokenRequest, request: Request) -> schemas.TokenResponse:
    return _tokens(service(get_ctx(request)).issue_tokens(body.client_id, body.secret))


@router.post("/access-token/refresh", response_model=schemas.TokenResponse)
def refresh_token(body: schemas.RefreshRequest, request: Request) -> schemas.TokenResponse:
    return _tokens(service(get_ctx(request)).refresh(body.refresh_token))


@router.post("/access-token/revoke")
def revoke_refresh_token(body: schemas.RefreshRequest, request: Request) -> dict[str, bool]:
    service(get_ctx(request)).revoke_refresh_token(body.refresh_token)
    return {"revoked": True}


@router.get("/credentials", response_model=list[schemas.CredentialOut])
def list_credentials(_: Admin, request: Request) -> list[schemas.CredentialOut]:
    return [
        schemas.CredentialOut.model_validate(c, from_attributes=True)
        for c in service(get_ctx(request)).list_credentials()
    ]


@router.post("/credentials", response_model=schemas.CredentialCreated)
def create_credential(
    body: schemas.CredentialCreate, _: Admin, request: Request
) -> schemas.CredentialCreated:
    svc = service(get_ctx(request))
    created = svc.create_credential(body.role, description=body.description)
    cred = next(c for c in svc.list_credentials() if c.id == created.id)
    out = schemas.CredentialOut.model_validate(cred, from_attributes=True)
    return schemas.CredentialCreated(**out.model_dump(), secret=created.secret)


@router.delete("/credentials/{client_id}", response_model=schemas.CredentialOut)
def revoke_credential(client_id: str, _: Admin, request: Request) -> schemas.CredentialOut:
    cred = service(get_ctx(request)).revoke_credential(client_id)
    return schemas.CredentialOut.model_validate(cred, from_attributes=True)


@router.get("/api-keys", response_model=list[schemas.ApiKeyOut])
def list_api_keys(_: Admin, request: Request) -> list[schemas.ApiKeyOut]:
    return [
        schemas.ApiKeyOut.model_validate(k, from_attributes=True)
        for k in service(get_ctx(request)).list_api_keys()
    ]


@router.post("/api-keys", response_model=schemas.ApiKeyCreated)
def create_api_key(body: schemas.ApiKeyCreate, _: Admin, request: Request) -> schemas.ApiKeyCreated:
    svc = service(get_ctx(request))
    created = svc.create_api_key(body.name, body.role)
    row = next(k for k in svc.list_api_keys() if k.id == created.id)
    out = schemas.ApiKeyOut.model_validate(row, from_attributes=True)
    return schemas.ApiKeyCreated(**out.model_dump(), key=created.secret)


@router.delete("/api-keys/{key_id}", response_model=schemas.ApiKeyOut)
def revoke_api_key(key_id: str, _: Admin, request: Request) -> schemas.ApiKeyOut:
    row = service(get_ctx(request)).revoke_api_key(key_id)
    return schemas.ApiKeyOut.model_validate(row, from_attributes=True)
