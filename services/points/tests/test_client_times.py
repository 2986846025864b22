"""Times a caller gives are bounded (docs/security.md, "Client-given times"): never before the
member's enrolment, never older than the real-time window, never ahead of the service's clock
by more than the allowed skew; a member token never chooses one. History goes through
POST /v1/orders/batch, whose semantics stay as they were."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from points.settings import PointsSettings
from points.testing import backdate_enrolment, enrol, oid, order, outbox_events, replica

MEMBER_CALLER = {"x-caller-scope": "member"}


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def interaction(member: str, occurred_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "type": "review",
        "occurred_at": occurred_at,
        **extra,
    }


def refused(response: httpx.Response, field: str = "body.occurred_at") -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field], body
    return str(body["errors"][0]["type"])


async def available(client: httpx.AsyncClient, member: str) -> int:
    return int((await client.get(f"/v1/members/{member}")).json()["balance"]["available"])


async def test_check_in_times_are_bounded(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 10)
    url = f"/v1/members/{member}/check-ins"
    assert refused(await earning_client.post(url, json={"occurred_at": ago(hours=49)})) == (
        "too_old"
    )
    assert refused(await earning_client.post(url, json={"occurred_at": ahead(minutes=6)})) == (
        "in_the_future"
    )
    assert await available(earning_client, member) == 0
    inside = await earning_client.post(url, json={"occurred_at": ago(minutes=1)})
    assert inside.status_code == 201, inside.text


async def test_no_time_before_the_enrolment(earning_client: httpx.AsyncClient) -> None:
    member = await enrol(earning_client)  # enrolled now
    url = f"/v1/members/{member}/check-ins"
    before = await earning_client.post(url, json={"occurred_at": ago(hours=2)})
    assert refused(before) == "before_enrolment"
    assert refused(
        await earning_client.post("/v1/interactions", json=interaction(member, ago(hours=2)))
    ) == ("before_enrolment")
    early = order(member, "50.00", at=datetime.now(UTC) - timedelta(hours=2))
    assert refused(await earning_client.post("/v1/orders", json=early)) == "before_enrolment"
    # a client's clock a little behind the service's is not "before the enrolment"
    skewed = order(member, "10.00", at=datetime.now(UTC) - timedelta(minutes=2))
    assert (await earning_client.post("/v1/orders", json=skewed)).status_code == 201
    assert await available(earning_client, member) == 10


async def test_a_member_token_never_chooses_the_time(earning_client: httpx.AsyncClient) -> None:
    member = await enrol(earning_client)
    url = f"/v1/members/{member}/check-ins"
    now = datetime.now(UTC).isoformat()
    chosen = await earning_client.post(url, json={"occurred_at": now}, headers=MEMBER_CALLER)
    assert refused(chosen) == "not_allowed_for_member"
    assert await available(earning_client, member) == 0
    plain = await earning_client.post(url, headers=MEMBER_CALLER)
    assert plain.status_code == 201, plain.text


async def test_interaction_times_are_bounded_and_write_nothing(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 400)
    for at, kind in ((ago(days=300), "too_old"), (ahead(hours=1), "in_the_future")):
        answer = await earning_client.post("/v1/interactions", json=interaction(member, at))
        assert refused(answer) == kind
    assert await available(earning_client, member) == 0
    recorded = [kind for kind, _ in await outbox_events(earning_db, member)]
    assert recorded == ["loyalty.member.enrolled.v1"]


async def test_real_time_orders_are_bounded_but_the_history_import_is_not(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 30)
    old = order(member, "40.00", at=datetime.now(UTC) - timedelta(days=3))
    answer = await earning_client.post("/v1/orders", json=old)
    assert refused(answer) == "too_old"
    assert "POST /v1/orders/batch" in answer.json()["errors"][0]["message"]
    future = order(member, "40.00", at=datetime.now(UTC) + timedelta(minutes=10))
    assert refused(await earning_client.post("/v1/orders", json=future)) == "in_the_future"
    keyed = await earning_client.post(
        "/v1/orders", json=old, headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    )
    assert refused(keyed) == "too_old"
    assert await available(earning_client, member) == 0

    imported = await earning_client.post("/v1/orders/batch", json={"orders": [old]})
    assert imported.status_code == 200 and imported.json()["created"] == 1, imported.text
    ahead_in_batch = {**old, "order_id": oid(), "occurred_at": ahead(hours=1)}
    refused_row = await earning_client.post("/v1/orders/batch", json={"orders": [ahead_in_batch]})
    [failure] = refused_row.json()["failed"]
    assert [e["field"] for e in failure["problem"]["errors"]] == ["body.orders.0.occurred_at"]
    assert await available(earning_client, member) == 40


async def test_refund_times_are_bounded(earning_client: httpx.AsyncClient) -> None:
    member = await enrol(earning_client)
    placed = order(member, "100.00", at=datetime.now(UTC) - timedelta(minutes=1))
    assert (await earning_client.post("/v1/orders", json=placed)).status_code == 201
    url = f"/v1/orders/{placed['order_id']}/refunds"

    def refund(at: str) -> dict[str, Any]:
        return {"refund_id": f"r-{uuid.uuid4().hex[:10]}", "amount": "10.00", "occurred_at": at}

    assert refused(await earning_client.post(url, json=refund(ago(hours=1)))) == "before_order"
    assert refused(await earning_client.post(url, json=refund(ahead(hours=1)))) == ("in_the_future")
    assert await available(earning_client, member) == 100
    done = await earning_client.post(url, json=refund(datetime.now(UTC).isoformat()))
    assert done.status_code == 201, done.text


@pytest.fixture
async def wide_window(earning_settings: PointsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The same service configured with a 30-day window and a 1-second skew."""
    settings = earning_settings.model_copy(
        update={"client_time_window_hours": 24 * 30, "client_time_skew_seconds": 1}
    )
    async with replica(settings) as client:
        yield client


async def test_the_window_and_the_skew_are_settings(
    wide_window: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(wide_window)
    await backdate_enrolment(earning_db, member, 60)
    week_old = order(member, "20.00", at=datetime.now(UTC) - timedelta(days=7))
    assert (await wide_window.post("/v1/orders", json=week_old)).status_code == 201
    month_old = order(member, "20.00", at=datetime.now(UTC) - timedelta(days=31))
    assert refused(await wide_window.post("/v1/orders", json=month_old)) == "too_old"
    soon = order(member, "20.00", at=datetime.now(UTC) + timedelta(seconds=30))
    assert refused(await wide_window.post("/v1/orders", json=soon)) == "in_the_future"
