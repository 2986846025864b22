"""Surveys (definitions, validated answers, survey.completed) and follow-up visits (closed loop)."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

OPS = {"X-Operator-Id": "agent-ann"}


def member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


QUESTIONS = [
    {"id": "nps", "type": "nps", "text": "Would you recommend us?", "required": True},
    {"id": "csat", "type": "rating", "text": "How satisfied are you?"},
    {"id": "care", "type": "likert5", "text": "Customer care", "factor": "customer_care"},
    {"id": "channel", "type": "single_choice", "text": "Where?", "options": ["app", "store"]},
    {
        "id": "liked",
        "type": "multiple_choice",
        "text": "What did you like?",
        "options": ["price", "speed", "staff"],
    },
    {"id": "comment", "type": "text", "text": "Anything else?"},
]


async def create_survey(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/surveys", json={"name": "After purchase", "questions": QUESTIONS, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def answer(
    client: httpx.AsyncClient, survey_id: str, member_id: str, answers: dict[str, Any], **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/surveys/{survey_id}/responses",
        json={"member_id": member_id, "answers": answers, **extra},
    )


async def test_definition_roundtrip_and_metric_defaults(feedback_client: httpx.AsyncClient) -> None:
    survey = await create_survey(feedback_client)
    fetched = (await feedback_client.get(f"/v1/surveys/{survey['id']}")).json()
    assert fetched == survey
    metrics = {q["id"]: q["metric"] for q in survey["questions"]}
    assert metrics["nps"] == "nps" and metrics["csat"] == "csat" and metrics["care"] is None
    assert (await feedback_client.get(f"/v1/surveys/{uuid.uuid4()}")).status_code == 404


@pytest.mark.parametrize(
    ("questions", "field_part"),
    [
        ([{"id": "c", "type": "single_choice", "text": "?"}], "questions.0"),
        ([{"id": "a", "type": "text", "text": "?", "options": ["x"]}], "questions.0"),
        ([{"id": "a", "type": "nps", "text": "?"}, {"id": "a", "type": "text", "text": "?"}], ""),
        ([{"id": "a", "type": "text", "text": "?", "factor": "care"}], "questions.0"),
        ([{"id": "a", "type": "stars", "text": "?"}], "questions.0.type"),
    ],
)
async def test_bad_definitions_are_422(
    feedback_client: httpx.AsyncClient, questions: list[dict[str, Any]], field_part: str
) -> None:
    response = await feedback_client.post("/v1/surveys", json={"name": "x", "questions": questions})
    assert response.status_code == 422, response.text
    assert field_part in response.json()["errors"][0]["field"]


@pytest.mark.parametrize(
    ("answers", "bad_question"),
    [
        ({"nps": 11}, "nps"),
        ({"nps": -1}, "nps"),
        ({"nps": "ten"}, "nps"),
        ({"nps": 7.5}, "nps"),
        ({"nps": True}, "nps"),
        ({"nps": 8, "csat": 0}, "csat"),
        ({"nps": 8, "csat": 6}, "csat"),
        ({"nps": 8, "care": "meh"}, "care"),
        ({"nps": 8, "care": 6}, "care"),
        ({"nps": 8, "channel": "phone"}, "channel"),
        ({"nps": 8, "liked": ["price", "price"]}, "liked"),
        ({"nps": 8, "liked": "price"}, "liked"),
        ({"nps": 8, "liked": []}, "liked"),
        ({"nps": 8, "comment": 42}, "comment"),
        ({"nps": 8, "ghost": 1}, "ghost"),
        ({"csat": 4}, "nps"),  # required
    ],
)
async def test_answers_are_validated_naming_the_question(
    feedback_client: httpx.AsyncClient, answers: dict[str, Any], bad_question: str
) -> None:
    survey = await create_survey(feedback_client)
    m = member()
    response = await answer(feedback_client, survey["id"], m, answers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [f"body.answers.{bad_question}"]
    assert bad_question in problem["detail"]
    # nothing written: the member can still answer
    ok = await answer(feedback_client, survey["id"], m, {"nps": 9})
    assert ok.status_code == 201


async def test_response_event_and_one_per_member(
    feedback_client: httpx.AsyncClient, feedback_db: str
) -> None:
    survey = await create_survey(feedback_client)
    m = member()
    answers = {
        "nps": 9,
        "csat": 5,
        "care": "very_satisfied",
        "channel": "app",
        "liked": ["speed", "staff"],
        "comment": "great",
    }
    first = await answer(feedback_client, survey["id"], m, answers, order_id="o-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["nps"] == 9 and body["csat"] == 5 and body["answers"]["care"] == 5
    assert body["follow_up_id"] is None
    again = await answer(feedback_client, survey["id"], m, {"nps": 3})
    assert again.status_code == 409
    assert again.json()["response_id"] == body["id"]

    engine = create_async_engine(feedback_db)
    async with engine.connect() as conn:
        events = (
            (
                await conn.execute(
                    text(
                        "SELECT payload FROM outbox WHERE event_type = :t"
                        " AND payload->'data'->>'member_id' = :m"
                    ),
                    {"m": m, "t": "loyalty.survey.completed.v1"},
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    assert len(events) == 1
    event = events[0]
    assert event["id"] == body["id"]  # stable id: points credits the bonus once
    assert event["data"] == {
        "survey_id": survey["id"],
        "response_id": body["id"],
        "member_id": m,
        "nps": 9,
        "csat": 5,
        "complaint_id": None,
        "order_id": "o-1",
        "submitted_at": event["data"]["submitted_at"],
    }

    multi = await create_survey(feedback_client, allow_multiple_responses=True)
    for score in (9, 10):
        assert (await answer(feedback_client, multi["id"], m, {"nps": score})).status_code == 201


async def test_detractor_opens_follow_up_and_closes_the_loop(
    feedback_client: httpx.AsyncClient,
) -> None:
    survey = await create_survey(feedback_client, allow_multiple_responses=True)
    m = member()
    low = (await answer(feedback_client, survey["id"], m, {"nps": 4, "csat": 3})).json()
    follow_up_id = low["follow_up_id"]
    assert follow_up_id and low["opened_complaint_id"] is None
    fu = (await feedback_client.get(f"/v1/follow-ups/{follow_up_id}")).json()
    assert fu["owner_id"] is None
    assigned = await feedback_client.post(
        f"/v1/follow-ups/{follow_up_id}/assign", json={"owner_id": "agent-dan"}
    )
    assert assigned.status_code == 200 and assigned.json()["owner_id"] == "agent-dan"
    mine = await feedback_client.get(
        "/v1/follow-ups", params={"owner": "agent-dan", "member_id": m}
    )
    assert [f["id"] for f in mine.json()["items"]] == [follow_up_id]
    assert fu["reason"] == "survey_detractor"
    assert fu["trigger_score"] == 4
    assert fu["survey_response_id"] == low["id"]
    submitted = datetime.fromisoformat(low["submitted_at"])
    assert datetime.fromisoformat(fu["due_at"]) == submitted + timedelta(days=3)

    done = await feedback_client.post(
        f"/v1/follow-ups/{follow_up_id}/outcome",
        json={"outcome": "Replaced the item", "rectified": True},
        headers=OPS,
    )
    assert done.status_code == 200
    assert done.json()["status"] == "completed" and done.json()["completed_by"] == "agent-ann"
    twice = await feedback_client.post(
        f"/v1/follow-ups/{follow_up_id}/outcome",
        json={"outcome": "again", "rectified": False},
        headers=OPS,
    )
    assert twice.status_code == 409
    late = await feedback_client.post(
        f"/v1/follow-ups/{follow_up_id}/assign", json={"owner_id": "agent-eve"}
    )
    assert late.status_code == 409
    nxt = (await answer(feedback_client, survey["id"], m, {"nps": 9})).json()
    assert nxt["follow_up_id"] is None  # a promoter opens nothing
    linked = (await feedback_client.get(f"/v1/follow-ups/{follow_up_id}")).json()
    assert linked["next_response_id"] == nxt["id"]
    assert linked["next_score"] == 9


async def test_low_csat_opens_complaint_when_configured(
    feedback_client: httpx.AsyncClient,
) -> None:
    survey = await create_survey(feedback_client, open_complaint_for_detractors=True)
    m = member()
    body = (await answer(feedback_client, survey["id"], m, {"nps": 8, "csat": 2})).json()
    assert body["opened_complaint_id"]
    complaint = (await feedback_client.get(f"/v1/complaints/{body['opened_complaint_id']}")).json()
    assert complaint["member_id"] == m
    assert complaint["category"] == "survey_detractor"
    assert "CSAT 2" in complaint["description"]
    fu = (await feedback_client.get(f"/v1/follow-ups/{body['follow_up_id']}")).json()
    assert fu["complaint_id"] == complaint["id"] and fu["trigger_score"] == 2


async def test_resolution_creates_follow_up_within_3_days(
    feedback_client: httpx.AsyncClient,
) -> None:
    m = member()
    complaint = (
        await feedback_client.post(
            "/v1/complaints",
            json={"member_id": m, "channel": "store", "category": "x", "description": "y"},
        )
    ).json()
    cid = complaint["id"]
    for action in ("acknowledge", "resolve"):
        r = await feedback_client.post(
            f"/v1/complaints/{cid}/actions", json={"action": action}, headers=OPS
        )
        assert r.status_code == 200
    resolved_at = datetime.fromisoformat(r.json()["resolved_at"])
    page = (await feedback_client.get("/v1/follow-ups", params={"member_id": m})).json()
    [fu] = page["items"]
    assert fu["reason"] == "post_resolution"
    assert fu["complaint_id"] == cid
    assert fu["owner_id"] == "agent-ann"
    assert datetime.fromisoformat(fu["due_at"]) == resolved_at + timedelta(days=3)
    due_soon = await feedback_client.get(
        "/v1/follow-ups",
        params={
            "due_before": (resolved_at + timedelta(days=3, seconds=1)).isoformat(),
            "member_id": m,
        },
    )
    assert [f["id"] for f in due_soon.json()["items"]] == [fu["id"]]
    not_yet = await feedback_client.get(
        "/v1/follow-ups",
        params={"due_before": (resolved_at + timedelta(days=2)).isoformat(), "member_id": m},
    )
    assert not_yet.json()["items"] == []
    missing = await feedback_client.post(
        f"/v1/follow-ups/{fu['id']}/outcome", json={"outcome": "ok"}, headers=OPS
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "body.rectified"

    # the member's survey about this complaint is the visit's recorded result
    survey = await create_survey(feedback_client)
    other = await answer(feedback_client, survey["id"], member(), {"nps": 9}, complaint_id=cid)
    assert other.status_code == 422  # someone else's complaint
    assert other.json()["errors"][0]["field"] == "body.complaint_id"
    response = await answer(
        feedback_client, survey["id"], m, {"nps": 9, "csat": 5}, complaint_id=cid
    )
    assert response.status_code == 201
    visit = (await feedback_client.get(f"/v1/follow-ups/{fu['id']}")).json()
    assert visit["survey_response_id"] == response.json()["id"]
