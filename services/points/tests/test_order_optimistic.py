"""The checkout's optimistic path: two statements, no transaction block, no lock held between.

``record_order_optimistic`` reads the member's facts unlocked, with the balance row's
version, and writes only if it can lock the row still at that version. These tests put a
change of the member between the read and the write (another order, an erasure) and check
that the write does nothing and the locked path then decides with the new facts; that the
rare cases (debt, referral) are left to the locked path untouched; and that a tier upgrade
is written by the same one statement, as the locked path writes it.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from loyalty_shared.db import FairGate
from loyalty_shared.settings import DEV_ERASURE_KEY
from points.checkout import record as service
from points.orders.schemas import OrderIn
from points.privacy.service import pseudonym
from points.testing import backdate_enrolment, enrol, import_history, order, outbox_events, sql


async def counts(db: str, member: str) -> dict[str, int]:
    row = (
        await sql(
            db,
            "SELECT (SELECT count(*) FROM orders WHERE member_id = :m) AS orders,"
            " (SELECT count(*) FROM ledger_entries WHERE member_id = :m) AS entries,"
            " (SELECT count(*) FROM lots WHERE member_id = :m) AS lots,"
            " (SELECT count(*) FROM outbox WHERE key = :m) AS events,"
            " (SELECT available + pending FROM balances WHERE member_id = :m) AS points",
            m=member,
        )
    )[0]
    return dict(row._mapping)


async def attempt(app: FastAPI, body: dict[str, Any]) -> Any:
    state = app.state
    outcome = await service.record_order_optimistic(
        state.engine, state.settings, OrderIn.model_validate(body), state.rules_cache
    )
    return outcome.out if isinstance(outcome, service.Written) else None  # else NeedsLock


def after_each_read(
    monkeypatch: pytest.MonkeyPatch, hook: Callable[[str], Awaitable[None]]
) -> None:
    """Run ``hook(member_id)`` each time the optimistic path has read a member's facts."""
    read = service.read_for_order

    async def read_then_hook(conn: Any, member_id: str, window_start: datetime) -> Any:
        facts = await read(conn, member_id, window_start)
        await hook(member_id)
        return facts

    monkeypatch.setattr(service, "read_for_order", read_then_hook)


def between_read_and_write(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], Awaitable[None]]
) -> None:
    """Run ``action`` (through another connection) after the attempt has read its facts."""
    pending = [action]

    async def once(_member_id: str) -> None:
        if pending:  # once: the action's own requests read normally
            await pending.pop()()

    after_each_read(monkeypatch, once)


async def test_a_plain_checkout_is_written_by_the_optimistic_path(
    points_client: httpx.AsyncClient, points_app: FastAPI, points_db: str
) -> None:
    member = await enrol(points_client)
    first = await points_client.post("/v1/orders", json=order(member, "10.00"))
    assert first.status_code == 201  # and the rules cache is warm
    body = order(member, "25.90")
    out = await attempt(points_app, body)
    assert out is not None
    assert out.points_earned == 25 and out.balance.available == 35
    assert await counts(points_db, member) == {
        "orders": 2,
        "entries": 2,
        "lots": 2,
        "events": 5,  # member.enrolled + 2 x (order.recorded, points.earned)
        "points": 35,
    }
    # the same order again: the optimistic path writes nothing; the API replays the answer
    assert await attempt(points_app, body) is None
    again = await points_client.post("/v1/orders", json=body)
    assert again.status_code == 201 and again.json() == out.model_dump(mode="json")
    assert (await counts(points_db, member))["entries"] == 2


