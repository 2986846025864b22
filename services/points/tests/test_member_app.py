"""What points answers a member token (X-Caller-Scope: member, X-Member-Id from the gateway):
the member's catalogue, and cancelling only its own redemption."""

import uuid
from typing import Any

import httpx

from loyalty_shared.problems import FORBIDDEN_DETAIL, problem_type


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def as_member(member: str | None) -> dict[str, str]:
    headers = {"X-Caller-Scope": "member", "Idempotency-Key": uid("k")}
    if member is not None:
        headers["X-Member-Id"] = member
    return headers


OPS = {"X-Caller-Scope": "ops", "X-Operator-Id": "op-alice"}


async def _member_with_points(client: httpx.AsyncClient, reward_id: str) -> tuple[str, str]:
    """A member with 1,000 points who redeemed ``reward_id`` once: (member, redemption id)."""
    member = uid("m")
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    added = await client.post(
        f"/v1/members/{member}/adjustments",
        json={"points": 1000, "reason": "welcome gift"},
        headers={**OPS, "Idempotency-Key": uid("k")},
    )
    assert added.status_code == 201, added.text
    redeemed = await client.post(
        f"/v1/members/{member}/redemptions",
        json={"reward_id": reward_id},
        headers=as_member(member),
    )
    assert redeemed.status_code == 201, redeemed.text
    return member, redeemed.json()["redemption_id"]


async def _reward(client: httpx.AsyncClient, **overrides: Any) -> str:
    body = {"reward_id": uid("r"), "name": "Mug", "kind": "product", "points_cost": 100}
    created = await client.post("/v1/rewards", json={**body, **overrides})
    assert created.status_code == 201, created.text
    return str(body["reward_id"])


async def test_a_member_cancels_only_its_own_redemption(points_client: httpx.AsyncClient) -> None:
    reward = await _reward(points_client, stock=10)
    mine, my_redemption = await _member_with_points(points_client, reward)
    theirs, their_redemption = await _member_with_points(points_client, reward)
    refusals = [
        await points_client.post(f"/v1/redemptions/{rid}/cancel", headers=as_member(who))
        for rid, who in (
            (their_redemption, mine),  # another member's
            (f"rd-{uuid.uuid4().hex}", mine),  # none such
            (my_redemption, None),  # a member token without a member
        )
    ]
    for refused in refusals:
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == {
            "type": problem_type("forbidden"),
            "title": "Forbidden",
            "status": 403,
            "detail": FORBIDDEN_DETAIL,
        }
    own = await points_client.post(
        f"/v1/redemptions/{my_redemption}/cancel", headers=as_member(mine)
    )
    assert own.status_code == 200, own.text
    assert own.json()["member_id"] == mine and own.json()["points_returned"] == 100
    # the other member's redemption was untouched: their points are still spent
    status = (await points_client.get(f"/v1/members/{theirs}")).json()
    assert status["balance"]["available"] == 900
    # staff cancel it (and get their 404 for one that does not exist)
    assert (
        await points_client.post(f"/v1/redemptions/{their_redemption}/cancel", headers=OPS)
    ).status_code == 200
    missing = await points_client.post(f"/v1/redemptions/rd-{uuid.uuid4().hex}/cancel", headers=OPS)
    assert missing.status_code == 404


async def test_the_catalogue_a_member_token_reads(points_client: httpx.AsyncClient) -> None:
    shown = await _reward(points_client, stock=3, description="Blue")
    sold_out = await _reward(points_client, stock=0)
    unlimited = await _reward(points_client)
    hidden = await _reward(points_client, active=False)
    member = as_member(uid("m"))
    seen: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = await points_client.get(
            "/v1/rewards",
            params={"limit": 200, **({"after": after} if after else {})},
            headers=member,
        )
        assert page.status_code == 200, page.text
        seen |= {item["reward_id"]: item for item in page.json()["items"]}
        if (after := page.json()["next_cursor"]) is None:
            break
    assert seen[shown] == {
        "reward_id": shown,
        "name": "Mug",
        "description": "Blue",
        "kind": "product",
        "points_cost": 100,
        "in_stock": True,
    }
    assert seen[sold_out]["in_stock"] is False and seen[unlimited]["in_stock"] is True
    assert hidden not in seen
    in_stock_only = await points_client.get(
        "/v1/rewards", params={"available": "true", "limit": 200}, headers=member
    )
    assert sold_out not in {i["reward_id"] for i in in_stock_only.json()["items"]}
    assert (await points_client.get(f"/v1/rewards/{hidden}", headers=member)).status_code == 404
    assert (await points_client.get(f"/v1/rewards/{hidden}")).json()["active"] is False
