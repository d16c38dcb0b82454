"""Routes documented by FastAPI from their endpoint's parameters, served by a handler of
their own.

FastAPI solves a route's declared parameters (the JSON body, the authentication
dependency) on every request, and on the busiest routes that costs more than the route's
work. Such a route is declared as usual, so OpenAPI documents it as FastAPI would, and
is added with ``route_class_override=served_by(handler)``: requests then go to
``handler(request)``, which authenticates, reads its body with `json_body()` and calls
the endpoint with what the declaration promised.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
M = TypeVar("M", bound=BaseModel)


def served_by(handler: Handler) -> type[APIRoute]:
    """An APIRoute class whose requests go to `handler` instead of FastAPI's solver."""

    class ServedRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            return handler

    return ServedRoute


def is_json(content_type: str | None) -> bool:
    """The media types FastAPI reads as JSON: application/json and */*+json."""
    if not content_type:
        return False
    main, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return main == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, refused as FastAPI refuses a declared body
    parameter: RequestValidationError (422, each error located under "body")."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not is_json(request.headers.get("content-type")):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "The body should be a JSON object sent with "
                    "'Content-Type: application/json'",
                    "input": None,
                }
            ]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
