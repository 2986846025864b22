"""The set-based history import means what recording the same orders one by one means.

Random histories (a few members, two years, amounts that cross the ladder's thresholds,
items in a category a campaign doubles for a while, a first-order bonus, a fixed bonus
for a window, repeated and conflicting order ids, orders dated ahead of the clock) go
through ``points.imports.service.import_orders`` for one set of members and through the
checkout's locked path (``record_order_once``, one savepoint per order, in time order:
the import as it was) for a twin set. Every member's books must come out the same: the
orders and their stored answers, lots (with their pending and expiry dates), ledger
entries, balance, tier and the events in the outbox, in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from loyalty_shared.problems import ProblemError
from loyalty_shared.testing import Infra, migrated_database
from points.campaigns.schemas import CampaignIn
from points.campaigns.service import create as create_campaign
from points.checkout.record import record_order_once
from points.imports.service import BatchResult, import_orders
from points.members import service as members
from points.members.schemas import MemberIn
from points.orders.schemas import OrderIn
from points.settings import PointsSettings
from points.testing import SERVICE_DIR

NOW = datetime.now(UTC).replace(microsecond=0)
MEMBERS = 3


@dataclass
class World:
    runner: asyncio.Runner
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: PointsSettings


@pytest.fixture(scope="module")
async def imports_db(infra: Infra) -> str:
    """A database of its own: its campaigns change what every order earns."""
    return await migrated_database(infra, "points_imports", SERVICE_DIR)


@pytest.fixture
def world(imports_db: str, points_settings: PointsSettings) -> Iterator[World]:
    config = points_settings.model_copy(update={"database_url": imports_db})
    with asyncio.Runner() as runner:
        engine = runner.run(_engine(config))
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        runner.run(_campaigns(sessionmaker))
        try:
            yield World(runner, sessionmaker, config)
        finally:
            runner.run(engine.dispose())


async def _engine(config: PointsSettings) -> Any:
    return create_async_engine(config.sqlalchemy_url(), pool_size=2)


async def _campaigns(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    windows: dict[str, tuple[str, int, int, dict[str, Any]]] = {
        "imp-shoes-x2": (
            "category_multiplier",
            500,
            300,
            {"categories": ["shoes"], "multiplier": "2"},
        ),
        "imp-first": ("first_order_bonus", 800, -1, {"bonus_points": 100}),
        "imp-fixed": ("fixed_bonus", 200, 100, {"bonus_points": 30, "stacking": "exclusive"}),
    }
    async with sessionmaker() as session, session.begin():
        for campaign_id, (kind, from_days, to_days, extra) in windows.items():
            body = CampaignIn.model_validate(
                {
                    "campaign_id": campaign_id,
                    "name": campaign_id,
                    "kind": kind,
                    "starts_at": (NOW - timedelta(days=from_days)).isoformat(),
                    "ends_at": (NOW - timedelta(days=to_days)).isoformat(),
                    **extra,
                }
            )
            await create_campaign(session, body)


_row = st.fixed_dictionaries(
    {
        "member": st.integers(0, MEMBERS - 1),
        "days_ago": st.integers(-1, 730),  # -1: ahead of the clock, the row fails
        "amount": st.integers(1, 1500),
        "shoes": st.integers(0, 3),  # pairs of shoes among the items (0: no items)
        "repeat": st.sampled_from([None, None, None, "same", "other"]),
    }
)


def _orders(drawn: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The drawn rows as orders of ``prefix``'s members; a repeat reuses the previous
    row's order id (with the same body, or another amount)."""
    rows: list[dict[str, Any]] = []
    for i, d in enumerate(drawn):
        at = (
            NOW - timedelta(days=d["days_ago"], hours=i)
            if d["days_ago"] >= 0
            else NOW + timedelta(days=1)
        )
        order: dict[str, Any] = {
            "order_id": f"{prefix}-o{i}",
            "member_id": f"{prefix}-m{d['member']}",
            "amount": f"{d['amount']}.50",
            "occurred_at": at.isoformat(),
        }
        if d["shoes"]:
            order["items"] = [
                {"sku": "s1", "category": "shoes", "unit_price": "10.00", "quantity": d["shoes"]},
                {"sku": "h1", "category": "hats", "unit_price": "5.00", "quantity": 1},
            ]
        if rows and d["repeat"] == "same":
            order = dict(rows[-1])
        elif rows and d["repeat"] == "other":
            order = {**rows[-1], "amount": "1.00"}
        rows.append(order)
    return rows


