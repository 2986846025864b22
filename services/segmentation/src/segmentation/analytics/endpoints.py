from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Request

from loyalty_shared import ahp
from loyalty_shared.db import Session
from loyalty_shared.periods import PeriodFrom, PeriodTo, resolve_period
from loyalty_shared.problems import NotFound, Unprocessable
from segmentation.analytics import clv, config, jobs, kpis
from segmentation.analytics.schemas import (
    BGNBDOut,
    ClvModelOut,
    GammaGammaOut,
    JobAccepted,
    JobOut,
    KpisOut,
    LoyaltyWeightsIn,
    LoyaltyWeightsOut,
    RecomputeIn,
)

router = APIRouter(tags=["analytics"])


class InvalidMatrix(Unprocessable):
    slug = "invalid-ahp-matrix"
    title = "Invalid AHP matrix"


class NoClvModel(NotFound):
    slug = "clv-model-not-fitted"
    title = "No CLV model yet"


@router.post(
    "/v1/analytics/recompute",
    status_code=202,
    response_model=JobAccepted,
    summary="Recompute every time-based score as of an instant (a background job)",
)
async def start_recompute(
    request: Request, session: Session, background: BackgroundTasks, body: RecomputeIn | None = None
) -> JobAccepted:
    as_of = (body.as_of if body and body.as_of else None) or datetime.now(UTC)
    job_id = await jobs.create_job(session, as_of)
    assert job_id is not None
    app = request.app

    async def launch() -> None:
        # runs after the response (and so after the job row committed)
        app.state.job_runner.start(job_id)

    background.add_task(launch)
    return JobAccepted(job_id=job_id, status="queued", as_of=as_of)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, summary="A job's status and progress")
async def get_job(job_id: Annotated[str, Path(max_length=64)], session: Session) -> JobOut:
    job = await jobs.get_job(session, job_id)
    return JobOut.model_validate(job, from_attributes=True)


@router.get("/v1/analytics/clv-model", response_model=ClvModelOut, summary="The fitted CLV models")
async def get_clv_model(session: Session) -> ClvModelOut:
    model = await clv.latest_model(session)
    if model is None:
        raise NoClvModel("no recompute has fitted a CLV model yet: POST /v1/analytics/recompute")
    return ClvModelOut(
        bgnbd=BGNBDOut.model_validate(model.bgnbd) if model.bgnbd else None,
        gamma_gamma=GammaGammaOut.model_validate(model.gamma_gamma) if model.gamma_gamma else None,
        customers=model.customers,
        repeat_customers=model.repeat_customers,
        fitted_at=model.fitted_at,
        as_of=model.as_of,
        note=model.note,
        horizon_days=clv.HORIZON_DAYS,
    )


@router.get("/v1/analytics/kpis", response_model=KpisOut, summary="KPIs with the previous period")
async def get_kpis(session: Session, from_: PeriodFrom = None, to: PeriodTo = None) -> KpisOut:
    period = resolve_period(from_, to, now=datetime.now(UTC), default_days=30)
    return KpisOut.model_validate(await kpis.kpis(session, period.start, period.end))


def _weights_out(matrix: list[list[float]], result: ahp.AHPResult) -> LoyaltyWeightsOut:
    return LoyaltyWeightsOut(
        indicators=list(config.LOYALTY_INDICATORS),
        matrix=matrix,
        weights=dict(zip(config.LOYALTY_INDICATORS, result.weights, strict=True)),
        lambda_max=result.lambda_max,
        ci=result.ci,
        cr=result.cr,
    )


@router.get(
    "/v1/analytics/loyalty-weights",
    response_model=LoyaltyWeightsOut,
    summary="The AHP matrix and weights of the loyalty index",
)
async def get_loyalty_weights(session: Session) -> LoyaltyWeightsOut:
    matrix, result = await config.loyalty_weights(session)
    return _weights_out(matrix, result)


@router.put(
    "/v1/analytics/loyalty-weights",
    response_model=LoyaltyWeightsOut,
    summary="Replace the loyalty index's AHP matrix (CR >= 0.1 is rejected)",
    description="The new weights apply from the next recompute.",
)
async def put_loyalty_weights(body: LoyaltyWeightsIn, session: Session) -> LoyaltyWeightsOut:
    n = len(config.LOYALTY_INDICATORS)
    if len(body.matrix) != n:
        raise InvalidMatrix(
            f"the matrix must be {n}x{n}, one row per indicator",
            errors=[{"field": "matrix", "message": f"needs {n} rows", "type": "shape"}],
        )
    try:
        result = ahp.weights(body.matrix)
    except ahp.InconsistentMatrix as exc:
        raise InvalidMatrix(
            str(exc),
            cr=exc.result.cr,
            errors=[{"field": "matrix", "message": str(exc), "type": "consistency"}],
        ) from exc
    except ahp.InvalidMatrix as exc:
        raise InvalidMatrix(
            str(exc), errors=[{"field": "matrix", "message": str(exc), "type": "matrix"}]
        ) from exc
    await config.put_entry(session, config.LOYALTY_KEY, {"matrix": body.matrix})
    return _weights_out(body.matrix, result)
