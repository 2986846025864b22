"""CLV: BG/NBD (purchase process, survival) and Gamma-Gamma (spend per purchase).

Both are fitted by maximum likelihood with the ``lifetimes`` library at every
recompute. Inputs follow ``lifetimes.utils.summary_data_from_transaction_data``
with ``freq="D"``: a member's purchase days (UTC) before as_of;
frequency = distinct purchase days - 1 (repeat purchases), recency = days
between first and last purchase day, T = days from the first purchase day to
as_of's day, monetary value = mean net spend of the repeat purchase days.

The fits run on patterns, not on members: BG/NBD's likelihood depends on a member
only through (frequency, recency, T), Gamma-Gamma's through (frequency, monetary
value), so members with the same pattern are one row with a weight (lifetimes'
``weights``: Fader and Hardie's condensed form). The likelihood is the same function
(lifetimes divides by the weights' sum as it divides by the members' count), so the
parameters are the full fit's to the optimiser's tolerance, and a million members in
days over two years are a few thousand rows. Only when the patterns are more than
``FIT_PATTERNS`` (long histories in fine time units, continuous spends) is a model
fitted on a random sample of ``SAMPLE_MEMBERS`` members (seeded: the same data give
the same fit), and the model's note says so; bench/results/segmentation-recompute.md
measures how far such a fit's parameters move from the full fit's. The predictions
are every member's, from their own history, vectorised (numpy).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import driver_connection
from segmentation.analytics.models import ClvModel

HORIZON_DAYS = 90
MIN_CUSTOMERS = 10  # below this a fit is meaningless: the profiles get no CLV
MIN_REPEAT_CUSTOMERS = 5

# The summary per member, computed in the recompute's statistics pass (rc_stats): the
# mean spend of the repeat purchase days is their sum over their count, as avg computes
# it (numeric division of the exact sum by the count), so the same value and scale.
_SUMMARY = """
SELECT member_id,
       clv_frequency AS frequency,
       clv_recency AS recency,
       CAST(CAST(:as_of AS timestamptz) AT TIME ZONE 'UTC' AS date) - clv_first_day AS t_days,
       COALESCE(clv_repeat_spend / NULLIF(clv_repeat_days, 0), 0) AS monetary
FROM rc_stats
ORDER BY member_id
"""


@dataclass
class FitResult:
    bgnbd: dict[str, float] | None
    gamma_gamma: dict[str, float] | None
    note: str | None
    p_alive: np.ndarray | None
    expected_purchases: np.ndarray | None
    expected_value: np.ndarray | None


FIT_PATTERNS = 100_000  # more distinct patterns than this: fitted on a sample
SAMPLE_MEMBERS = 200_000
SAMPLE_SEED = 18


def patterns(columns: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, str | None]:
    """The distinct rows of ``columns`` with their counts (the fit's weights); above
    ``FIT_PATTERNS`` distinct rows, those of a seeded random sample of ``SAMPLE_MEMBERS``."""
    max_rows, sample = FIT_PATTERNS, SAMPLE_MEMBERS
    stacked = np.column_stack(columns)
    note = None
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    if len(unique) > max_rows and len(stacked) > sample:
        chosen = np.random.default_rng(SAMPLE_SEED).choice(len(stacked), sample, replace=False)
        unique, counts = np.unique(stacked[chosen], axis=0, return_counts=True)
        note = f"fitted on a random sample of {sample:,} of {len(stacked):,} (seed {SAMPLE_SEED})"
    return [unique[:, k] for k in range(unique.shape[1])], counts, note


def fit(summary: pd.DataFrame, horizon: int = HORIZON_DAYS) -> FitResult:
    """Fit both models on a lifetimes-style summary (frequency, recency, T, monetary_value)
    condensed to patterns, and predict for every row."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter  # type: ignore[import-untyped]

    if len(summary) < MIN_CUSTOMERS:
        return FitResult(None, None, f"fewer than {MIN_CUSTOMERS} customers", None, None, None)
    f = summary["frequency"].to_numpy(dtype=float)
    r = summary["recency"].to_numpy(dtype=float)
    t = summary["T"].to_numpy(dtype=float)
    notes: list[str] = []
    (pf, pr, pt), weights, sampled = patterns([f, r, t])
    if sampled:
        notes.append(f"BG/NBD {sampled}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = _fit_with_fallback(
            lambda pen: BetaGeoFitter(penalizer_coef=pen).fit(pf, pr, pt, weights=weights),
            notes,
            "BG/NBD",
        )
        p_alive = np.asarray(bgf.conditional_probability_alive(f, r, t), dtype=float)
        expected = np.asarray(
            bgf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t), dtype=float
        )
    bg = {k: float(v) for k, v in bgf.params_.items()}
    monetary = summary["monetary_value"].to_numpy(dtype=float)
    repeat = (f > 0) & (monetary > 0)
    if int(repeat.sum()) < MIN_REPEAT_CUSTOMERS:
        notes.append(f"fewer than {MIN_REPEAT_CUSTOMERS} repeat customers: no Gamma-Gamma")
        return FitResult(bg, None, "; ".join(notes), p_alive, expected, None)
    (rf, rm), repeat_weights, sampled = patterns([f[repeat], monetary[repeat]])
    if sampled:
        notes.append(f"Gamma-Gamma {sampled}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ggf = _fit_with_fallback(
            lambda pen: GammaGammaFitter(penalizer_coef=pen).fit(rf, rm, weights=repeat_weights),
            notes,
            "Gamma-Gamma",
        )
        freq_gg = np.where(monetary > 0, f, 0.0)
        spend = np.asarray(
            ggf.conditional_expected_average_profit(freq_gg, np.where(monetary > 0, monetary, 0.0)),
            dtype=float,
        )
    gg = {k: float(v) for k, v in ggf.params_.items()}
    return FitResult(bg, gg, "; ".join(notes) or None, p_alive, expected, expected * spend)


