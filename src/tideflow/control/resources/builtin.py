"""Built-in rows every workspace has: the system tags Streamkap clients refer to by id.

The Terraform provider defaults a pipeline's tags to the Development tag and its examples look
up the Production tag, so both must exist with these exact ids.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.store.models.resources import Tag

DEVELOPMENT_TAG_ID = "670e5ca40afe1d3983ce0c22"
PRODUCTION_TAG_ID = "670e5bab0d119c0d1f8cda9d"

BUILTIN_TAGS: tuple[dict[str, Any], ...] = (
    {
        "id": DEVELOPMENT_TAG_ID,
        "name": "Development",
        "description": "System environment tag for development resources.",
        "type": ["environment"],
        "system": True,
        "custom": False,
    },
    {
        "id": PRODUCTION_TAG_ID,
        "name": "Production",
        "description": "System environment tag for production resources.",
        "type": ["environment"],
        "system": True,
        "custom": False,
    },
)


def ensure_builtin_tags(session: Session) -> None:
    """Create the built-in tags that are missing; safe to call on every start, from several
    processes at once (the loser of an insert race finds the row there)."""
    for spec in BUILTIN_TAGS:
        if session.get(Tag, spec["id"]) is not None:
            continue
        try:
            with session.begin_nested():
                session.add(Tag(**spec))
        except IntegrityError:
            # Another process inserted it first (or a custom tag took the name).
            continue
