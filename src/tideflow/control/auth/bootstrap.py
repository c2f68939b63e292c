"""First-start admin credential (placeholder until the auth module lands)."""

from __future__ import annotations

from tideflow.control.context import AppContext


def ensure_admin(ctx: AppContext) -> str | None:
    """Make sure an admin credential exists; return a message to print once, if any."""
    return None
