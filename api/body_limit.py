"""A ceiling on request bodies: 413 `payload_too_large` in the API's JSON error shape.

The API only ever reads small JSON bodies (files go straight to storage), so anything
past `V2M_MAX_REQUEST_BODY_BYTES` is refused: at once when `Content-Length` says so,
otherwise as soon as the streamed bytes pass the limit. Starlette's and FastAPI's own
limit (`max_body_size`) answers a declared oversize body in plain text, past the
exception handlers; this one answers like every other error (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes"


class BodyLimitMiddleware:
    """``larger`` gives paths matching a pattern their own limit (a multipart upload's
    completion names up to 10,000 parts)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: tuple[re.Pattern[str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self.larger is not None and self.larger[0].fullmatch(scope["path"]):
            limit = self.larger[1]
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = JSONResponse(
                error_body("payload_too_large", _too_large(limit) + "."), status_code=413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while reading the body, so the
                    # exception handlers answer it.
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counting_receive, send)
