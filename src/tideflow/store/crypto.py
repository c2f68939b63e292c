"""Encryption at rest for connector secrets.

The key comes from ``TIDEFLOW_SECRET_KEY`` (any string; it is stretched with SHA-256 into a
Fernet key) or from ``<data_dir>/secret.key``, generated on first start with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from tideflow.errors import TerminalError


class SecretBox:
    def __init__(self, key_material: str) -> None:
        self.key_material = key_material.encode()
        digest = hashlib.sha256(self.key_material).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> SecretBox:
        if secret_key:
            return cls(secret_key)
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(Fernet.generate_key().decode())
        return cls(path.read_text().strip())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise TerminalError(
                "cannot decrypt a stored secret: TIDEFLOW_SECRET_KEY or secret.key changed",
                code="secret_key_mismatch",
            ) from None


SECRET_MARK = "$secret"


def seal_config(
    box: SecretBox, config: dict[str, Any], secret_keys: frozenset[str]
) -> dict[str, Any]:
    """The config to store: same keys, same order; secret values encrypted as
    ``{"$secret": "<ciphertext>"}`` (the original JSON value is kept, type included)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in secret_keys and value is not None:
            out[key] = {SECRET_MARK: box.encrypt(json.dumps(value))}
        else:
            out[key] = value
    return out


def reveal_config(box: SecretBox, stored: dict[str, Any]) -> dict[str, Any]:
    """The client's original config from a stored one (secrets decrypted)."""
    return {
        key: json.loads(box.decrypt(value[SECRET_MARK])) if _is_sealed(value) else value
        for key, value in stored.items()
    }


def mask_config(stored: dict[str, Any], mask: str = "********") -> dict[str, Any]:
    """The config to show a caller who may not see secrets."""
    return {key: mask if _is_sealed(value) else value for key, value in stored.items()}


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SECRET_MARK in value
