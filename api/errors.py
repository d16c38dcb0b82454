"""Every error leaves the API as {"error": {"code", "message"}}: no stack traces, no paths.

Domain conditions are `AppError`s (shared/errors.py), raised by services and routes alike
and answered here with their status and code; FastAPI's own HTTP and validation errors are
put in the same shape. A database that cannot be reached (SQLAlchemy's OperationalError,
or no pooled connection free in time) is 503 `database_unavailable` with Retry-After:
the request may succeed once it is back.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import AppError, AuthError, RateLimitError
from shared.schemas import ErrorResponse

log = structlog.get_logger("api")

DATABASE_RETRY_AFTER_S = 5

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given statuses, all of shape ErrorResponse."""
    return {
        status: {
            "model": ErrorResponse,
            "description": _DEFAULT_CODES.get(status, "error").replace("_", " "),
        }
        for status in statuses
    }


# What FastAPI reports when the body is not a JSON object (another Content-Type, a list).
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type"}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        if tuple(err.get("loc", ())) == ("body",) and err.get("type") in _NOT_AN_OBJECT:
            parts.append(
                "the body should be a JSON object sent with 'Content-Type: application/json'"
            )
            continue
        if err.get("type") == "json_invalid":
            parts.append(f"Invalid JSON ({err.get('ctx', {}).get('error', 'cannot be parsed')})")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(
            f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid"))
        )
    return "The request is not valid: " + "; ".join(parts) + "."


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _DEFAULT_CODES.get(exc.status_code, "error")
        message = (
            exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
        )
        if exc.status_code == 404:
            message = "There is nothing at this address."
        body = error_body(code, str(message).rstrip(".") + ".")
        return JSONResponse(
            body, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("validation_error", _describe_validation(exc)), status_code=422
        )

    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("request_failed", code=exc.code, error=exc.message)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimitError):
            headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, AuthError):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The driver's message names the host and may quote the statement: type only.
        cause = exc.orig if isinstance(exc, OperationalError) else exc
        log.warning("database_unavailable", error=type(cause).__name__)
        return JSONResponse(
            error_body(
                "database_unavailable",
                "The database cannot be reached right now; please try again shortly.",
            ),
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_exception", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "Something went wrong on our side; please try again."),
            status_code=500,
        )
