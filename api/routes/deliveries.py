"""A job's notification deliveries: each attempt, and re-sending by hand."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import CurrentUser
from api.deps import SessionDep
from api.errors import error_responses
from shared import deliveries, jobs
from shared.account_schemas import DeliveriesPublic, DeliveryPublic

router = APIRouter(prefix="/v1/jobs", tags=["deliveries"])


@router.get(
    "/{job_id}/deliveries",
    response_model=DeliveriesPublic,
    responses=error_responses(401, 404, 422),
    summary="The job's notification attempts",
)
def list_deliveries(job_id: str, user: CurrentUser, session: SessionDep) -> DeliveriesPublic:
    """Every attempt, oldest first: when, to which host, the status code or error, and when
    the next retry is due. Scheduled retries show as `pending`."""
    jobs.get_job(session=session, job_id=job_id, owner_id=user.id)
    rows = deliveries.list_for_job(session=session, job_id=job_id)
    return DeliveriesPublic(items=[DeliveryPublic.from_delivery(r) for r in rows])


@router.post(
    "/{job_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryPublic,
    responses=error_responses(401, 404, 422),
    summary="Send a delivery's event again now",
)
def retry_delivery(
    job_id: str, delivery_id: str, user: CurrentUser, session: SessionDep
) -> DeliveryPublic:
    """Schedules a new attempt of that delivery's event (same `webhook-id`) for now; a retry
    already waiting is brought forward instead."""
    jobs.get_job(session=session, job_id=job_id, owner_id=user.id)
    row = deliveries.retry(session=session, job_id=job_id, delivery_id=delivery_id)
    return DeliveryPublic.from_delivery(row)
