"""CLV: BG/NBD (purchase process, survival) and Gamma-Gamma (spend per purchase).

Both are fitted by maximum likelihood with the ``lifetimes`` library at every
recompute. Inputs follow ``lifetimes.utils.summary_data_from_transaction_data``
with ``freq="D"``: a member's purchase days (UTC) before as_of;
frequency = distinct purchase days - 1 (repeat purchases), recency = days
between first and last purchase day, T = days from the first purchase day to
as_of's day, monetary value = mean net spend of the repeat purchase days.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from segmentation.analytics.models import ClvModel

HORIZON_DAYS = 90
MIN_CUSTOMERS = 10  # below this a fit is meaningless: the profiles get no CLV
MIN_REPEAT_CUSTOMERS = 5

_SUMMARY = """
WITH days AS (
    SELECT member_id, CAST(occurred_at AT TIME ZONE 'UTC' AS date) AS day, sum(net) AS spend
    FROM rc_orders GROUP BY 1, 2
), firsts AS (
    SELECT member_id, min(day) AS first_day FROM days GROUP BY 1
)
SELECT d.member_id,
       count(*) - 1 AS frequency,
       max(d.day) - f.first_day AS recency,
       CAST(CAST(:as_of AS timestamptz) AT TIME ZONE 'UTC' AS date) - f.first_day AS t_days,
       COALESCE(avg(d.spend) FILTER (WHERE d.day > f.first_day), 0) AS monetary
FROM days d JOIN firsts f USING (member_id)
GROUP BY d.member_id, f.first_day
ORDER BY d.member_id
"""


@dataclass
class FitResult:
    bgnbd: dict[str, float] | None
    gamma_gamma: dict[str, float] | None
    note: str | None
    p_alive: np.ndarray | None
    expected_purchases: np.ndarray | None
    expected_value: np.ndarray | None


def fit(summary: pd.DataFrame, horizon: int = HORIZON_DAYS) -> FitResult:
    """Fit both models on a lifetimes-style summary (frequency, recency, T, monetary_value)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter  # type: ignore[import-untyped]

    if len(summary) < MIN_CUSTOMERS:
        return FitResult(None, None, f"fewer than {MIN_CUSTOMERS} customers", None, None, None)
    f = summary["frequency"].to_numpy(dtype=float)
    r = summary["recency"].to_numpy(dtype=float)
    t = summary["T"].to_numpy(dtype=float)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = _fit_with_fallback(
            lambda pen: BetaGeoFitter(penalizer_coef=pen).fit(f, r, t), notes, "BG/NBD"
        )
        p_alive = np.asarray(bgf.conditional_probability_alive(f, r, t), dtype=float)
        expected = np.asarray(
            bgf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t), dtype=float
        )
    bg = {k: float(v) for k, v in bgf.params_.items()}
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if len(repeat) < MIN_REPEAT_CUSTOMERS:
        notes.append(f"fewer than {MIN_REPEAT_CUSTOMERS} repeat customers: no Gamma-Gamma")
        return FitResult(bg, None, "; ".join(notes), p_alive, expected, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rf = repeat["frequency"].to_numpy(dtype=float)
        rm = repeat["monetary_value"].to_numpy(dtype=float)
        ggf = _fit_with_fallback(
            lambda pen: GammaGammaFitter(penalizer_coef=pen).fit(rf, rm), notes, "Gamma-Gamma"
        )
        monetary = summary["monetary_value"].to_numpy(dtype=float)
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


async def fit_and_score(session: AsyncSession, as_of: datetime) -> int:
    """Fit on the recompute's population (rc_orders), store the model, write predictions."""
    rows = (await session.execute(text(_SUMMARY), {"as_of": as_of})).all()
    summary = pd.DataFrame(
        {
            "frequency": [row.frequency for row in rows],
            "recency": [row.recency for row in rows],
            "T": [row.t_days for row in rows],
            "monetary_value": [float(row.monetary) for row in rows],
        }
    )
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
    ids = [row.member_id for row in rows]
    if result.p_alive is not None and ids:
        values: list[Any] = [
            ids,
            [float(x) for x in np.round(result.p_alive, 6)],
            [float(x) for x in np.round(result.expected_purchases, 6)]
            if result.expected_purchases is not None
            else [None] * len(ids),
            [str(round(float(x), 2)) if np.isfinite(x) else None for x in result.expected_value]
            if result.expected_value is not None
            else [None] * len(ids),
        ]
        await session.execute(
            text(
                "UPDATE profiles p SET p_alive = u.p, expected_purchases_90d = u.e, "
                "expected_value = CAST(u.v AS numeric) "
                "FROM unnest(CAST(:ids AS text[]), CAST(:p AS float8[]), CAST(:e AS float8[]), "
                "CAST(:v AS text[])) AS u(member_id, p, e, v) WHERE p.member_id = u.member_id"
            ),
            {"ids": values[0], "p": values[1], "e": values[2], "v": values[3]},
        )
    else:
        await session.execute(
            text(
                "UPDATE profiles SET p_alive = NULL, expected_purchases_90d = NULL, "
                "expected_value = NULL WHERE p_alive IS NOT NULL OR expected_value IS NOT NULL"
            )
        )
    return model.id


async def latest_model(session: AsyncSession) -> ClvModel | None:
    return (
        await session.execute(select(ClvModel).order_by(ClvModel.id.desc()).limit(1))
    ).scalar_one_or_none()
