"""/healthz (the process answers) and /readyz (database, broker and storage reachable)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import select

from api.deps import PublisherDep, SessionDep, StorageDep
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
            "description": "Every dependency answered.",
            "content": {
                "application/json": {
                    "example": {
                        "status": "ready",
                        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
                    }
                }
            },
        },
        503: {
            "description": "At least one dependency is unreachable; `checks` says which.",
            "content": {
                "application/json": {
                    "example": {
                        "error": {"code": "not_ready", "message": "Not ready: broker unreachable."},
                        "checks": {"database": "ok", "broker": "unreachable", "storage": "ok"},
                    }
                }
            },
        },
    },
)
def readyz(session: SessionDep, publisher: PublisherDep, storage: StorageDep) -> JSONResponse:
    """Database, broker and storage answer. 503 names the ones that do not."""
    checks: dict[str, str] = {}
    probes: dict[str, Callable[[], object]] = {
        "database": lambda: session.exec(select(1)).one(),
        "broker": publisher.ping,
        "storage": storage.ping,
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception:  # any failure of a probe means "not ready", never a 500
            checks[name] = "unreachable"
    failing = [name for name, value in checks.items() if value != "ok"]
    if failing:
        message = "Not ready: " + ", ".join(failing) + " unreachable."
        return JSONResponse(error_body("not_ready", message, checks=checks), status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
