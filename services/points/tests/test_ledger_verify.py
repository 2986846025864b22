"""Ledger reconciliation: every balance recomputed from the entries and lots, drift reported
(member, field, expected, actual) by ``GET /v1/ops/ledger/verify`` and by
``loyalty-points verify-ledger``, on a database of its own."""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.main import create_app
from points.reconciliation.cli import describe
from points.reconciliation.schemas import LedgerReport
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, enrol, import_history, order, sql


@pytest.fixture(scope="module")
async def verify_db(infra: Infra) -> str:
    return await migrated_database(infra, "points_verify", SERVICE_DIR)


@pytest.fixture(scope="module")
async def client(infra: Infra, verify_db: str) -> AsyncIterator[httpx.AsyncClient]:
    # a return window, so that the ledger holds pending lots as well
    settings = PointsSettings(**settings_overrides(infra, verify_db), pending_days=7)
    app = create_app(settings)
    async with running_app(app), asgi_client(app) as c:
        yield c


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}", "X-Operator-Id": "op-test"}


async def busy_member(client: httpx.AsyncClient) -> str:
    """A member with every kind of entry: pending and spendable lots, a refund turned into a
    debt and repaid, a redemption and its cancel, adjustments, a check-in."""
    member = await enrol(client)
    await import_history(client, order(member, "120.00", at=datetime.now(UTC) - timedelta(days=30)))
    recent = order(member, "80.00")
    assert (await client.post("/v1/orders", json=recent)).status_code == 201
    spent = await client.post(
        f"/v1/members/{member}/redemptions", json={"points": 100}, headers=key()
    )
    assert spent.status_code == 201, spent.text
    cancelled = await client.post(f"/v1/redemptions/{spent.json()['redemption_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    everything = await client.post(
        f"/v1/members/{member}/redemptions", json={"points": 120}, headers=key()
    )
    assert everything.status_code == 201, everything.text
    refund = {"refund_id": f"r-{uuid.uuid4().hex[:8]}", "amount": "60.00"}  # a debt of 60
    history = (await client.get(f"/v1/members/{member}/ledger")).json()["items"]
    old_order = next(e["source_id"] for e in history if e["type"] == "earn")
    assert (await client.post(f"/v1/orders/{old_order}/refunds", json=refund)).status_code == 201
    for points in (100, -5):  # the debt repaid first, then spent from
        adjusted = await client.post(
            f"/v1/members/{member}/adjustments",
            json={"points": points, "reason": "test"},
            headers=key(),
        )
        assert adjusted.status_code == 201, adjusted.text
    assert (await client.post(f"/v1/members/{member}/check-ins")).status_code in (201, 202)
    return member


async def report(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/ops/ledger/verify", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def cli(db: str, *args: str) -> tuple[int, str]:
    """``loyalty-points verify-ledger`` as ops run it (its own process, settings from env)."""
    import subprocess

    env = {**os.environ, "POINTS_DATABASE_URL": db, "POINTS_ENVIRONMENT": "test"}
    done = subprocess.run(
        [sys.executable, "-m", "points", "verify-ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout


async def test_a_balanced_ledger_reports_no_drift(
    client: httpx.AsyncClient, verify_db: str
) -> None:
    members = [await busy_member(client) for _ in range(2)]
    found = await report(client)
    assert found["drift"] == [] and found["drift_count"] == 0
    assert found["members"] >= len(members) and found["lots"] >= 4 * len(members)
    status, out = await asyncio.to_thread(cli, verify_db)
    assert status == 0, out
    assert "the ledger balances" in out


async def test_drift_is_reported_by_member_field_expected_and_actual(
    client: httpx.AsyncClient, verify_db: str
) -> None:
    first, second = await busy_member(client), await busy_member(client)
    balance = (await sql(verify_db, "SELECT * FROM balances WHERE member_id = :m", m=first))[0]
    # a balance written by hand, and an entry written without its balance and lot
    await sql(
        verify_db,
        "UPDATE balances SET available = available + 7, lifetime_earned = lifetime_earned + 5"
        " WHERE member_id = :m",
        m=first,
    )
    other = (await sql(verify_db, "SELECT * FROM balances WHERE member_id = :m", m=second))[0]
    lot = (
        await sql(
            verify_db,
            "SELECT id, remaining FROM lots WHERE member_id = :m AND remaining > 0"
            " AND status = 'available' ORDER BY id LIMIT 1",
            m=second,
        )
    )[0]
    await sql(verify_db, "UPDATE lots SET remaining = remaining - 1 WHERE id = :l", l=lot.id)

    found = await report(client)
    mine = [d for d in found["drift"] if d["member_id"] in (first, second)]
    assert {
        (d["member_id"], d["field"], d["expected"], d["actual"], d["lot_id"]) for d in mine
    } == {
        (first, "available", balance.available, balance.available + 7, None),
        (first, "spendable_lots", balance.available, balance.available + 7, None),
        (first, "lifetime_earned", balance.lifetime_earned, balance.lifetime_earned + 5, None),
        (second, "lot_remaining", lot.remaining, lot.remaining - 1, lot.id),
        (second, "spendable_lots", other.available - 1, other.available, None),
    }
    assert found["drift_count"] == len(found["drift"])

    listed = await report(client, limit=1)
    assert len(listed["drift"]) == 1 and listed["drift_count"] == found["drift_count"]
    status, out = await asyncio.to_thread(cli, verify_db, "--json")
    assert status == 1
    assert json.loads(out)["drift_count"] == found["drift_count"]
    lines = describe(LedgerReport.model_validate(found))
    assert f"{first}: available expected {balance.available}, actual" in "\n".join(lines)
    assert f"{second} lot {lot.id}: lot_remaining expected {lot.remaining}" in "\n".join(lines)

    # put it back: the ledger balances again
    await sql(
        verify_db,
        "UPDATE balances SET available = available - 7, lifetime_earned = lifetime_earned - 5"
        " WHERE member_id = :m",
        m=first,
    )
    await sql(verify_db, "UPDATE lots SET remaining = remaining + 1 WHERE id = :l", l=lot.id)
    assert (await report(client))["drift_count"] == 0
