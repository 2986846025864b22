"""The overview: KPI cards with the previous period and the target, and the charts.

Figures come from ``GET /v1/analytics/kpis`` (with ``by=``) and ``GET /v1/feedback/metrics``
(the whole period, and each of its slices for the lines over time). The value tiers, the RFM
grid and the lifecycle funnel come from ``GET /v1/analytics/distribution``: counted by
segmentation over every profile, not over a page of them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gateway.console.web import ApiResult, ConsoleApi, signed_in

router = APIRouter()

SLICES = 6
LIFECYCLE = ("new", "growing", "mature", "sleeping", "churn-risk", "churned")
VALUE_TIERS = ("high", "medium", "low")
# Shown as cards (in this order) when the KPIs answer them.
CARDS = (
    "members",
    "buyers",
    "orders",
    "repurchase_rate",
    "churn_rate",
    "core_customer_retention_rate",
    "average_ltv",
    "active_rate",
    "participation_rate",
    "high_value_revenue_share",
    "nps",
    "csat",
    "sla_compliance",
    "complaint_rate",
)
_PERCENT_WORDS = ("rate", "share", "compliance", "coverage")
Dimension = Literal["tier", "value_tier", "segment"]


def is_percent(key: str) -> bool:
    return any(word in key for word in _PERCENT_WORDS)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def show(key: str, value: Any) -> str:
    """A figure for people: rates as percentages, money and means to two decimals."""
    number = as_number(value)
    if number is None:
        return "n/a" if value is None else str(value)
    if is_percent(key):
        return f"{number * 100:.1f}%"
    if number == int(number) and not isinstance(value, str):
        return f"{int(number):,}"
    return f"{number:,.2f}"


_ACRONYMS = {"nps": "NPS", "csat": "CSAT", "ltv": "LTV", "sla": "SLA"}


def label(key: str) -> str:
    words = [_ACRONYMS.get(w, w) for w in key.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def card(key: str, figure: dict[str, Any], definition: str | None) -> dict[str, Any]:
    current, previous = as_number(figure.get("current")), as_number(figure.get("previous"))
    change: str | None = None
    if current is not None and previous is not None:
        delta = current - previous
        if is_percent(key):
            change = f"{delta * 100:+.1f} pts"
        elif previous:
            change = f"{delta / abs(previous) * 100:+.1f}%"
        else:
            change = f"{delta:+,.0f}" if delta == int(delta) else f"{delta:+,.2f}"
    target = figure.get("target") or None
    return {
        "key": key,
        "label": label(key),
        "current": show(key, figure.get("current")),
        "previous": show(key, figure.get("previous")),
        "change": change,
        "target": target.get("basis") if target else None,
        "met": target.get("met") if target else None,
        "definition": definition,
    }


def cards(kpis: dict[str, Any]) -> list[dict[str, Any]]:
    figures: dict[str, Any] = kpis.get("kpis", {})
    definitions: dict[str, str] = kpis.get("definitions", {})
    return [card(k, figures[k], definitions.get(k)) for k in CARDS if k in figures]


def breakdown(kpis: dict[str, Any], dimension: str | None) -> dict[str, Any] | None:
    """The ``by=`` table: a row per group, the cards' figures (current and previous)."""
    if not dimension:
        return None
    groups: list[dict[str, Any]] = kpis.get("breakdowns", {}).get(dimension, [])
    keys = [k for k in CARDS if any(k in g.get("kpis", {}) for g in groups)]
    rows = []
    for group in groups:
        figures = group.get("kpis", {})
        rows.append(
            {
                "label": group.get("label"),
                "cells": [
                    (
                        show(k, (figures.get(k) or {}).get("current")),
                        show(k, (figures.get(k) or {}).get("previous")),
                    )
                    for k in keys
                ],
            }
        )
    return {"dimension": dimension, "columns": keys, "rows": rows}


def profile_charts(spread: dict[str, Any]) -> dict[str, Any]:
    """Value tiers, the RFM R x F grid (5 x 5, with counts) and the lifecycle funnel, from
    segmentation's distribution of every profile."""
    value = dict.fromkeys(VALUE_TIERS, 0) | dict(spread.get("value_tiers") or {})
    stages = dict.fromkeys(LIFECYCLE, 0) | {
        stage: n for stage, n in (spread.get("lifecycle") or {}).items() if stage != "unknown"
    }
    grid = [[0] * 5 for _ in range(5)]  # grid[r - 1][f - 1]
    for cell in spread.get("rfm_grid") or []:
        r, f = cell.get("r"), cell.get("f")
        if isinstance(r, int) and isinstance(f, int) and 1 <= r <= 5 and 1 <= f <= 5:
            grid[r - 1][f - 1] += int(cell.get("count") or 0)
    peak = max((c for row in grid for c in row), default=0) or 1
    heat = [
        {
            "r": r,
            "cells": [
                {"f": f, "count": grid[r - 1][f - 1], "level": round(grid[r - 1][f - 1] / peak * 4)}
                for f in range(1, 6)
            ],
        }
        for r in range(5, 0, -1)
    ]
    return {
        "value_tiers": {"labels": list(value), "values": list(value.values())},
        "lifecycle": {"labels": list(stages), "values": list(stages.values())},
        "rfm": heat,
        "rfm_scored": sum(c for row in grid for c in row),
    }


