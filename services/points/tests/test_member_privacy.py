"""Erasure (DELETE /v1/members/{id}) and export (GET /v1/members/{id}/export)."""

import httpx

from points.testing import enrol, order, outbox_events, sql


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
            m=member,
        )
    )[0]
    assert tuple(row) == (None, None, None, None, 88, None)
    erasures = [t for t, _ in await outbox_events(points_db, member) if t.endswith("erased.v1")]
    assert erasures == ["loyalty.member.erased.v1"]
    late = await points_client.post("/v1/orders", json=order(member, "5"))
    assert late.status_code == 422


async def test_erasing_an_unknown_member_is_404(points_client: httpx.AsyncClient) -> None:
    assert (await points_client.delete("/v1/members/nobody-here-123")).status_code == 404
