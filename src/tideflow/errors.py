"""One exception hierarchy for the whole product.

Every error says whether retrying can help: the runtime retries :class:`TransientError` with
backoff and stops a unit with a clear status on :class:`TerminalError`. The control plane maps
:class:`ApiError` subclasses to HTTP statuses with a stable machine-readable ``code``.
"""

from __future__ import annotations


class TideflowError(Exception):
    """Base of every error Tideflow raises on purpose."""

    code: str = "error"
    transient: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class TransientError(TideflowError):
    """A failure that may go away on retry (network blip, server restarting, lock timeout)."""

    code = "transient"
    transient = True


class TerminalError(TideflowError):
    """A failure retrying cannot fix (bad credentials, missing privilege, lost slot)."""

    code = "terminal"


class ApiError(TideflowError):
    """A request the control plane refuses; ``status`` is the HTTP status to answer with."""

    status: int = 400


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Invalid(ApiError):
    status = 422
    code = "invalid"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
