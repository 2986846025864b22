"""Surveys addressed to a member (audience, invitations), the member's list of those still to
answer, the member's own complaints, and what a member token reads of them."""

import uuid
from typing import Any

import httpx

from feedback.testing import IsolatedFeedback
from feedback.worker import build_consumer
from loyalty_shared.contracts.points import MemberErasedV1

OPS = {"x-caller-scope": "ops", "x-operator-id": "agent-1"}
STOREFRONT = {"x-caller-scope": "storefront", "x-caller-name": "shop"}
QUESTIONS = [
    {"id": "nps", "type": "nps", "text": "Recommend us?", "required": True},
    {"id": "care", "type": "rating", "text": "Care?", "factor": "customer_care"},
]


def mid() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def as_member(member: str) -> dict[str, str]:
    return {"x-caller-scope": "member", "x-member-id": member}


async def _survey(client: httpx.AsyncClient, **extra: Any) -> str:
    made = await client.post(
        "/v1/surveys", json={"name": "s", "questions": QUESTIONS, **extra}, headers=OPS
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _invite(client: httpx.AsyncClient, survey: str, *invitations: dict[str, Any]) -> Any:
    return await client.post(
        f"/v1/surveys/{survey}/invitations", json={"invitations": list(invitations)}, headers=OPS
    )


async def _pending(client: httpx.AsyncClient, member: str, **params: Any) -> dict[str, Any]:
    listed = await client.get(
        f"/v1/members/{member}/surveys", params={"limit": 200, **params}, headers=as_member(member)
    )
    assert listed.status_code == 200, listed.text
    body: dict[str, Any] = listed.json()
    return body


async def _answer(
    client: httpx.AsyncClient, survey: str, member: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/surveys/{survey}/responses",
        json={"member_id": member, "answers": {"nps": 8}, **extra},
        headers=as_member(member),
    )


async def test_invitations_are_idempotent_and_checked(isolated_feedback: IsolatedFeedback) -> None:
    client = isolated_feedback.client
    survey, m = await _survey(client), mid()
    first = await _invite(client, survey, {"member_id": m}, {"member_id": m, "order_id": "o-1"})
    assert first.status_code == 200, first.text
    assert first.json() == {"invited": 2, "already_invited": 0}
    again = await _invite(client, survey, {"member_id": m}, {"member_id": mid()})
    assert again.json() == {"invited": 1, "already_invited": 1}
    pending = [s for s in (await _pending(client, m))["items"] if s["survey_id"] == survey]
    assert sorted(str(s["order_id"]) for s in pending) == ["None", "o-1"]
    assert pending[0]["questions"][1] == {
        "id": "care",
        "type": "rating",
        "text": "Care?",
        "required": False,
        "options": None,
    }
    # a complaint must be the invited member's own; bad bodies and unknown surveys refused
    other = mid()
    opened = await client.post(
        "/v1/complaints",
        json={"member_id": other, "channel": "app", "category": "x", "description": "late"},
    )
    bad = await _invite(
        client, survey, {"member_id": m}, {"member_id": m, "complaint_id": opened.json()["id"]}
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"][0]["field"] == "body.invitations.1.complaint_id"
    ok = await _invite(client, survey, {"member_id": other, "complaint_id": opened.json()["id"]})
    assert ok.json() == {"invited": 1, "already_invited": 0}
    empty: list[dict[str, Any]] = [{"invitations": []}, {}]
    for body in empty:
        r = await client.post(f"/v1/surveys/{survey}/invitations", json=body, headers=OPS)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.invitations"
    many = [{"member_id": f"m-{n}"} for n in range(501)]
    assert (await _invite(client, survey, *many)).status_code == 422
    missing = await _invite(client, str(uuid.uuid4()), {"member_id": m})
    assert missing.status_code == 404 and missing.json()["type"].endswith("/survey-not-found")


async def test_an_answer_settles_the_invitation_it_answers(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client = isolated_feedback.client
    m = mid()
    repeat = await _survey(client, allow_multiple_responses=True)
    once = await _survey(client)
    await _invite(
        client, repeat, {"member_id": m, "order_id": "o-1"}, {"member_id": m, "order_id": "o-2"}
    )
    await _invite(
        client, once, {"member_id": m, "order_id": "o-1"}, {"member_id": m, "order_id": "o-2"}
    )
    assert (await _answer(client, repeat, m, order_id="o-2")).status_code == 201
    assert (await _answer(client, once, m)).status_code == 201
    left = [
        (s["survey_id"], s["order_id"])
        for s in (await _pending(client, m))["items"]
        if s["survey_id"] in (repeat, once)
    ]
    # the repeatable survey's invitation about o-1 is still to answer; the one-answer survey
    # is done with
    assert left == [(repeat, "o-1")]
    # invited again about o-2 after answering it: a new invitation
    assert (await _invite(client, repeat, {"member_id": m, "order_id": "o-2"})).json()[
        "invited"
    ] == 1
    export = (await client.get(f"/v1/feedback/members/{m}/export", headers=as_member(m))).json()
    answered = sorted(
        (i["order_id"], i["answered_at"] is not None)
        for i in export["survey_invitations"]
        if i["survey_id"] == repeat
    )
    assert answered == [("o-1", False), ("o-2", False), ("o-2", True)]


async def test_a_survey_for_every_member_is_listed_until_answered(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client = isolated_feedback.client
    m = mid()
    everyone = await _survey(client, audience="members")
    invited_only = await _survey(client)
    listed = [s["survey_id"] for s in (await _pending(client, m))["items"]]
    assert everyone in listed and invited_only not in listed
    # invited to it as well: listed once, with the invitation's subject
    await _invite(client, everyone, {"member_id": m, "order_id": "o-9"})
    mine = [s for s in (await _pending(client, m))["items"] if s["survey_id"] == everyone]
    assert [s["order_id"] for s in mine] == ["o-9"]
    # a member token answers only what is addressed to it; a storefront anything
    refused = await _answer(client, invited_only, m)
    assert refused.status_code == 404 and refused.json()["type"].endswith("/survey-not-found")
    assert (await _answer(client, everyone, m, order_id="o-9")).status_code == 201
    assert everyone not in [s["survey_id"] for s in (await _pending(client, m))["items"]]
    shop = await client.post(
        f"/v1/surveys/{invited_only}/responses",
        json={"member_id": m, "answers": {"nps": 9}},
        headers=STOREFRONT,
    )
    assert shop.status_code == 201, shop.text


async def test_the_list_is_cursor_paged_most_recent_first(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client, clock = isolated_feedback.client, isolated_feedback.clock
    m = mid()
    made = []
    for _ in range(3):
        clock.advance(minutes=1)
        made.append(await _survey(client))
        await _invite(client, made[-1], {"member_id": m})
    first = await _pending(client, m, limit=2)
    assert [s["survey_id"] for s in first["items"]][:2] == made[::-1][:2]
    second = await _pending(client, m, limit=2, cursor=first["next_cursor"])
    assert made[0] in [s["survey_id"] for s in second["items"]]
    assert not {s["survey_id"] for s in second["items"]} & set(made[1:])
    bad = await client.get(
        f"/v1/members/{m}/surveys", params={"cursor": "bm9wZQ=="}, headers=as_member(m)
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


async def test_a_member_reads_its_complaints_without_ops_working_data(
    isolated_feedback: IsolatedFeedback,
) -> None:
    client = isolated_feedback.client
    m = mid()
    body = {"member_id": m, "channel": "app", "category": "x", "description": "broken"}
    opened = await client.post("/v1/complaints", json=body, headers=as_member(m))
    assert opened.status_code == 201, opened.text
    mine = opened.json()
    for hidden in ("severity", "cause", "owner_id", "member_value_tier", "sla", "history"):
        assert hidden not in mine, hidden
    await client.post(
        f"/v1/complaints/{mine['id']}/actions",
        json={"action": "acknowledge", "note": "VIP, churn risk: handle first"},
        headers=OPS,
    )
    listed = await client.get(f"/v1/members/{m}/complaints", headers=as_member(m))
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["items"]] == [mine["id"]]
    assert listed.json()["items"][0]["status"] == "acknowledged"
    export = await client.get(f"/v1/feedback/members/{m}/export", headers=as_member(m))
    assert "churn risk" not in export.text and "projection" not in export.json()
    history = export.json()["complaints"][0]["history"]
    assert [h["action"] for h in history] == ["open", "acknowledge"]
    assert all(set(h) == {"action", "from_status", "to_status", "at"} for h in history)
    full = await client.get(f"/v1/feedback/members/{m}/export", headers=OPS)
    assert "churn risk" in full.text


async def test_erasure_removes_invitations_and_refuses_new_ones(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    m = mid()
    survey = await _survey(fb.client)
    await _invite(fb.client, survey, {"member_id": m})
    consumer = build_consumer(fb.settings, fb.sessionmaker, group_id=f"t-{uuid.uuid4().hex[:8]}")
    await consumer._apply([MemberErasedV1.sample(member_id=m).event(m)])
    assert survey not in [s["survey_id"] for s in (await _pending(fb.client, m))["items"]]
    assert (await fb.client.get(f"/v1/feedback/members/{m}/export")).status_code == 404
    again = await _invite(fb.client, survey, {"member_id": mid()}, {"member_id": m})
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/member-erased")
    assert again.json()["errors"][0]["field"] == "body.invitations.1.member_id"
