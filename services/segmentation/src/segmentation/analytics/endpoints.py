from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Path, Query, Request

from loyalty_shared import ahp
from loyalty_shared.db import Session
from loyalty_shared.periods import PeriodFrom, PeriodTo, resolve_period
from loyalty_shared.problems import NotFound, Unprocessable
from segmentation.analytics import clv, config, distribution, jobs, kpis
from segmentation.analytics.schemas import (
    BGNBDOut,
    ClvModelOut,
    DistributionOut,
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
    description="409 `recompute-in-progress` (with its `job_id`) while another recompute is "
    "queued or running; a job whose process died is failed after "
    "`SEGMENTATION_JOB_STALE_AFTER_SECONDS` without a heartbeat, and a new one can run.",
    responses={
        409: {
            "description": "a recompute is already queued or running, or the Idempotency-Key "
            "was used with another body"
        }
    },
)
async def start_recompute(
    request: Request,
    session: Session,
    background: BackgroundTasks,
    body: RecomputeIn | None = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="The same key and body give the first request's job back; the same "
            "key with another body is 409 idempotency-key-reused",
        ),
    ] = None,
) -> JobAccepted:
    runner = request.app.state.job_runner
    job_id, as_of, replayed = await jobs.request_recompute(
        session, runner.settings, body.as_of if body else None, idempotency_key
    )
    if not replayed:

        async def launch() -> None:
            # runs after the response (and so after the job row committed)
            runner.start(job_id)

        background.add_task(launch)
    return JobAccepted(job_id=job_id, status="queued", as_of=as_of)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, summary="A job's status and progress")
async def get_job(job_id: Annotated[str, Path(max_length=64)], session: Session) -> JobOut:
    job = await jobs.get_job(session, job_id)
    return JobOut.model_validate(job, from_attributes=True)


@router.get(
    "/v1/analytics/clv-model",
    response_model=ClvModelOut,
    summary="The fitted CLV models",
    responses={404: {"description": "No recompute has fitted a CLV model yet"}},
)
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


@router.get(
    "/v1/analytics/distribution",
    response_model=DistributionOut,
    summary="How every profile spreads over value tiers, lifecycle stages, tiers and RFM cells",
    description="Counted over all profiles in one statement (what the ops console's charts "
    "show). Value tiers, lifecycle stages and RFM scores change at each recompute.",
)
async def get_distribution(session: Session) -> DistributionOut:
    return DistributionOut.model_validate(await distribution.distribution(session))


@router.get(
    "/v1/analytics/kpis",
    response_model=KpisOut,
    summary="KPIs with the previous period, targets, and breakdowns per tier or segment",
    description="Each figure over [from, to) (default: the 30 days before now) and over the "
    "previous period of the same length, with the brief's target where it sets one. "
    "`by` (repeatable) adds `breakdowns` per loyalty tier, value tier or segment. "
    "The NPS comes with its 95% CI (`nps_ci95`) and is hidden (null, `nps_hidden`) below "
    "SEGMENTATION_NPS_MIN_SAMPLE answers, as in feedback's metrics. "
    "Definitions come with the figures; docs/segmentation.md.",
)
async def get_kpis(
    session: Session,
    request: Request,
    from_: PeriodFrom = None,
    to: PeriodTo = None,
    by: Annotated[
        list[kpis.Dimension] | None,
        Query(description="Break the figures down per tier, value_tier or segment (repeatable)"),
    ] = None,
) -> KpisOut:
    period = resolve_period(from_, to, now=datetime.now(UTC), default_days=30)
    dimensions = tuple(d for d in kpis.DIMENSIONS if d in (by or []))
    minimum = request.app.state.settings.nps_min_sample
    figures = await kpis.kpis(session, period.start, period.end, dimensions, minimum)
    return KpisOut.model_validate(figures)


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
