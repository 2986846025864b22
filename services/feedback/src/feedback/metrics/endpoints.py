from fastapi import APIRouter, Request

from feedback.clock import Now
from feedback.metrics import service
from feedback.metrics.schemas import HierarchyIn, HierarchyOut, MetricsOut
from loyalty_shared.db import Session
from loyalty_shared.periods import PeriodFrom, PeriodTo, resolve_period

router = APIRouter(prefix="/v1/feedback", tags=["metrics"])


@router.get(
    "/metrics",
    response_model=MetricsOut,
    summary="NPS, CSAT, CSI (AHP), FCR, SLA compliance, MTTR, causes (Pareto), follow-ups",
)
async def metrics(
    session: Session,
    request: Request,
    now: Now,
    from_: PeriodFrom = None,
    to: PeriodTo = None,
) -> MetricsOut:
    period = resolve_period(from_, to, now=now, default_days=30)
    return await service.metrics(session, request.app.state.settings, period.start, period.end)


@router.get(
    "/csi-hierarchy", response_model=HierarchyOut, summary="The CSI factor hierarchy and weights"
)
async def get_hierarchy(session: Session) -> HierarchyOut:
    return await service.get_hierarchy(session)


@router.put(
    "/csi-hierarchy",
    response_model=HierarchyOut,
    summary="Configure the CSI hierarchy (criteria -> factors) and its AHP judgments",
    responses={422: {"description": "A matrix is invalid or inconsistent (CR >= 0.1)"}},
)
async def put_hierarchy(body: HierarchyIn, session: Session, now: Now) -> HierarchyOut:
    return await service.put_hierarchy(session, body, now)
