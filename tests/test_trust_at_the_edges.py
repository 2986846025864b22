"""Issue #15, through the gateway: what a member token (or one caller) sends cannot mint points,
take another caller's Idempotency-Key, or set its own complaint's SLA (docs/security.md)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from feedback.settings import FeedbackSettings
from gateway.testing import TEST_KEYS, bearer


def _mid() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


async def _enrol(client: httpx.AsyncClient, member: str) -> None:
    response = await client.post("/v1/members", json={"member_id": member})
    assert response.status_code == 201, response.text


async def _balance(client: httpx.AsyncClient, member: str) -> int:
    return int((await client.get(f"/v1/members/{member}")).json()["balance"]["available"])


async def test_a_member_token_cannot_choose_the_day_its_check_in_earns_for(
    gateway_client: httpx.AsyncClient, member_token_for: Any
) -> None:
    member = _mid()
    await _enrol(gateway_client, member)
    me = bearer(member_token_for(member))
    url = f"/v1/members/{member}/check-ins"
    now = datetime.now(UTC)
    # the finding: days long before enrolment and the days just before today, each "granted"
    for days in (361, 220, 189, 3, 2, 1, 0):
        at = (now - timedelta(days=days)).isoformat()
        answer = await gateway_client.post(url, json={"occurred_at": at}, headers=me)
        assert answer.status_code == 422, (days, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == ["body.occurred_at"]
    assert await _balance(gateway_client, member) == 0
    today = await gateway_client.post(url, headers=me)  # the service's clock decides the day
    assert today.status_code in (201, 202), today.text
    again = await gateway_client.post(url, headers=me)
    assert again.status_code == 409
    assert await _balance(gateway_client, member) == today.json()["points"]


async def _give_points(client: httpx.AsyncClient, member: str, points: int) -> None:
    response = await client.post(
        f"/v1/members/{member}/adjustments",
        json={"points": points, "reason": "test credit"},
        headers={"Idempotency-Key": f"give-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 201, response.text


async def test_one_callers_idempotency_key_is_not_another_callers(
    gateway_client: httpx.AsyncClient, member_token_for: Any
) -> None:
    first, second = _mid(), _mid()
    for member in (first, second):
        await _enrol(gateway_client, member)
        await _give_points(gateway_client, member, 100)
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex[:8]}"}

    async def redeem(member: str, points: int) -> httpx.Response:
        headers = {**key, **bearer(member_token_for(member))}
        return await gateway_client.post(
            f"/v1/members/{member}/redemptions", json={"points": points}, headers=headers
        )

    a = await redeem(first, 10)  # caller A claims the key first
    b = await redeem(second, 20)  # caller B, the same key, its own write
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert b.json()["member_id"] == second and b.json()["points_spent"] == 20
    assert b.json()["redemption_id"] != a.json()["redemption_id"]
    # each caller's retry replays its own answer
    for member, points, first_answer in ((first, 10, a), (second, 20, b)):
        retry = await redeem(member, points)
        assert retry.status_code == 201 and retry.json() == first_answer.json()
        assert retry.headers.get("Idempotent-Replayed") == "true"
    assert await _balance(gateway_client, first) == 90
    assert await _balance(gateway_client, second) == 80

    # feedback's writes: two members' complaints under one key are two complaints
    complaints = []
    for member in (first, second):
        response = await gateway_client.post(
            "/v1/complaints",
            json=_complaint(member),
            headers={**key, **bearer(member_token_for(member))},
        )
        assert response.status_code == 201, response.text
        complaints.append(response.json())
    assert [c["member_id"] for c in complaints] == [first, second]

    # two API keys (storefront, ops) with one key: two members enrolled
    enrolled = []
    for caller in ("storefront", "ops"):
        member = _mid()
        response = await gateway_client.post(
            "/v1/members",
            json={"member_id": member},
            headers={**key, **bearer(TEST_KEYS[caller])},
        )
        assert response.status_code == 201, response.text
        enrolled.append(response.json()["member_id"])
    assert enrolled[0] != enrolled[1]


def _complaint(member: str, **extra: Any) -> dict[str, Any]:
    return {
        "member_id": member,
        "channel": "app",
        "category": "delivery",
        "description": "The parcel never came",
        **extra,
    }


async def _projected_tier(settings: FeedbackSettings, member: str, tier: str) -> None:
    """Feedback's projection of the member's tier, as its consumer writes it."""
    engine = create_async_engine(settings.sqlalchemy_url())
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO member_projection (member_id, tier, tier_as_of)"
                    " VALUES (:m, :t, now())"
                ),
                {"m": member, "t": tier},
            )
    finally:
        await engine.dispose()


async def test_a_members_severity_is_a_hint_and_ops_severity_sets_the_sla(
    gateway_client: httpx.AsyncClient,
    member_token_for: Any,
    feedback_settings: FeedbackSettings,
) -> None:
    member = _mid()
    await _enrol(gateway_client, member)
    tier = f"t{uuid.uuid4().hex[:10]}"  # a tier only this member has: the policy is theirs
    await _projected_tier(feedback_settings, member, tier)
    policy_id = f"p-{tier}"
    policy = {
        "name": "critical, with goodwill",
        "match": {"tier": tier, "severity": "critical"},
        "first_response_minutes": 5,
        "resolution_minutes": 30,
        "goodwill_points": 500,
    }
    put = await gateway_client.put(f"/v1/sla/policies/{policy_id}", json=policy)
    assert put.status_code in (200, 201), put.text

    opened = await gateway_client.post(
        "/v1/complaints",
        json=_complaint(member, severity="critical"),
        headers=bearer(member_token_for(member)),
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["reported_severity"] == "critical"
    assert "severity" not in opened.json()  # ops' severity: not in the member's answer
    ops = bearer(TEST_KEYS["ops"])
    complaint = (
        await gateway_client.get(f"/v1/complaints/{opened.json()['id']}", headers=ops)
    ).json()
    assert complaint["severity"] == "medium"  # the default until ops set it
    assert policy_id not in complaint["sla"]["policy_ids"]
    assert complaint["sla"]["first_response"]["target_minutes"] != 5

    url = f"/v1/complaints/{complaint['id']}/actions"
    acknowledged = await gateway_client.post(url, json={"action": "acknowledge"}, headers=ops)
    assert acknowledged.status_code == 200, acknowledged.text
    triaged = await gateway_client.post(
        url, json={"action": "start", "severity": "critical"}, headers=ops
    )
    assert triaged.status_code == 200, triaged.text
    after = triaged.json()
    assert after["severity"] == "critical" and after["reported_severity"] == "critical"
    assert policy_id in after["sla"]["policy_ids"]
    assert after["sla"]["resolution"]["target_minutes"] == 30
    due = datetime.fromisoformat(after["resolution_due_at"])
    created = datetime.fromisoformat(after["created_at"])
    assert due - created <= timedelta(minutes=31)
