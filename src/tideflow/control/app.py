"""FastAPI application factory: middleware, error mapping, routers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tideflow import __version__, logs
from tideflow.control.context import AppContext
from tideflow.errors import ApiError

log = logging.getLogger("tideflow.api")


def create_app(ctx: AppContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="Tideflow",
        version=__version__,
        description="Self-hosted CDC streaming platform. Streamkap-compatible platform API and "
        "Planasonix-style streams API.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    _install_middleware(app)
    _install_error_handlers(app)
    _include_routers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error")
            response = JSONResponse({"detail": "internal error", "code": "internal"}, 500)
        finally:
            logs.request_id.reset(token)
        response.headers["X-Request-Id"] = rid
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response


def _is_streams_path(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path.startswith("/v1/api/")


def error_response(request: Request, status: int, code: str, detail: Any) -> JSONResponse:
    """Platform API errors are ``{"detail"}``; streams API errors use its ``errors`` list."""
    headers = {}
    if status == 429 and isinstance(detail, str):
        headers = {"Retry-After": "1"}
    if _is_streams_path(request):
        title = detail if isinstance(detail, str) else "validation error"
        body: dict[str, Any] = {
            "errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]
        }
    else:
        body = {"detail": detail, "code": code}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


STORE_RETRY_AFTER_S = 5


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(request, exc.status, exc.code, exc.message)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return error_response(request, 422, "invalid", errors)

    @app.exception_handler(DBAPIError)
    async def store_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
        # Only a lost or locked metadata store is the client's to retry; anything else the
        # store rejects is a bug in a service (bad input must be refused before it gets there).
        if not (exc.connection_invalidated or isinstance(exc, OperationalError)):
            raise exc
        log.warning("metadata store unavailable: %s", exc.orig)
        response = error_response(
            request, 503, "store_unavailable", "the metadata store is unavailable; retry shortly"
        )
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return error_response(request, exc.status_code, code, exc.detail)


def _include_routers(app: FastAPI) -> None:
    from tideflow.control.auth.router import router as auth_router
    from tideflow.control.resources.catalogue.router import router as catalogue_router
    from tideflow.control.resources.connections.router import router as connections_router
    from tideflow.control.resources.destinations.router import router as destinations_router
    from tideflow.control.resources.metrics.router import router as metrics_router
    from tideflow.control.resources.pipelines.router import router as pipelines_router
    from tideflow.control.resources.snapshots.router import router as snapshots_router
    from tideflow.control.resources.sources.router import router as sources_router
    from tideflow.control.resources.streams.router import router as streams_router
    from tideflow.control.resources.tags.router import router as tags_router
    from tideflow.control.resources.topics.router import router as topics_router
    from tideflow.control.resources.transforms.router import router as transforms_router

    app.include_router(auth_router)
    # The catalogue's fixed paths (/sources/connectors) must win over /sources/{id}.
    app.include_router(catalogue_router)
    app.include_router(snapshots_router)  # /sources/snapshot must win over /sources/{id}
    app.include_router(metrics_router)  # /pipelines/metrics must win over /pipelines/{id}
    for router in (
        sources_router,
        destinations_router,
        pipelines_router,
        transforms_router,
        topics_router,
        tags_router,
    ):
        app.include_router(router)
    for prefix in ("", "/v1"):
        app.include_router(streams_router, prefix=prefix)
        app.include_router(connections_router, prefix=prefix)
