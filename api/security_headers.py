"""Security headers on every response; a strict Content-Security-Policy on the page.

The page needs nothing but its own origin, plus the storage origin that presigned URLs
point at (uploads by XHR PUT, audio previews after the download redirect). No inline
scripts or styles are allowed. The OpenAPI docs at /docs load Swagger UI from a CDN, so
the CSP is applied to the page's files, not to /docs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import Settings

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def storage_origin(settings: Settings) -> str:
    endpoint = settings.public_endpoint
    if not endpoint:
        return f"https://s3.{settings.s3_region}.amazonaws.com"
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def page_csp(settings: Settings) -> str:
    storage = storage_origin(settings)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {storage}",
            f"media-src 'self' {storage} blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.csp = page_csp(settings).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        is_page = not path.startswith(("/v1/", "/docs", "/redoc", "/openapi.json", "/metrics"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += COMMON
                if is_page:
                    headers.append((b"content-security-policy", self.csp))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)
