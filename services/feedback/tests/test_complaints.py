"""Complaints: the state machine (every allowed and forbidden action), ownership, history."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ACTIONS = [
    "acknowledge",
    "start",
    "respond",
    "escalate",
    "resolve",
    "close",
    "reopen",
    "hand_over",
    "pause",
    "resume",
]

# The specification, written out: state -> {allowed action: resulting state}.
EXPECTED: dict[str, dict[str, str]] = {
    "open": {"acknowledge": "acknowledged", "respond": "acknowledged", "hand_over": "open"},
    "acknowledged": {
        "respond": "acknowledged",
        "start": "in_progress",
        "escalate": "escalated",
        "resolve": "resolved",
        "hand_over": "acknowledged",
        "pause": "acknowledged",
    },
    "in_progress": {
        "respond": "in_progress",
        "escalate": "escalated",
        "resolve": "resolved",
        "hand_over": "in_progress",
        "pause": "in_progress",
    },
    "escalated": {
        "respond": "escalated",
        "resolve": "resolved",
        "hand_over": "escalated",
        "pause": "escalated",
    },
    "resolved": {"close": "closed", "reopen": "in_progress"},
    "closed": {"reopen": "in_progress"},
    # acknowledged and paused: the clocks stand still until resume (start/escalate/resolve resume)
    "paused": {
        "respond": "acknowledged",
        "start": "in_progress",
        "escalate": "escalated",
        "resolve": "resolved",
        "hand_over": "acknowledged",
        "resume": "acknowledged",
    },
}

PATH_TO: dict[str, list[str]] = {
    "open": [],
    "acknowledged": ["acknowledge"],
    "in_progress": ["acknowledge", "start"],
    "escalated": ["acknowledge", "escalate"],
    "resolved": ["acknowledge", "resolve"],
    "closed": ["acknowledge", "resolve", "close"],
    "paused": ["acknowledge", "pause"],
}

AGENT = {"X-Operator-Id": "agent-ann"}


def member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def complaint_body(**extra: Any) -> dict[str, Any]:
    return {
        "member_id": member(),
        "channel": "app",
        "category": "delivery",
        "description": "Parcel arrived damaged",
        **extra,
    }


async def open_complaint(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/complaints", json=complaint_body(**extra))
    assert response.status_code == 201, response.text
    return response.json()


async def act(
    client: httpx.AsyncClient,
    complaint_id: str,
    action: str,
    operator: str = "agent-ann",
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/complaints/{complaint_id}/actions",
        json={"action": action, **extra},
        headers={"X-Operator-Id": operator},
    )


async def complaint_in(client: httpx.AsyncClient, state: str) -> dict[str, Any]:
    body = await open_complaint(client)
    for action in PATH_TO[state]:
        response = await act(client, body["id"], action)
        assert response.status_code == 200, response.text
        body = response.json()
    return body


CASES = [(state, action) for state in EXPECTED for action in ACTIONS]


@pytest.mark.parametrize(("state", "action"), CASES, ids=[f"{s}-{a}" for s, a in CASES])
async def test_every_action_in_every_state(
    feedback_client: httpx.AsyncClient, state: str, action: str
) -> None:
    complaint = await complaint_in(feedback_client, state)
    before = (await feedback_client.get(f"/v1/complaints/{complaint['id']}")).json()
    extra = {"to": "agent-bob"} if action == "hand_over" else {}
    response = await act(feedback_client, complaint["id"], action, note=f"{action} it", **extra)
    allowed = EXPECTED[state]
    if action in allowed:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == allowed[action]
        last = body["history"][-1]
        assert last["action"] == action
        assert last["actor"] == "agent-ann"
        assert last["note"] == f"{action} it"
        assert last["from_status"] == before["status"]
        assert last["to_status"] == allowed[action]
        assert len(body["history"]) == len(before["history"]) + 1
    else:
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"].endswith("/illegal-transition")
        assert problem["current_state"] == before["status"]
        assert sorted(problem["allowed_actions"]) == sorted(allowed)
        assert before["status"] in problem["detail"]
        after = (await feedback_client.get(f"/v1/complaints/{complaint['id']}")).json()
        assert after == before  # nothing was written


async def test_complaint_carries_channel_cause_order_and_deadlines(
    feedback_client: httpx.AsyncClient,
) -> None:
    body = await open_complaint(
        feedback_client,
        channel="phone",
        cause="courier_damage",
        order_id="o-123",
        product_ref="sku-9",
        severity="high",
    )
    assert body["status"] == "open"
    assert body["channel"] == "phone"
    assert body["cause"] == "courier_damage"
    assert body["order_id"] == "o-123"
    assert body["severity"] == "high"
    assert body["first_response_due_at"] and body["resolution_due_at"]
    assert body["sla"]["first_response"]["due_at"] == body["first_response_due_at"]
    assert body["sla"]["first_response"]["running"] is True
    assert sorted(body["allowed_actions"]) == sorted(EXPECTED["open"])


async def test_unknown_channel_and_missing_operator_are_422(
    feedback_client: httpx.AsyncClient,
) -> None:
    bad = await feedback_client.post("/v1/complaints", json=complaint_body(channel="pigeon"))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.channel"
    body = await open_complaint(feedback_client)
    no_actor = await feedback_client.post(
        f"/v1/complaints/{body['id']}/actions", json={"action": "acknowledge"}
    )
    assert no_actor.status_code == 422
    assert no_actor.json()["errors"][0]["field"] == "header.X-Operator-Id"
    unknown = await act(feedback_client, body["id"], "teleport")
    assert unknown.status_code == 422
    assert (await feedback_client.get(f"/v1/complaints/{body['id']}")).json()["status"] == "open"


async def test_first_contact_owns_until_hand_over(feedback_client: httpx.AsyncClient) -> None:
    body = await open_complaint(feedback_client)
    cid = body["id"]
    assert body["owner_id"] is None
    taken = (await act(feedback_client, cid, "acknowledge", operator="agent-ann")).json()
    assert taken["owner_id"] == "agent-ann"
    helped = (await act(feedback_client, cid, "respond", operator="agent-carl")).json()
    assert helped["owner_id"] == "agent-ann"  # helping does not take ownership
    stolen = await act(feedback_client, cid, "hand_over", operator="agent-carl", to="agent-carl")
    assert stolen.status_code == 403
    assert stolen.json()["owner_id"] == "agent-ann"
    missing_to = await act(feedback_client, cid, "hand_over", operator="agent-ann")
    assert missing_to.status_code == 422
    assert missing_to.json()["errors"][0]["field"] == "body.to"
    handed = await act(
        feedback_client, cid, "hand_over", operator="agent-ann", to="agent-bob", note="tech issue"
    )
    assert handed.status_code == 200
    assert handed.json()["owner_id"] == "agent-bob"
    assert handed.json()["history"][-1]["details"] == {
        "from_owner": "agent-ann",
        "to_owner": "agent-bob",
    }
    page = (await feedback_client.get("/v1/complaints", params={"owner": "agent-bob"})).json()
    assert cid in [c["id"] for c in page["items"]]


async def test_history_and_events_of_a_full_lifecycle(
    feedback_client: httpx.AsyncClient, feedback_db: str
) -> None:
    body = await open_complaint(feedback_client)
    cid = body["id"]
    for action in ["acknowledge", "start", "escalate", "resolve", "reopen", "resolve", "close"]:
        response = await act(feedback_client, cid, action, note=f"n-{action}")
        assert response.status_code == 200, response.text
    final = (await feedback_client.get(f"/v1/complaints/{cid}")).json()
    assert final["status"] == "closed"
    assert final["reopen_count"] == 1
    assert [h["action"] for h in final["history"]] == [
        "open",
        "acknowledge",
        "start",
        "escalate",
        "resolve",
        "reopen",
        "resolve",
        "close",
    ]
    assert all(h["at"] for h in final["history"])
    engine = create_async_engine(feedback_db)
    async with engine.connect() as conn:
        types = (
            (
                await conn.execute(
                    text(
                        "SELECT event_type FROM outbox WHERE payload->'data'->>'complaint_id' = :c "
                        "AND event_type LIKE 'loyalty.complaint.%' ORDER BY id"
                    ),
                    {"c": cid},
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    assert types == [
        "loyalty.complaint.opened.v1",
        "loyalty.complaint.acknowledged.v1",
        "loyalty.complaint.escalated.v1",
        "loyalty.complaint.resolved.v1",
        "loyalty.complaint.reopened.v1",
        "loyalty.complaint.resolved.v1",
        "loyalty.complaint.closed.v1",
    ]


async def test_queue_filters_and_cursor_paging(feedback_client: httpx.AsyncClient) -> None:
    owner = f"agent-{uuid.uuid4().hex[:8]}"
    ids = []
    for _ in range(5):
        body = await open_complaint(feedback_client)
        await act(feedback_client, body["id"], "acknowledge", operator=owner)
        ids.append(body["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"owner": owner, "limit": 2, "status": "acknowledged"}
        if cursor:
            params["cursor"] = cursor
        page = (await feedback_client.get("/v1/complaints", params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    none = await feedback_client.get("/v1/complaints", params={"owner": owner, "status": "open"})
    assert none.json()["items"] == []
    bad = await feedback_client.get("/v1/complaints", params={"cursor": "@@@"})
    assert bad.status_code == 422


async def test_unknown_complaint_is_404(feedback_client: httpx.AsyncClient) -> None:
    response = await act(feedback_client, str(uuid.uuid4()), "acknowledge")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/complaint-not-found")


async def test_idempotency_key_replays_and_rejects_reuse(
    feedback_client: httpx.AsyncClient,
) -> None:
    body = complaint_body()
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await feedback_client.post("/v1/complaints", json=body, headers=key)
    again = await feedback_client.post("/v1/complaints", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    page = await feedback_client.get("/v1/complaints", params={"member_id": body["member_id"]})
    assert len(page.json()["items"]) == 1  # opened once
    other = await feedback_client.post(
        "/v1/complaints", json={**body, "description": "something else"}, headers=key
    )
    assert other.status_code == 409
    assert other.json()["type"].endswith("/idempotency-key-reused")

    cid = first.json()["id"]
    action_key = {"Idempotency-Key": f"a-{uuid.uuid4().hex}", **AGENT}
    acts = [
        await feedback_client.post(
            f"/v1/complaints/{cid}/actions", json={"action": "acknowledge"}, headers=action_key
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in acts] == [200, 200]  # the retry is not an illegal transition
    history = (await feedback_client.get(f"/v1/complaints/{cid}")).json()["history"]
    assert [h["action"] for h in history] == ["open", "acknowledge"]
