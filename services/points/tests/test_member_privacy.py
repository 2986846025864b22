"""Erasure (DELETE /v1/members/{id}) and export (GET /v1/members/{id}/export)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from loyalty_shared.settings import DEV_ERASURE_KEY
from points.privacy.service import pseudonym
from points.testing import enrol, order, outbox_events, sql


# the tests' settings use the dev/test erasure key
def _kept_as(member: str) -> str:
    return pseudonym(DEV_ERASURE_KEY, member)


async def _rows_under(points_db: str, member_id: str) -> dict[str, int]:
    """How many rows of each member-keyed table hold this member id."""
    counts = {}
    for table in (
        "members",
        "balances",
        "lots",
        "ledger_entries",
        "orders",
        "redemptions",
        "refunds",
        "check_ins",
        "interactions",
        "outbox",
    ):
        column = "key" if table == "outbox" else "member_id"
        rows = await sql(
            points_db, f"SELECT count(*) FROM {table} WHERE {column} = :m", m=member_id
        )
        counts[table] = int(rows[0][0])
    return counts


async def test_export_has_everything_then_erasure_keeps_only_the_amounts(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(
        points_client,
        name="Li Lei",
        email="li@example.com",
        phone="+86 138 0000 0000",
        birthday="1990-05-04",
    )
    placed = await points_client.post("/v1/orders", json=order(member, "88", coupon_used="C1"))
    assert placed.status_code == 201
    export = await points_client.get(f"/v1/members/{member}/export")
    assert export.status_code == 200, export.text
    body = export.json()
    assert body["member"]["email"] == "li@example.com"
    assert body["member"]["birthday"] == "1990-05-04"
    assert [o["points_earned"] for o in body["orders"]] == [88]
    assert sum(e["points"] for e in body["ledger"]) == body["balance"]["available"] == 88

    erased = await points_client.delete(f"/v1/members/{member}")
    assert erased.status_code == 202, erased.text
    again = await points_client.delete(f"/v1/members/{member}")
    assert again.status_code == 202 and again.json() == erased.json()

    assert (await points_client.get(f"/v1/members/{member}")).status_code == 404
    assert (await points_client.get(f"/v1/members/{member}/export")).status_code == 404
    row = (
        await sql(
            points_db,
            "SELECT m.name, m.email, m.phone, m.birthday, b.available, o.coupon_used"
            " FROM members m JOIN balances b USING (member_id) JOIN orders o USING (member_id)"
            " WHERE m.member_id = :m",
            m=_kept_as(member),
        )
    )[0]
    assert tuple(row) == (None, None, None, None, 88, None)  # the amounts, under a pseudonym
    # the id itself is nowhere but in the erasure event that tells the other services
    ((kind, envelope),) = await outbox_events(points_db, member)
    assert kind == "loyalty.member.erased.v1"
    assert set(envelope["data"]) == {"member_id", "erased_at"}
    left = await _rows_under(points_db, member)
    assert left == {**dict.fromkeys(left, 0), "outbox": 1}, left
    late = await points_client.post("/v1/orders", json=order(member, "5"))
    assert late.status_code == 409 and _slug(late) == "member-erased"


async def test_erasing_an_unknown_member_is_404(points_client: httpx.AsyncClient) -> None:
    assert (await points_client.delete("/v1/members/nobody-here-123")).status_code == 404


def _slug(response: httpx.Response) -> str:
    return str(response.json()["type"]).rsplit("/", 1)[-1]


async def test_an_erased_member_can_no_longer_earn_spend_or_be_adjusted(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(points_client)
    placed = await points_client.post("/v1/orders", json=order(member, "100"))
    assert placed.status_code == 201, placed.text
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions",
        json={"points": 10},
        headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert spent.status_code == 201, spent.text
    redemption = spent.json()["redemption_id"]
    assert (await points_client.delete(f"/v1/members/{member}")).status_code == 202

    async def written() -> tuple[Any, ...]:
        rows = await sql(
            points_db,
            "SELECT (SELECT count(*) FROM ledger_entries WHERE member_id = :m),"
            " (SELECT available FROM balances WHERE member_id = :m),"
            " (SELECT count(*) FROM outbox WHERE key = :m),"
            " (SELECT count(*) FROM check_ins WHERE member_id = :m),"
            " (SELECT count(*) FROM interactions WHERE member_id = :m),"
            " (SELECT count(*) FROM orders WHERE member_id = :m),"
            " (SELECT count(*) FROM redemptions WHERE member_id = :m AND status = 'cancelled')",
            m=_kept_as(member),
        )
        return tuple(rows[0])

    before = await written()
    assert before[1] == 90

    def key() -> dict[str, str]:
        return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}

    # every write that names the member says why it fails, and writes nothing
    interaction = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "member_id": member,
        "type": "review",
        "occurred_at": datetime.now(UTC).isoformat(),
        "attributes": {},
    }
    refused = {
        "redemption": await points_client.post(
            f"/v1/members/{member}/redemptions", json={"points": 10}, headers=key()
        ),
        "adjustment": await points_client.post(
            f"/v1/members/{member}/adjustments",
            json={"points": 50, "reason": "goodwill"},
            headers={**key(), "X-Operator-Id": "op-1"},
        ),
        "check-in": await points_client.post(f"/v1/members/{member}/check-ins", json={}),
        "cancel": await points_client.post(f"/v1/redemptions/{redemption}/cancel"),
        "interaction": await points_client.post("/v1/interactions", json=interaction),
        "order": await points_client.post("/v1/orders", json=order(member, "50")),
    }
    for what, response in refused.items():
        assert response.status_code == 409, (what, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert _slug(response) == "member-erased", (what, response.text)

    assert await written() == before  # nothing written by any of them


async def test_a_refund_of_an_order_placed_before_the_erasure_still_reverses_its_points(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(points_client)
    placed = order(member, "100")
    assert (await points_client.post("/v1/orders", json=placed)).status_code == 201
    assert (await points_client.delete(f"/v1/members/{member}")).status_code == 202
    refund = await points_client.post(
        f"/v1/orders/{placed['order_id']}/refunds",
        json={"refund_id": f"r-{uuid.uuid4().hex}", "amount": "100"},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["points_reversed"] == 100
    rows = await sql(
        points_db, "SELECT available FROM balances WHERE member_id = :m", m=_kept_as(member)
    )
    assert rows[0][0] == 0
    # the pseudonymous books moved; no event about them went out
    assert [t for t, _ in await outbox_events(points_db, _kept_as(member))] == []


async def test_an_erased_id_is_not_enrolled_again_and_its_ledger_is_gone(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(points_client, name="Han Meimei")
    assert (await points_client.post("/v1/orders", json=order(member, "20"))).status_code == 201
    assert (await points_client.get(f"/v1/members/{member}/ledger")).status_code == 200
    assert (await points_client.delete(f"/v1/members/{member}")).status_code == 202

    ledger = await points_client.get(f"/v1/members/{member}/ledger")
    assert ledger.status_code == 404 and _slug(ledger) == "member-not-found"
    again = await points_client.post("/v1/members", json={"member_id": member, "name": "Someone"})
    assert again.status_code == 409, again.text
    assert _slug(again) == "member-erased"
    assert again.json()["errors"][0]["field"] == "body.member_id"
    row = (
        await sql(
            points_db,
            "SELECT name, erased_at FROM members WHERE member_id = :m",
            m=_kept_as(member),
        )
    )[0]
    assert row.name is None and row.erased_at is not None  # nothing written
    assert (await _rows_under(points_db, member))["members"] == 0


async def test_a_new_member_starts_in_the_entry_tier_with_its_evaluation_scheduled(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(points_client)
    row = (
        await sql(
            points_db,
            "SELECT tier, enrolled_at, next_evaluation_at FROM members WHERE member_id = :m",
            m=member,
        )
    )[0]
    assert row.tier == "regular"  # the default ladder's first tier
    # the default policy evaluates on the membership anniversary
    assert row.next_evaluation_at.year == row.enrolled_at.year + 1
    assert (row.next_evaluation_at.month, row.next_evaluation_at.day) == (
        row.enrolled_at.month,
        row.enrolled_at.day,
    )
