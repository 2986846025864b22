"""The reference for bench/orders.py: the same minimal earn work written directly on asyncpg.

One transaction: insert a ledger row with a unique key, upsert the balance. No ORM,
no validation beyond json parsing: the floor our real endpoint is compared with.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN = os.environ["REFERENCE_DSN"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS ref_ledger (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    member_id text NOT NULL,
    points bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ref_balances (
    member_id text PRIMARY KEY,
    available bigint NOT NULL DEFAULT 0
);
"""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DSN, min_size=10, max_size=20)
    async with app.state.pool.acquire() as conn:
        await conn.execute(SCHEMA)
    yield
    await app.state.pool.close()


async def record_order(request: Request) -> Response:
    body = json.loads(await request.body())
    points = int(Decimal(body["amount"]))
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO ref_ledger (idempotency_key, member_id, points) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING id",
            "order:" + body["order_id"],
            body["member_id"],
            points,
        )
        available = await conn.fetchval(
            "INSERT INTO ref_balances (member_id, available) VALUES ($1, $2) "
            "ON CONFLICT (member_id) DO UPDATE SET available = ref_balances.available + "
            "EXCLUDED.available RETURNING available",
            body["member_id"],
            points if inserted else 0,
        )
    return Response(
        json.dumps({"order_id": body["order_id"], "points_earned": points, "available": available}),
        status_code=201,
        media_type="application/json",
    )


async def ready(request: Request) -> Response:
    return Response("{}", media_type="application/json")


app = Starlette(
    routes=[Route("/v1/orders", record_order, methods=["POST"]), Route("/ready", ready)],
    lifespan=lifespan,
)