PENALIZERS = (0.0, 0.001, 0.01, 0.1)


def _fit_with_fallback(fit_one: Any, notes: list[str], name: str) -> Any:
    """Plain maximum likelihood first; if it does not converge (e.g. nobody has dropped out
    yet, so a/b run off to infinity), retry with lifetimes' L2 penalizer and say so."""
    from lifetimes.fitters import ConvergenceError  # type: ignore[import-untyped]

    last: Exception | None = None
    for penalizer in PENALIZERS:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                fitted = fit_one(penalizer)
        except ConvergenceError as exc:
            last = exc
            continue
        if penalizer:
            notes.append(f"{name}: plain MLE did not converge; fitted with penalizer {penalizer}")
        return fitted
    raise RuntimeError(f"{name} did not converge") from last


# The predictions, one row per member of the recompute's population; the recompute's
# scores statement writes them with the rest (an empty table: no fit, no CLV).
_PREDICTIONS = """
CREATE TEMP TABLE rc_clv (
    member_id varchar(128) PRIMARY KEY, p_alive float8, expected_purchases float8,
    expected_value numeric
) ON COMMIT DROP
"""


async def _summary(session: AsyncSession, as_of: datetime) -> tuple[list[str], pd.DataFrame]:
    """The population's summary, read with COPY (CSV) rather than as a million row objects."""
    conn = await driver_connection(session)
    buffer = io.BytesIO()
    query = _SUMMARY.replace("CAST(:as_of AS timestamptz)", "CAST($1 AS timestamptz)")
    await conn.copy_from_query(query, as_of, output=buffer, format="csv")
    buffer.seek(0)
    frame = pd.read_csv(
        buffer,
        header=None,
        names=["member_id", "frequency", "recency", "T", "monetary_value"],
        dtype={"member_id": str, "frequency": np.int64, "recency": np.int64, "T": np.int64},
        float_precision="round_trip",  # as float(Decimal): the nearest double, as before
    )
    ids = [str(x) for x in frame["member_id"]]
    return ids, frame[["frequency", "recency", "T", "monetary_value"]]


def _money(x: float) -> str | None:
    return str(round(float(x), 2)) if np.isfinite(x) else None


async def fit_and_predict(
    session: AsyncSession, as_of: datetime, progress: Callable[[float, str], Awaitable[None]]
) -> int:
    """Fit on the recompute's population (rc_stats), store the model and put every
    member's predictions in ``rc_clv``; returns the model's id."""
    ids, summary = await _summary(session, as_of)
    await progress(0.4, "clv fit")
    try:
        result = await asyncio.to_thread(fit, summary)
    except Exception as exc:  # a fit that does not converge must not fail the recompute
        result = FitResult(None, None, f"fit failed: {type(exc).__name__}: {exc}", None, None, None)
    model = ClvModel(
        as_of=as_of,
        customers=len(summary),
        repeat_customers=int((summary["frequency"] > 0).sum()) if len(summary) else 0,
        bgnbd=result.bgnbd,
        gamma_gamma=result.gamma_gamma,
        note=result.note,
    )
    session.add(model)
    await session.flush()
    await progress(0.45, "clv predictions")
    await session.execute(text(_PREDICTIONS))
    if result.p_alive is not None and ids:
        p_alive = np.round(result.p_alive, 6).tolist()
        expected = (
            np.round(result.expected_purchases, 6).tolist()
            if result.expected_purchases is not None
            else [None] * len(ids)
        )
        value = (
            [_money(x) for x in result.expected_value.tolist()]
            if result.expected_value is not None
            else [None] * len(ids)
        )
        conn = await driver_connection(session)
        await conn.copy_records_to_table(
            "rc_clv",
            records=zip(
                ids,
                p_alive,
                expected,
                (None if v is None else Decimal(v) for v in value),
                strict=True,
            ),
            columns=["member_id", "p_alive", "expected_purchases", "expected_value"],
        )
    return model.id


async def latest_model(session: AsyncSession) -> ClvModel | None:
    return (
        await session.execute(select(ClvModel).order_by(ClvModel.id.desc()).limit(1))
    ).scalar_one_or_none()
