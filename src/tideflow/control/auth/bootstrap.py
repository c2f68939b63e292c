"""The admin credential that exists after the first start."""

from __future__ import annotations

from sqlalchemy import select

from tideflow.control.auth.hashing import hash_secret, verify_secret
from tideflow.control.auth.service import service
from tideflow.control.context import AppContext
from tideflow.store.models.auth import Credential


def ensure_admin(ctx: AppContext) -> str | None:
    """Make sure an admin credential exists; return a message to print once, if any.

    With ``TIDEFLOW_ADMIN_CLIENT_ID``/``TIDEFLOW_ADMIN_SECRET`` set, that credential exists (its
    secret is reset to the configured one). Otherwise the very first start creates a random
    admin credential and returns it for printing; later starts print nothing.
    """
    settings = ctx.settings
    svc = service(ctx)
    if settings.admin_client_id and settings.admin_secret:
        with ctx.store.session() as s:
            cred = s.scalar(
                select(Credential).where(Credential.client_id == settings.admin_client_id)
            )
            if cred is not None:
                if not verify_secret(settings.admin_secret, cred.secret_hash):
                    cred.secret_hash = hash_secret(settings.admin_secret)
                cred.role, cred.revoked_at = "admin", None
                return None
        svc.create_credential(
            "admin",
            client_id=settings.admin_client_id,
            secret=settings.admin_secret,
            description="bootstrap admin (TIDEFLOW_ADMIN_CLIENT_ID)",
        )
        return None
    with ctx.store.session() as s:
        if s.scalar(select(Credential.id).where(Credential.role == "admin").limit(1)):
            return None
    created = svc.create_credential("admin", description="bootstrap admin (first start)")
    return (
        "Created the first admin credential (shown once, keep it safe):\n"
        f"  client_id: {created.identifier}\n"
        f"  secret:    {created.secret}\n"
        "Get a token:\n"
        "  curl -s -X POST http://HOST:PORT/auth/access-token -H 'content-type: application/json' "
        f'-d \'{{"client_id": "{created.identifier}", "secret": "{created.secret}"}}\''
    )
