"""What a member (or a storefront speaking for one) may set on feedback's writes
(docs/security.md): how many complaints a day, a severity that is only a hint, no time of
its own, answers of a bounded size."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from feedback.testing import IsolatedFeedback

MEMBER = {"x-caller-scope": "member"}
STOREFRONT = {"x-caller-scope": "storefront", "x-caller-name": "shop"}
OPS = {"x-caller-scope": "ops", "x-operator-id": "agent-1"}


def member_caller(member: str) -> dict[str, str]:
    return {**MEMBER, "x-member-id": member}


def complaint(member: str, **extra: Any) -> dict[str, Any]:
    return {
        "member_id": member,
        "channel": "app",
        "category": "delivery",
        "description": "The parcel never came",
        **extra,
    }


def mid() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


async def test_a_member_opens_a_limited_number_of_complaints_a_day(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client, clock = isolated_feedback.client, isolated_feedback.clock
    member = mid()
    limit = isolated_feedback.settings.complaints_daily_limit
    for n in range(limit):
        headers = member_caller(member) if n % 2 else STOREFRONT
        opened = await client.post("/v1/complaints", json=complaint(member), headers=headers)
        assert opened.status_code == 201, opened.text
        clock.advance(minutes=10)
    over = await client.post(
        "/v1/complaints", json=complaint(member), headers=member_caller(member)
    )
    assert over.status_code == 429, over.text
    body = over.json()
    assert body["type"].endswith("/complaint-limit-reached")
    assert body["limit"] == limit and body["reason"] == "daily_limit"
    assert body["retry_after_seconds"] == 24 * 3600 - limit * 600
    listed = await client.get("/v1/complaints", params={"member_id": member, "limit": 200})
    assert len(listed.json()["items"]) == limit  # the refused one changed nothing

    # ops (who speak for the member on the phone) and other members are not held by it
    by_ops = await client.post("/v1/complaints", json=complaint(member), headers=OPS)
    assert by_ops.status_code == 201, by_ops.text
    other = mid()
    assert (
        await client.post("/v1/complaints", json=complaint(other), headers=member_caller(other))
    ).status_code == 201
    # a day after the first, the member may complain again
    clock.advance(seconds=body["retry_after_seconds"])
    again = await client.post(
        "/v1/complaints", json=complaint(member), headers=member_caller(member)
    )
    assert again.status_code == 201, again.text


async def test_a_members_severity_is_recorded_as_reported_only(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client = isolated_feedback.client
    member = mid()
    for headers in (member_caller(member), STOREFRONT):
        opened = await client.post(
            "/v1/complaints", json=complaint(member, severity="critical"), headers=headers
        )
        assert opened.status_code == 201, opened.text
        assert opened.json()["reported_severity"] == "critical"
        # ops' severity is theirs to set: the member's answer does not carry it
        assert ("severity" in opened.json()) == (headers is STOREFRONT)
        seen = await client.get(f"/v1/complaints/{opened.json()['id']}", headers=OPS)
        assert seen.json()["severity"] == "medium"
    by_ops = await client.post(
        "/v1/complaints", json=complaint(member, severity="high"), headers=OPS
    )
    assert by_ops.json()["severity"] == "high" and by_ops.json()["reported_severity"] is None


async def test_ops_severity_moves_the_running_clocks(isolated_feedback: IsolatedFeedback) -> None:
    client, clock = isolated_feedback.client, isolated_feedback.clock
    policy = {
        "name": "critical complaints",
        "match": {"severity": "critical"},
        "first_response_minutes": 60,
        "resolution_minutes": 120,
    }
    put = await client.put("/v1/sla/policies/critical-test", json=policy)
    assert put.status_code in (200, 201), put.text
    member = mid()
    opened = await client.post(
        "/v1/complaints",
        json=complaint(member, severity="critical"),
        headers=member_caller(member),
    )
    c = (await client.get(f"/v1/complaints/{opened.json()['id']}", headers=OPS)).json()
    start = datetime.fromisoformat(c["created_at"])
    assert "critical-test" not in c["sla"]["policy_ids"]
    assert datetime.fromisoformat(c["first_response_due_at"]) == start + timedelta(hours=24)

    clock.advance(minutes=30)
    triaged = await client.post(
        f"/v1/complaints/{c['id']}/actions",
        json={"action": "hand_over", "to": "agent-2", "severity": "critical", "note": "triage"},
        headers=OPS,
    )
    assert triaged.status_code == 200, triaged.text
    t = triaged.json()
    assert t["severity"] == "critical" and "critical-test" in t["sla"]["policy_ids"]
    # the clocks keep the working time already spent: 30 of 60 and 30 of 120 minutes
    assert datetime.fromisoformat(t["first_response_due_at"]) == start + timedelta(minutes=60)
    assert datetime.fromisoformat(t["resolution_due_at"]) == start + timedelta(minutes=120)
    assert t["sla"]["first_response"]["target_minutes"] == 60
    [entry] = [h for h in t["history"] if h["action"] == "hand_over"]
    assert entry["details"]["severity"] == {"from": "medium", "to": "critical"}

    put = await client.put(
        "/v1/sla/policies/critical-test", json={**policy, "active": False}
    )  # leave the module's other tests the seeded policies only
    assert put.status_code == 200


@pytest.mark.parametrize(
    ("path", "extra", "field"),
    [
        ("/v1/complaints", {"occurred_at": "2025-01-01T00:00:00+00:00"}, "body.occurred_at"),
        ("/v1/complaints", {"created_at": "2025-01-01T00:00:00+00:00"}, "body.created_at"),
    ],
)
async def test_no_client_time_on_a_complaint(
    feedback_client: httpx.AsyncClient, path: str, extra: dict[str, Any], field: str
) -> None:
    member = mid()
    answer = await feedback_client.post(
        path, json=complaint(member, **extra), headers=member_caller(member)
    )
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def _survey(client: httpx.AsyncClient) -> str:
    survey = {
        "name": "After delivery",
        "questions": [
            {"id": "nps", "type": "nps", "text": "Recommend us?"},
            {"id": "why", "type": "text", "text": "Why?"},
        ],
        "allow_multiple_responses": True,
        "audience": "members",  # addressed to every member, so a member token may answer
    }
    created = await client.post("/v1/surveys", json=survey)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_survey_answers_are_bounded_and_take_no_time(
    feedback_client: httpx.AsyncClient,
) -> None:
    survey = await _survey(feedback_client)
    member = mid()
    url = f"/v1/surveys/{survey}/responses"
    headers = member_caller(member)
    for body, field in (
        ({"answers": {f"q{n}": 1 for n in range(101)}}, "body.answers"),
        (
            {"answers": {"x" * 65: 1}},
            "body.answers.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.[key]",
        ),
        ({"answers": {"why": "y" * 5001}}, "body.answers.why"),
        ({"answers": {"nps": 9}, "submitted_at": "2025-01-01T00:00:00Z"}, "body.submitted_at"),
    ):
        answer = await feedback_client.post(
            url, json={"member_id": member, **body}, headers=headers
        )
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field], answer.json()
    fine = await feedback_client.post(
        url, json={"member_id": member, "answers": {"nps": 9, "why": "fast"}}, headers=headers
    )
    assert fine.status_code == 201, fine.text
