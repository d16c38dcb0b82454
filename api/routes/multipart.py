"""Multipart uploads: part URLs, the parts storage holds, completion, and abort.

`POST /v1/uploads` begins one for a large file (`multipart` in its answer); the client
PUTs each part straight to storage, then completes. The bytes never touch the API.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Response

from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep, StorageDep
from api.errors import error_responses
from shared import multipart
from shared.multipart_schemas import (
    CompleteRequest,
    PartUrlsPublic,
    PartUrlsRequest,
    StoredPartsPublic,
    UploadCompletedPublic,
)

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
COMPLETE_PATH = re.compile(r"/v1/uploads/[^/]+/complete")


@router.post(
    "/{upload_id}/parts",
    response_model=PartUrlsPublic,
    responses=error_responses(401, 404, 409, 410, 422, 503),
    summary="Presigned URLs for some parts of a multipart upload",
)
def presign_parts(
    upload_id: str,
    body: PartUrlsRequest,
    user: CurrentUser,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
) -> PartUrlsPublic:
    """PUT each part's bytes to its `url` with exactly its `headers` and keep the `ETag`
    storage answers. The URLs are short-lived: ask again for a part whose URL expired.
    At most 100 part numbers a call."""
    parts = multipart.presign_parts(
        session=session,
        storage=storage,
        settings=settings,
        user=user,
        upload_id=upload_id,
        part_numbers=body.part_numbers,
    )
    return PartUrlsPublic(parts=parts)


@router.get(
    "/{upload_id}/parts",
    response_model=StoredPartsPublic,
    responses=error_responses(401, 404, 409, 410, 422, 503),
    summary="The parts storage already holds",
)
def list_parts(
    upload_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> StoredPartsPublic:
    """What storage holds (its ListParts): a client resuming an upload skips these."""
    parts = multipart.stored_parts(session=session, storage=storage, user=user, upload_id=upload_id)
    return StoredPartsPublic(parts=parts)


@router.post(
    "/{upload_id}/complete",
    response_model=UploadCompletedPublic,
    responses=error_responses(401, 404, 409, 410, 413, 422, 503),
    summary="Join the parts into the file",
)
def complete_upload(
    upload_id: str,
    body: CompleteRequest,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> UploadCompletedPublic:
    """Name every part with the ETag storage gave it. Refused with 409
    `upload_part_missing`, `upload_part_etag_mismatch` or `upload_incomplete` (the parts
    do not add up to `size_bytes`); the upload stays open to fix it. Then create a job."""
    upload = multipart.complete(
        session=session, storage=storage, user=user, upload_id=upload_id, parts=body.parts
    )
    assert upload.completed_at is not None
    return UploadCompletedPublic(
        upload_id=upload.id,
        filename=upload.filename,
        content_type=upload.content_type,
        size_bytes=upload.size_bytes,
        completed_at=upload.completed_at,
    )


@router.delete(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 404, 409, 422, 503),
    summary="Abort an upload that has no job",
)
def abort_upload(
    upload_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> Response:
    """Storage drops the parts (or the object) and the upload is forgotten."""
    multipart.abort(session=session, storage=storage, user=user, upload_id=upload_id)
    return Response(status_code=204)
