"""/healthz (the process answers) and /readyz (the database answers)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from api.deps import SessionDep
from api.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up. Checks nothing else, so a broker outage never restarts the API."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={
        200: {
            "description": "The database answered.",
            "content": {
                "application/json": {
                    "example": {"status": "ready", "checks": {"database": "ok"}},
                }
            },
        },
        503: {
            "description": "The database is unreachable.",
            "content": {
                "application/json": {
                    "example": {
                        "error": {
                            "code": "not_ready",
                            "message": "Not ready: database unreachable.",
                        },
                        "checks": {"database": "unreachable"},
                    }
                }
            },
        },
    },
)
def readyz(session: SessionDep) -> JSONResponse:
    """The database answers: every route needs it. The broker and storage are not checked,
    so a blip of either keeps status reads, lists and downloads served; the routes that
    need them answer 503 `queue_unavailable` or `storage_unavailable` meanwhile."""
    try:
        session.exec(select(1)).one()
    except SQLAlchemyError:
        checks = {"database": "unreachable"}
        return JSONResponse(
            error_body("not_ready", "Not ready: database unreachable.", checks=checks),
            status_code=503,
        )
    return JSONResponse({"status": "ready", "checks": {"database": "ok"}})
