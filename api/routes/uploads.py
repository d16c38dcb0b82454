"""POST /v1/uploads: an upload row and a presigned PUT URL. The bytes never touch the API.

GET /v1/uploads/{id}/probe and /cover describe the uploaded file (ffprobe, run by the
API on a presigned GET URL) so a client can prefill tags and preview the cover.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep, StorageDep
from api.errors import error_responses
from api.metrics import UPLOADS_PRESIGNED
from shared import services, upload_probe, uploads
from shared.schemas import UploadCreate, UploadPublic
from shared.upload_probe import UploadProbePublic

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


@router.get(
    "/{upload_id}/probe",
    response_model=UploadProbePublic,
    responses=error_responses(401, 404, 409, 410, 422, 503),
    summary="Describe an uploaded file: duration, streams, tags, cover, chapters",
)
def probe_upload(
    upload_id: str,
    user: CurrentUser,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
) -> UploadProbePublic:
    """What the uploaded file holds, read by ffprobe once and stored with the upload.

    Call it after the PUT: before the bytes have arrived it is 409 `upload_incomplete`.
    A file that is not audio or video is 422 (`unsupported_media`, …). A job created for
    a probed upload has its trim checked against the duration at once.
    """
    upload = uploads.get_upload(session=session, upload_id=upload_id, owner_id=user.id)
    return upload_probe.probe_upload(
        session=session, storage=storage, settings=settings, upload=upload
    )


@router.get(
    "/{upload_id}/cover",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": "The source's attached picture.",
        },
        **error_responses(401, 404, 409, 410, 422, 503),
    },
    summary="The uploaded file's own cover picture",
)
def upload_cover(
    upload_id: str,
    user: CurrentUser,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    """The attached picture (JPEG or PNG) a job with `cover: "source"` writes into the
    output; 404 `no_cover` when the file has none."""
    upload = uploads.get_upload(session=session, upload_id=upload_id, owner_id=user.id)
    image, content_type = upload_probe.upload_cover(
        session=session, storage=storage, settings=settings, upload=upload
    )
    return Response(
        image, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"}
    )
