"""Signed, expiring access tokens.

An access token is ``tfa.<payload>.<signature>`` where the payload (base64url JSON) names the
credential, its role and the expiry, signed with HMAC-SHA256 under a key derived from the
installation's secret key. Verifying needs no database round trip; revocation is honoured by
checking the credential on each request (cached briefly by the service).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

PREFIX = "tfa"


@dataclass(frozen=True)
class AccessClaims:
    credential_id: str
    role: str
    expires_at: float


class TokenSigner:
    def __init__(self, key_material: bytes) -> None:
        self._key = hashlib.sha256(b"tideflow-access-token:" + key_material).digest()

    def issue(self, credential_id: str, role: str, ttl_seconds: int) -> tuple[str, float]:
        expires_at = time.time() + ttl_seconds
        payload = orjson.dumps({"sub": credential_id, "role": role, "exp": expires_at})
        body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        return f"{PREFIX}.{body}.{self._sign(body)}", expires_at

    def verify(self, token: str) -> AccessClaims | None:
        """The claims of a valid, unexpired token; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        _, body, sig = parts
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            sub, role, exp = str(claims["sub"]), str(claims["role"]), float(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if exp <= time.time():
            return None
        return AccessClaims(sub, role, exp)

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