async def _one_by_one(world: World, rows: list[dict[str, Any]]) -> BatchResult:
    """The import as it was: each row enrolled and recorded alone, in time order."""
    result = BatchResult()
    parsed = sorted(
        ((i, OrderIn.model_validate(r)) for i, r in enumerate(rows)),
        key=lambda item: (item[1].occurred_at, item[0]),
    )
    async with world.sessionmaker() as session, session.begin():
        for index, data in parsed:
            try:
                if data.occurred_at > NOW + timedelta(minutes=5):
                    raise ValueError("ahead")
                async with session.begin_nested():
                    await members.enrol(session, world.settings, MemberIn(member_id=data.member_id))
                    _, created = await record_order_once(session, world.settings, data, now=NOW)
            except (ProblemError, ValueError):
                result.fail(index, {})
                continue
            result.created += int(created)
            result.duplicates += int(not created)
    return result


async def _batch(world: World, rows: list[dict[str, Any]]) -> BatchResult:
    async with world.sessionmaker() as session, session.begin():
        return await import_orders(session, world.settings, rows, enrol_missing=True, now=NOW)


_BOOKS = {
    "orders": "SELECT order_id, amount, items, occurred_at, points_earned, growth_points, "
    "breakdown, response FROM orders WHERE member_id = :m ORDER BY occurred_at, order_id",
    "lots": "SELECT points, remaining, status, source_id, earned_at, available_at, expires_at "
    "FROM lots WHERE member_id = :m ORDER BY id",
    "entries": "SELECT entry_type, points, pending_delta, growth_delta, source_id, "
    "idempotency_key, occurred_at, details FROM ledger_entries WHERE member_id = :m ORDER BY id",
    "balance": "SELECT available, pending, debt, lifetime_earned, growth_value "
    "FROM balances WHERE member_id = :m",
    "tier": "SELECT tier FROM members WHERE member_id = :m",
    "events": "SELECT event_type, payload->'data' AS data FROM outbox WHERE key = :m "
    "AND event_type <> 'loyalty.member.enrolled.v1' ORDER BY id",
}


async def _books(world: World, prefix: str, member: int) -> dict[str, Any]:
    """Everything the member's orders wrote, with the prefix taken out of every id."""
    books: dict[str, Any] = {}
    async with world.sessionmaker() as session:
        for name, statement in _BOOKS.items():
            rows = (await session.execute(text(statement), {"m": f"{prefix}-m{member}"})).all()
            books[name] = [tuple(r) for r in rows]
    return dict(_without_prefix(books, prefix))


def _without_prefix(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value.replace(f"{prefix}-", "")
    if isinstance(value, dict):
        return {k: _without_prefix(v, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_prefix(v, prefix) for v in value]
    return value


@settings(
    max_examples=12,
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(drawn=st.lists(_row, min_size=1, max_size=24))
def test_the_batch_import_writes_what_one_by_one_writes(
    world: World, drawn: list[dict[str, Any]]
) -> None:
    run = uuid.uuid4().hex[:8]
    batch, single = f"b{run}", f"s{run}"
    got = world.runner.run(_batch(world, _orders(drawn, batch)))
    want = world.runner.run(_one_by_one(world, _orders(drawn, single)))
    assert (got.created, got.duplicates) == (want.created, want.duplicates)
    assert [f["index"] for f in got.failed] == sorted(f["index"] for f in want.failed)
    for member in range(MEMBERS):
        assert world.runner.run(_books(world, batch, member)) == world.runner.run(
            _books(world, single, member)
        )
