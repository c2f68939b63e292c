"""``/sources/snapshot``, ``/sources/cancel_snapshot``, ``/sources/{id}/snapshot`` and
``/topics/bulk/snapshot``: thin handlers over :mod:`.service`.

Included before the sources router so ``/sources/snapshot`` is not read as a source id.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.snapshots import service
from tideflow.control.resources.snapshots.schemas import (
    BulkIn,
    BulkOut,
    CancelIn,
    SnapshotIn,
    SnapshotOut,
)
from tideflow.control.resources.wire import ERROR_RESPONSES

router = APIRouter(tags=["snapshots"], responses=ERROR_RESPONSES)


@router.post(
    "/sources/snapshot",
    response_model=SnapshotOut,
    status_code=202,
    summary="Snapshot tables of a source (incremental: streaming goes on; blocking: paused)",
)
def snapshot(body: SnapshotIn, _: Writer, request: Request) -> SnapshotOut:
    return service.request(get_ctx(request), body)


@router.post("/sources/cancel_snapshot", response_model=SnapshotOut, summary="Cancel a snapshot")
def cancel_snapshot(body: CancelIn, _: Writer, request: Request) -> SnapshotOut:
    return service.cancel(get_ctx(request), body)


@router.get(
    "/sources/{source_id}/snapshot",
    response_model=SnapshotOut,
    summary="Snapshot status and progress per table",
)
def snapshot_status(source_id: str, _: Authenticated, request: Request) -> SnapshotOut:
    return service.status(get_ctx(request), source_id)


@router.post(
    "/topics/bulk/snapshot",
    response_model=BulkOut,
    summary="Snapshot topics of one or more sources (one result per source)",
)
def bulk_snapshot(body: BulkIn, _: Writer, request: Request) -> BulkOut:
    return service.bulk(get_ctx(request), body)