async def test_an_order_committed_between_read_and_write_makes_the_attempt_write_nothing(
    points_client: httpx.AsyncClient,
    points_app: FastAPI,
    points_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = await enrol(points_client)
    assert (await points_client.post("/v1/orders", json=order(member, "1.00"))).status_code == 201
    before = await counts(points_db, member)

    async def another_order() -> None:
        answer = await points_client.post("/v1/orders", json=order(member, "40.00"))
        assert answer.status_code == 201

    between_read_and_write(monkeypatch, another_order)
    body = order(member, "7.00")
    assert await attempt(points_app, body) is None
    after = await counts(points_db, member)
    assert after["orders"] == before["orders"] + 1  # the other order only
    assert after["points"] == before["points"] + 40
    monkeypatch.undo()
    # the locked path records it, with the balance the other order left
    answer = await points_client.post("/v1/orders", json=body)
    assert answer.status_code == 201
    assert answer.json()["balance"]["available"] == 1 + 40 + 7


async def test_an_erasure_between_read_and_write_stops_the_order(
    points_client: httpx.AsyncClient,
    points_app: FastAPI,
    points_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = await enrol(points_client)
    assert (await points_client.post("/v1/orders", json=order(member, "3.00"))).status_code == 201

    async def erase() -> None:
        assert (await points_client.delete(f"/v1/members/{member}")).status_code == 202

    between_read_and_write(monkeypatch, erase)
    body = order(member, "9.00")
    assert await attempt(points_app, body) is None
    monkeypatch.undo()
    kept_as = pseudonym(DEV_ERASURE_KEY, member)  # the erased member's books
    assert (await counts(points_db, kept_as))["orders"] == 1
    answer = await points_client.post("/v1/orders", json=body)
    assert answer.status_code == 409 and answer.json()["type"].endswith("/member-erased")
    assert (await counts(points_db, kept_as))["orders"] == 1


async def test_rare_cases_are_left_to_the_locked_path(
    earning_client: httpx.AsyncClient, earning_app: FastAPI, earning_db: str
) -> None:
    # a referred member's first order (the referral credits both sides)
    referrer = await earning_client.post(
        "/v1/members", json={"member_id": f"m-{uuid.uuid4().hex[:12]}"}
    )
    referred = await enrol(earning_client, referral_code=referrer.json()["referral_code"])
    first = order(referred, "30.00")
    assert await attempt(earning_app, first) is None
    assert (await counts(earning_db, referred))["orders"] == 0
    assert (await earning_client.post("/v1/orders", json=first)).status_code == 201

    # a member in debt (a refund of points already spent): the credit repays it first
    debtor = await enrol(earning_client)
    bought = order(debtor, "100.00")
    assert (await earning_client.post("/v1/orders", json=bought)).status_code == 201
    spent = await earning_client.post(
        f"/v1/members/{debtor}/redemptions",
        json={"points": 100},
        headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert spent.status_code == 201, spent.text
    refund = await earning_client.post(
        f"/v1/orders/{bought['order_id']}/refunds",
        json={"refund_id": f"r-{uuid.uuid4().hex[:12]}", "amount": "100.00"},
    )
    assert refund.status_code == 201, refund.text
    repay = order(debtor, "50.00")
    assert await attempt(earning_app, repay) is None
    repaid = await earning_client.post("/v1/orders", json=repay)
    assert repaid.status_code == 201 and repaid.json()["balance"]["available"] == -50

    # an unknown member: the locked path answers 422
    assert await attempt(earning_app, order(f"m-{uuid.uuid4().hex[:12]}", "1.00")) is None


async def test_an_order_older_than_the_cached_campaigns_reads_them_in_the_locked_path(
    points_client: httpx.AsyncClient, points_app: FastAPI
) -> None:
    member = await enrol(points_client)
    assert (await points_client.post("/v1/orders", json=order(member, "5.00"))).status_code == 201
    old = order(member, "5.00", at=datetime(2024, 1, 1, tzinfo=UTC))
    assert await attempt(points_app, old) is None
    await import_history(points_client, old)  # the route such an order comes by


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The member ids the optimistic path read facts for (one entry per read)."""
    seen: list[str] = []

    async def note(member_id: str) -> None:
        seen.append(member_id)

    after_each_read(monkeypatch, note)
    return seen


async def test_the_next_checkout_of_a_member_writes_with_what_the_last_one_left(
    points_client: httpx.AsyncClient, points_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await enrol(points_client)
    reads = count_reads(monkeypatch)
    for amount, available in (("10.00", 10), ("5.50", 15), ("0.40", 15), ("2.00", 17)):
        answer = await points_client.post("/v1/orders", json=order(member, amount))
        assert answer.status_code == 201
        assert answer.json()["balance"]["available"] == available
    assert reads == [member]  # the first order read; the next three wrote in one statement
    # a change through another path (a redemption) moves the row's version: the next
    # checkout finds its remembered facts out of date, reads, and counts from the new balance
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions",
        json={"points": 7},
        headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert spent.status_code == 201, spent.text
    answer = await points_client.post("/v1/orders", json=order(member, "3.00"))
    assert answer.json()["balance"]["available"] == 17 - 7 + 3
    assert reads == [member, member]
    assert (await counts(points_db, member))["points"] == 13


async def test_remembered_growth_is_not_used_across_an_entry_that_left_the_window(
    earning_client: httpx.AsyncClient, earning_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ladder = (await earning_client.get("/v1/tiers")).json()
    window = timedelta(days=ladder["rolling_window_days"])
    now = datetime.now(UTC).replace(microsecond=0)
    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 1)
    # an old order still inside the window of an order two hours ago, not of one now
    old = order(member, "300.00", at=now - window - timedelta(minutes=30))
    await import_history(earning_client, old)
    reads = count_reads(monkeypatch)
    earlier = order(member, "20.00", at=now - timedelta(hours=2))
    assert (await earning_client.post("/v1/orders", json=earlier)).status_code == 201
    assert reads == [member]
    latest = await earning_client.post("/v1/orders", json=order(member, "4.00", at=now))
    assert latest.status_code == 201
    assert reads == [member, member]  # the remembered growth counted the old order: read
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["growth_value"] == 24  # the old order's 300 is out of today's window


async def test_a_burst_for_one_member_is_recorded_in_batches_each_order_once(
    points_client: httpx.AsyncClient,
    points_app: FastAPI,
    points_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = await enrol(points_client)
    known = order(member, "5.00")
    assert (await points_client.post("/v1/orders", json=known)).status_code == 201
    checkouts = points_app.state.checkouts
    batch_sizes: list[int] = []
    run_batch = checkouts._run_batch

    async def counted(bodies: list[OrderIn]) -> Any:
        batch_sizes.append(len(bodies))
        return await run_batch(bodies)

    monkeypatch.setattr(checkouts, "_run_batch", counted)
    burst = [order(member, f"{n}.00") for n in range(1, 21)]
    conflicting = {**known, "amount": "6.00"}  # a known order id with another body: 409
    sent = [*burst[:10], conflicting, burst[3], *burst[10:]]  # and an exact retry of one
    answers = await asyncio.gather(*(points_client.post("/v1/orders", json=o) for o in sent))
    assert [a.status_code for a in answers] == [201] * 10 + [409] + [201] * 11
    assert answers[11].json() == answers[3].json()  # the retry got the first answer
    assert batch_sizes and max(batch_sizes) > 1  # they did queue and go in batches
    expected = 5 + sum(range(1, 21))
    assert await counts(points_db, member) == {
        "orders": 21,
        "entries": 21,
        "lots": 21,
        "events": 1 + 2 * 21,
        "points": expected,
    }
    # each answer's balance is the running balance after its own order, once each
    balances = sorted(
        a.json()["balance"]["available"] for i, a in enumerate(answers) if i not in (10, 11)
    )
    assert balances[-1] == expected
    assert len(set(balances)) == 20


def test_the_facts_cache_is_bounded_in_members_and_age_and_can_be_off() -> None:
    from points.checkout.facts_cache import OrderFactsCache, RememberedFacts
    from points.ledger.service import LockedBalance

    def facts(stored: float) -> RememberedFacts:
        balance = LockedBalance("m", 0, 0, 0, 0, 0, "regular")
        return RememberedFacts(balance, "1", datetime.now(UTC), 0, 0, stored)

    now = time.monotonic()
    cache = OrderFactsCache(max_members=2, max_age_seconds=60)
    for member in ("a", "b", "c"):
        cache.remember(member, facts(now))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is not None
    cache.remember("old", facts(now - 61))
    assert cache.get("old") is None
    off = OrderFactsCache(max_members=0)
    off.remember("a", facts(now))
    assert len(off) == 0 and off.get("a") is None


async def test_an_erasure_that_commits_while_the_write_waits_for_the_lock_stops_it(
    points_client: httpx.AsyncClient,
    points_app: FastAPI,
    points_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write's snapshot still shows the member live; the balance row's version doesn't."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from points.privacy import service as privacy

    member = await enrol(points_client)
    assert (await points_client.post("/v1/orders", json=order(member, "3.00"))).status_code == 201
    read_done, erase_holds_lock = asyncio.Event(), asyncio.Event()

    async def wait_for_the_erasure(_member_id: str) -> None:
        read_done.set()
        await erase_holds_lock.wait()

    after_each_read(monkeypatch, wait_for_the_erasure)
    attempt_task = asyncio.create_task(attempt(points_app, order(member, "9.00")))
    await read_done.wait()
    sessions = async_sessionmaker(points_app.state.engine)
    async with sessions() as session, session.begin():
        await privacy.erase(session, member, key=DEV_ERASURE_KEY)  # holds the row lock until commit
        erase_holds_lock.set()
        await asyncio.sleep(0.3)  # the write starts, and waits for the lock
        assert not attempt_task.done()
    assert await attempt_task is None
    assert (await counts(points_db, pseudonym(DEV_ERASURE_KEY, member)))["orders"] == 1


async def test_a_checkout_left_to_the_locked_path_takes_one_pool_slot_and_no_second_read(
    earning_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await enrol(earning_client)
    assert (await earning_client.post("/v1/orders", json=order(member, "5.00"))).status_code == 201
    reads = count_reads(monkeypatch)
    slots: list[int] = []
    acquire = FairGate.acquire

    async def counted(self: FairGate) -> None:
        slots.append(1)
        await acquire(self)

    monkeypatch.setattr(FairGate, "acquire", counted)
    # an order id already known (a storefront's retry): the write fails at the order's
    # key and the locked path replays the answer at once, on the same slot, with no read
    retry = order(member, "7.00")
    first = await earning_client.post("/v1/orders", json=retry)
    assert first.status_code == 201 and len(slots) == 1
    slots.clear()
    answer = await earning_client.post("/v1/orders", json=retry)
    assert answer.status_code == 201 and answer.json() == first.json()
    assert reads == []
    assert len(slots) == 1


def count_locked_checkouts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order ids the locked path recorded (one entry per call)."""
    seen: list[str] = []
    record = service.record_order

    async def note(session: Any, settings: Any, data: OrderIn, **kwargs: Any) -> Any:
        seen.append(data.order_id)
        return await record(session, settings, data, **kwargs)

    monkeypatch.setattr(service, "record_order", note)
    return seen


async def test_an_upgrade_is_written_by_the_one_statement_and_the_new_tier_remembered(
    earning_client: httpx.AsyncClient, earning_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await enrol(earning_client)
    assert (await earning_client.post("/v1/orders", json=order(member, "5.00"))).status_code == 201
    reads = count_reads(monkeypatch)
    locked = count_locked_checkouts(monkeypatch)
    # crosses silver (2,000) from what the last checkout left: one statement, no read
    big = await earning_client.post("/v1/orders", json=order(member, "2100.00"))
    assert big.status_code == 201, big.text
    out = big.json()
    assert out["tier_changed"] is True and out["tier"] == "silver"
    assert out["points_earned"] == 2100  # at the tier held when the order came
    # the next checkout writes with the remembered facts, at the new tier's multiplier
    after = await earning_client.post("/v1/orders", json=order(member, "100.00"))
    assert after.json()["points_earned"] == 120 and after.json()["tier"] == "silver"
    assert after.json()["tier_changed"] is False
    assert reads == [] and locked == []
    tier = await sql(earning_db, "SELECT tier FROM members WHERE member_id = :m", m=member)
    assert tier[0][0] == "silver"
    events = await outbox_events(earning_db, member)
    assert [t.split(".")[1] + "." + t.split(".")[2] for t, _ in events] == [
        "member.enrolled",
        *["order.recorded", "points.earned"] * 2,
        "tier.changed",
        "order.recorded",
        "points.earned",
    ]
    assert events[5][1]["data"] == {
        "member_id": member,
        "from_tier": "regular",
        "to_tier": "silver",
        "direction": "up",
        "reason": "order",
        "growth_value": 2105,
        "occurred_at": events[5][1]["data"]["occurred_at"],
    }
    assert (await counts(earning_db, member))["points"] == 5 + 2100 + 120
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    # growth counts the orders' base points, not the tier's bonus (the default ladder)
    assert status["tier"] == "silver" and status["growth_value"] == 2105 + 100


async def test_an_upgrade_writes_the_same_rows_and_events_on_either_path(
    earning_client: httpx.AsyncClient, earning_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    locked = count_locked_checkouts(monkeypatch)
    written: list[Any] = []
    for key in (None, f"k-{uuid.uuid4().hex}"):  # an Idempotency-Key takes the locked path
        member = await enrol(earning_client)
        headers = {"Idempotency-Key": key} if key else {}
        answer = await earning_client.post(
            "/v1/orders", json=order(member, "2500.00", at=at), headers=headers
        )
        assert answer.status_code == 201 and answer.json()["tier"] == "silver"
        ids = ("member_id", "order_id", "source_id")
        events = [
            (t, {k: v for k, v in p["data"].items() if k not in ids})
            for t, p in await outbox_events(earning_db, member)
            if t != "loyalty.member.enrolled.v1"
        ]
        rows = await sql(
            earning_db,
            "SELECT m.tier, b.available, b.pending, b.lifetime_earned, b.growth_value,"
            " (SELECT count(*) FROM ledger_entries e WHERE e.member_id = m.member_id)"
            " FROM members m JOIN balances b USING (member_id) WHERE m.member_id = :m",
            m=member,
        )
        written.append((tuple(rows[0]), events))
    assert len(locked) == 1  # the second member's order
    assert written[0] == written[1]
    assert written[0][0][0] == "silver" and len(written[0][1]) == 3