def pareto(metrics: dict[str, Any]) -> dict[str, Any]:
    causes = (metrics.get("current") or {}).get("causes") or []
    return {
        "labels": [c["cause"] for c in causes],
        "counts": [c["count"] for c in causes],
        "cumulative": [round(c["cumulative_share"] * 100, 1) for c in causes],
    }


def sla(metrics: dict[str, Any]) -> dict[str, Any]:
    labels = ["first_response", "resolution", "overall"]
    out: dict[str, Any] = {"labels": [s.replace("_", " ") for s in labels]}
    for period in ("current", "previous"):
        part = (metrics.get(period) or {}).get("sla_compliance") or {}
        out[period] = [
            None if (part.get(s) or {}).get("rate") is None else round(part[s]["rate"] * 100, 1)
            for s in labels
        ]
    return out


def over_time(slices: list[tuple[date, ApiResult]]) -> dict[str, Any]:
    labels, nps, csat, compliance = [], [], [], []
    for start, result in slices:
        current = (result.body or {}).get("current", {}) if result.ok else {}
        labels.append(start.isoformat())
        nps.append((current.get("nps") or {}).get("score"))
        csat.append((current.get("csat") or {}).get("mean"))
        overall = ((current.get("sla_compliance") or {}).get("overall") or {}).get("rate")
        compliance.append(None if overall is None else round(overall * 100, 1))
    return {"labels": labels, "nps": nps, "csat": csat, "sla": compliance}


def period_of(start: date | None, end: date | None, days: int) -> tuple[date, date]:
    """[start, end) in whole days from the picker's first and last day (included); the
    default: the ``days`` days up to today (included)."""
    today = datetime.now(UTC).date()
    end = (end or today) + timedelta(days=1)
    start = start or end - timedelta(days=days)
    if start >= end:
        start = end - timedelta(days=1)
    return start, end


def _iso(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()


async def _slices(api: ConsoleApi, start: date, end: date) -> list[tuple[date, ApiResult]]:
    days = (end - start).days
    step = max(1, -(-days // SLICES))
    bounds = []
    cursor = start
    while cursor < end:
        bounds.append((cursor, min(end, cursor + timedelta(days=step))))
        cursor += timedelta(days=step)
    answers = await asyncio.gather(
        *(api.get("/v1/feedback/metrics", {"from": _iso(a), "to": _iso(b)}) for a, b in bounds)
    )
    return [(a, r) for (a, _), r in zip(bounds, answers, strict=True)]


@router.get("/console", include_in_schema=False)
async def overview(
    request: Request,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    by: Dimension | None = None,
) -> Response:
    start, end = period_of(start, end, days)
    async with signed_in(request) as page:
        kpi_params: dict[str, Any] = {"from": _iso(start), "to": _iso(end)}
        if by:
            kpi_params["by"] = by
        kpis, metrics, spread, slices = await asyncio.gather(
            page.api.get("/v1/analytics/kpis", kpi_params),
            page.api.get("/v1/feedback/metrics", {"from": _iso(start), "to": _iso(end)}),
            page.api.get("/v1/analytics/distribution"),
            _slices(page.api, start, end),
        )
        figures = kpis.body.get("kpis", {}) if kpis.ok else {}
        current_tiers = (figures.get("tier_distribution") or {}).get("current") or {}
        charts = {
            "tiers": {"labels": list(current_tiers), "values": list(current_tiers.values())},
            **profile_charts(spread.body if spread.ok else {}),
            "pareto": pareto(metrics.body if metrics.ok else {}),
            "sla": sla(metrics.body if metrics.ok else {}),
            "time": over_time(slices),
        }
        return page.render(
            "overview.html",
            start=start,
            end=end,
            last_day=end - timedelta(days=1),
            by=by,
            kpis_problem=None if kpis.ok else kpis.problem,
            metrics_problem=None if metrics.ok else metrics.problem,
            profiles_problem=None if spread.ok else spread.problem,
            cards=cards(kpis.body) if kpis.ok else [],
            breakdown=breakdown(kpis.body, by) if kpis.ok else None,
            charts=charts,
            profiles_total=(spread.body or {}).get("profiles", 0) if spread.ok else 0,
        )
