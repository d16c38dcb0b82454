"""POST /v1/uploads: an upload row and a presigned PUT URL. The bytes never touch the API."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep, StorageDep
from api.errors import error_responses
from api.metrics import UPLOADS_PRESIGNED
from shared import services
from shared.models import UploadCreate, UploadPublic

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post(
    "",
    status_code=201,
    response_model=UploadPublic,
    responses=error_responses(401, 413, 415, 422, 429, 503),
    summary="Get a presigned URL to upload a video",
)
def create_upload(
    body: UploadCreate,
    user: CurrentUser,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
) -> UploadPublic:
    """Reserve an upload and return a presigned PUT URL.

    PUT the file's bytes to `url` with exactly the returned `headers`, then create a job
    with `POST /v1/jobs`. The object key is chosen by the server.

    Files at or above the server's multipart threshold, or sent with `"multipart": true`,
    go in parts instead: `url` is null and `multipart` gives the part size and count (see
    `POST /v1/uploads/{id}/parts` and `POST /v1/uploads/{id}/complete`).
    """
    presigned = services.create_upload(
        session=session, storage=storage, settings=settings, user=user, upload_in=body
    )
    UPLOADS_PRESIGNED.inc()
    return UploadPublic(
        upload_id=presigned.upload.id,
        url=presigned.url,
        headers=presigned.headers,
        expires_at=presigned.upload.expires_at,
        max_size_bytes=settings.max_upload_bytes,
        multipart=presigned.multipart,
    )
