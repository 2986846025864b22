"""The pipeline: per service the outbox backlog, parked rows, consumer lag, dead letters
and job health (``GET /v1/ops/pipeline``); for an admin key also the open dead letters
(``GET /v1/ops/dead-letters``, admin only: an ops key is told so)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.console.web import signed_in

router = APIRouter()


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job's name and the rest of its row as (field, value) pairs."""
    rows = []
    for job in jobs:
        name = job.get("job") or job.get("name") or "?"
        rest = [(k.replace("_", " "), v) for k, v in job.items() if k not in ("job", "name")]
        rows.append({"name": name, "fields": rest, "failing": bool(job.get("last_error"))})
    return rows


@router.get("/console/pipeline")
async def pipeline(request: Request) -> Response:
    async with signed_in(request) as page:
        report, letters = await asyncio.gather(
            page.api.get("/v1/ops/pipeline"),
            page.api.get("/v1/ops/dead-letters", {"limit": 50}),
        )
        services = report.body.get("services", {}) if report.ok else {}
        return page.render(
            "pipeline.html",
            problem=None if report.ok else report.problem,
            totals=report.body.get("totals", {}) if report.ok else {},
            services={
                name: {**part, "job_rows": job_rows(part.get("jobs") or [])}
                for name, part in services.items()
            },
            letters=letters.body if letters.ok else None,
            letters_problem=None if letters.ok else letters.problem,
        )
