"""Identifier formats shared by both API faces."""

import secrets


def new_id() -> str:
    """A 24-character lowercase hex id (ObjectId-like), as the platform API uses."""
    return secrets.token_hex(12)


def new_stream_id() -> str:
    """A streams-API id: ``str_`` followed by 16 lowercase base32-ish characters."""
    return "str_" + secrets.token_hex(8)
