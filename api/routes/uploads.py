"""POST /v1/uploads: an upload row and a presigned PUT URL. The bytes never touch the API."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Request, Response

from api.auth import CurrentUser, authenticate
from api.deps import engine_of
from api.errors import ApiError, error_responses
from api.metrics import UPLOADS_PRESIGNED
from api.served import json_body, served_by
from api.upload_writer import UploadWriter
from shared.config import Settings
from shared.jobs import NewUpload
from shared.models import UploadCreate, UploadPublic, new_id, utcnow
from shared.storage import Storage, sanitize_filename

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

_MEDIA_TYPE = re.compile(r"^(video|audio)/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def is_accepted_content_type(content_type: str) -> bool:
    return content_type == "application/octet-stream" or bool(_MEDIA_TYPE.match(content_type))


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


async def create_upload(
    body: UploadCreate,
    request: Request,
    user: CurrentUser,
) -> Response:
    """Reserve an upload and return a presigned PUT URL.

    PUT the file's bytes to `url` with exactly the returned `headers`, then create a job
    with `POST /v1/jobs`. The object key is chosen by the server.
    """
    # Runs on the event loop: signing is CPU only (static credentials, no network), and
    # the one database write goes through the upload writer's thread.
    settings: Settings = request.app.state.settings
    storage: Storage = request.app.state.storage
    if body.size_bytes > settings.max_upload_bytes:
        raise ApiError(
            413,
            "upload_too_large",
            f"The file is {human_bytes(body.size_bytes)}; the largest accepted is "
            f"{human_bytes(settings.max_upload_bytes)}.",
        )
    if not is_accepted_content_type(body.content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Files of type {body.content_type!r} are not accepted; send a video or audio file "
            "(video/*, audio/* or application/octet-stream).",
        )
    upload_id = new_id()
    # Keys are namespaced per user: uploads/{user}/{upload}/{name}.
    key = f"uploads/{user.id}/{upload_id}/{sanitize_filename(body.filename, default='video')}"
    url, headers = storage.presign_put(
        key,
        content_type=body.content_type,
        size_bytes=body.size_bytes,
        expires_s=settings.upload_url_expires_s,
    )
    expires_at = utcnow() + timedelta(seconds=settings.upload_url_expires_s)
    writer: UploadWriter = request.app.state.upload_writer
    await writer.record(  # raises RateLimitError (429) when a limit would be passed
        engine=engine_of(request),
        user=user,
        upload=NewUpload(
            id=upload_id,
            owner_id=user.id,
            key=key,
            filename=body.filename,
            content_type=body.content_type,
            size_bytes=body.size_bytes,
            expires_at=expires_at,
        ),
    )
    UPLOADS_PRESIGNED.inc()
    public = UploadPublic(
        upload_id=upload_id,
        url=url,
        headers=headers,
        expires_at=expires_at,
        max_size_bytes=settings.max_upload_bytes,
    )
    # Already an UploadPublic: serialised once here, not validated again by FastAPI.
    return Response(public.model_dump_json(), status_code=201, media_type="application/json")


async def serve_create_upload(request: Request) -> Response:
    """POST /v1/uploads as `create_upload` declares it, without FastAPI's solving of its
    parameters (api/served.py): the credential first (401 before anything about the
    body), then the body, validated as the declared `UploadCreate` would be."""
    background = BackgroundTasks()  # a key's use is recorded after the response
    user = await authenticate(request, background)
    body = await json_body(request, UploadCreate)
    response = await create_upload(body, request, user)
    response.background = background
    return response


router.add_api_route(
    "",
    create_upload,
    methods=["POST"],
    status_code=201,
    response_model=UploadPublic,
    responses=error_responses(401, 413, 415, 422, 429, 503),
    summary="Get a presigned URL to upload a video",
    route_class_override=served_by(serve_create_upload),
)
