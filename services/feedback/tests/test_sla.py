"""SLA clocks with a controllable clock: policies, business hours, holidays, pause, breaches."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from feedback.sla.service import detect_breaches
from feedback.testing import IsolatedFeedback

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


async def open_complaint(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {
        "member_id": member(),
        "channel": "app",
        "category": "delivery",
        "description": "late",
        **extra,
    }
    response = await client.post("/v1/complaints", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def act(client: httpx.AsyncClient, cid: str, action: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        f"/v1/complaints/{cid}/actions",
        json={"action": action, **extra},
        headers={"X-Operator-Id": "agent-ann"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def detect(fb: IsolatedFeedback, now: datetime) -> list[str]:
    async with fb.sessionmaker() as session, session.begin():
        return await detect_breaches(session, now)


async def breach_events(fb: IsolatedFeedback, cid: str) -> list[dict[str, Any]]:
    events = await fb.outbox("loyalty.complaint.sla_breached.v1")
    return [e for e in events if e["data"]["complaint_id"] == cid]


async def test_default_policies_general_and_enquiries(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    fb.clock.set(T0)
    general = await open_complaint(fb.client)
    assert general["sla"]["policy_ids"] == ["general"]
    assert at(general["first_response_due_at"]) == T0 + timedelta(hours=24)
    assert at(general["resolution_due_at"]) == T0 + timedelta(hours=72)
    assert general["sla"]["calendar_id"] is None  # 24/7

    online = await open_complaint(fb.client, kind="enquiry", channel="online_chat")
    assert at(online["first_response_due_at"]) == T0 + timedelta(minutes=10)
    assert set(online["sla"]["policy_ids"]) == {"online-enquiry", "general"}
    offline = await open_complaint(fb.client, kind="enquiry", channel="phone")
    assert at(offline["first_response_due_at"]) == T0 + timedelta(minutes=30)
    # a complaint (not an enquiry) on chat keeps the 24 h first response
    chat = await open_complaint(fb.client, channel="online_chat")
    assert at(chat["first_response_due_at"]) == T0 + timedelta(hours=24)


async def test_policies_are_data_ops_can_read_and_change(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    listed = (await fb.client.get("/v1/sla/policies")).json()
    by_id = {p["id"]: p for p in listed}
    assert by_id["general"]["first_response_minutes"] == 1440
    assert by_id["general"]["escalated_resolution_minutes"] == 2880
    assert by_id["online-enquiry"]["first_response_minutes"] == 10
    assert by_id["offline-enquiry"]["first_response_minutes"] == 30
    assert by_id["tier-diamond"]["match"]["tier"] == "diamond"
    assert all(p["goodwill_points"] == 0 for p in listed)  # goodwill is off by default

    bad = await fb.client.put(
        "/v1/sla/policies/x-unknown-cal", json={"name": "x", "calendar_id": "nope"}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.calendar_id"
    negative = await fb.client.put(
        "/v1/sla/policies/x-neg", json={"name": "x", "first_response_minutes": 0}
    )
    assert negative.status_code == 422
    calendar = await fb.client.put(
        "/v1/sla/calendars/bad-tz",
        json={"name": "x", "timezone": "Mars/Olympus", "hours": {"mon": [["09:00", "18:00"]]}},
    )
    assert calendar.status_code == 422
    assert "Mars/Olympus" in calendar.json()["detail"]


async def test_business_hours_holidays_and_pause_credit(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    cal = f"office-{uuid.uuid4().hex[:6]}"
    created = await fb.client.put(
        f"/v1/sla/calendars/{cal}",
        json={
            "name": "Shanghai desk",
            "timezone": "Asia/Shanghai",
            "hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": ["2026-03-09"],  # Monday
        },
    )
    assert created.status_code == 201, created.text
    policy = await fb.client.put(
        f"/v1/sla/policies/critical-{cal}",
        json={
            "name": "critical on office hours",
            "priority": 100,
            "match": {"severity": "critical"},
            "first_response_minutes": 120,
            "resolution_minutes": 600,
            "calendar_id": cal,
        },
    )
    assert policy.status_code == 201, policy.text

    # Friday 17:00 Shanghai
    fb.clock.set(datetime(2026, 3, 6, 17, 0, tzinfo=SHANGHAI))
    c = await open_complaint(fb.client, severity="critical")
    assert c["sla"]["calendar_id"] == cal
    # 60 min on Friday, Monday is a holiday, 60 more on Tuesday -> Tue 10:00
    assert at(c["first_response_due_at"]) == datetime(2026, 3, 10, 10, 0, tzinfo=SHANGHAI)
    # 600 min: 60 on Friday + 540 (all of Tuesday) -> Tue 18:00
    assert at(c["resolution_due_at"]) == datetime(2026, 3, 10, 18, 0, tzinfo=SHANGHAI)

    fb.clock.set(datetime(2026, 3, 6, 17, 10, tzinfo=SHANGHAI))
    await act(fb.client, c["id"], "acknowledge")
    fb.clock.set(datetime(2026, 3, 6, 17, 30, tzinfo=SHANGHAI))
    paused = await act(fb.client, c["id"], "pause", note="waiting for photos")
    assert paused["sla"]["paused"] is True
    assert paused["sla"]["resolution"]["running"] is False
    # while paused no clock can breach, however late it gets
    assert c["id"] not in await detect(fb, datetime(2026, 3, 20, tzinfo=SHANGHAI))
    fb.clock.set(datetime(2026, 3, 10, 9, 30, tzinfo=SHANGHAI))  # Tuesday
    resumed = await act(fb.client, c["id"], "resume", note="photos received")
    # working time paused: 30 min Friday + 30 min Tuesday
    assert resumed["sla"]["paused_seconds"] == 3600
    assert resumed["history"][-1]["details"]["credited_seconds"] == 3600
    # 570 working minutes were left at the pause: from Tue 09:30 -> Wed 10:00
    assert at(resumed["resolution_due_at"]) == datetime(2026, 3, 11, 10, 0, tzinfo=SHANGHAI)


async def test_breach_detected_once_and_listed(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    start = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
    fb.clock.set(start)
    c = await open_complaint(fb.client)
    ok = await open_complaint(fb.client)
    await act(fb.client, ok["id"], "acknowledge")
    assert await breach_events(fb, c["id"]) == []
    # one second before the deadline: nothing
    assert c["id"] not in await detect(fb, start + timedelta(hours=24, seconds=-1))
    after = start + timedelta(hours=24, seconds=1)
    assert c["id"] in await detect(fb, after)
    assert c["id"] not in await detect(fb, after + timedelta(minutes=5))
    events = await breach_events(fb, c["id"])
    assert len(events) == 1
    data = events[0]["data"]
    assert data["clock"] == "first_response"
    assert events[0]["id"] == data["breach_id"]
    assert at(data["due_at"]) == start + timedelta(hours=24)

    body = (await fb.client.get(f"/v1/complaints/{c['id']}")).json()
    assert body["breached"] is True
    assert body["sla"]["first_response"]["breached"] is True
    breached = (await fb.client.get("/v1/complaints", params={"breached": "true"})).json()
    ids = [x["id"] for x in breached["items"]]
    assert c["id"] in ids and ok["id"] not in ids
    fine = (await fb.client.get("/v1/complaints", params={"breached": "false"})).json()
    assert ok["id"] in [x["id"] for x in fine["items"]]

    # answering late does not publish the breach a second time
    fb.clock.set(after + timedelta(hours=1))
    await act(fb.client, c["id"], "acknowledge")
    assert len(await breach_events(fb, c["id"])) == 1
    # the resolution clock breaches separately, once
    assert c["id"] in await detect(fb, start + timedelta(hours=73))
    assert c["id"] not in await detect(fb, start + timedelta(hours=80))
    clocks = sorted(e["data"]["clock"] for e in await breach_events(fb, c["id"]))
    assert clocks == ["first_response", "resolution"]
    # no goodwill unless a policy grants it
    goodwill = await fb.outbox("loyalty.complaint.goodwill_granted.v1")
    assert all(g["data"]["complaint_id"] != c["id"] for g in goodwill)


async def test_late_action_records_the_breach_without_the_job(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    start = datetime(2026, 4, 10, 8, 0, tzinfo=UTC)
    fb.clock.set(start)
    c = await open_complaint(fb.client, kind="enquiry", channel="online_chat")
    fb.clock.advance(minutes=11)
    body = await act(fb.client, c["id"], "respond", note="sorry for the wait")
    assert body["sla"]["first_response"]["breached"] is True
    assert body["sla"]["first_response"]["met_at"] is not None
    assert len(await breach_events(fb, c["id"])) == 1
    await detect(fb, start + timedelta(hours=1))
    assert len(await breach_events(fb, c["id"])) == 1


async def test_queue_due_before(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    fb.clock.set(start)
    soon = await open_complaint(fb.client, kind="enquiry", channel="web")  # due in 10 min
    later = await open_complaint(fb.client)  # due in 24 h
    params = {"due_before": (start + timedelta(hours=1)).isoformat()}
    ids = [x["id"] for x in (await fb.client.get("/v1/complaints", params=params)).json()["items"]]
    assert soon["id"] in ids and later["id"] not in ids
    await act(fb.client, soon["id"], "respond")  # its running clock is now the 72 h resolution
    ids = [x["id"] for x in (await fb.client.get("/v1/complaints", params=params)).json()["items"]]
    assert soon["id"] not in ids


async def test_pause_on_24_7_shifts_deadline_and_escalation_sets_48h(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    fb.clock.set(start)
    c = await open_complaint(fb.client)
    fb.clock.set(start + timedelta(hours=1))
    await act(fb.client, c["id"], "acknowledge")
    fb.clock.set(start + timedelta(hours=2))
    await act(fb.client, c["id"], "pause")
    fb.clock.set(start + timedelta(hours=12))
    body = await act(fb.client, c["id"], "resume")
    assert body["sla"]["paused_seconds"] == 10 * 3600
    assert at(body["resolution_due_at"]) == start + timedelta(hours=82)
    assert c["id"] not in await detect(fb, start + timedelta(hours=81))
    fb.clock.set(start + timedelta(hours=13))
    escalated = await act(fb.client, c["id"], "escalate", note="needs tech + sales")
    assert at(escalated["resolution_due_at"]) == start + timedelta(hours=13 + 48)
    assert escalated["sla"]["resolution"]["target_minutes"] == 2880


async def test_reopen_window_and_new_resolution_cycle(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    start = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    fb.clock.set(start)
    old = await open_complaint(fb.client)
    await act(fb.client, old["id"], "acknowledge")
    await act(fb.client, old["id"], "resolve")
    fb.clock.set(start + timedelta(hours=fb.settings.reopen_window_hours, minutes=1))
    late = await fb.client.post(
        f"/v1/complaints/{old['id']}/actions",
        json={"action": "reopen"},
        headers={"X-Operator-Id": "agent-ann"},
    )
    assert late.status_code == 409
    problem = late.json()
    assert problem["type"].endswith("/reopen-window-expired")
    assert problem["current_state"] == "resolved"
    assert problem["allowed_actions"] == ["close"]
    shown = (await fb.client.get(f"/v1/complaints/{old['id']}")).json()
    assert shown["allowed_actions"] == ["close"]
    window = timedelta(hours=fb.settings.reopen_window_hours)
    assert at(shown["reopen_until"]) == at(shown["resolved_at"]) + window

    fb.clock.set(start)
    c = await open_complaint(fb.client)
    await act(fb.client, c["id"], "acknowledge")
    resolved = await act(fb.client, c["id"], "resolve")
    assert sorted(resolved["allowed_actions"]) == ["close", "reopen"]
    fb.clock.set(start + timedelta(hours=2))
    reopened = await act(fb.client, c["id"], "reopen", note="still broken")
    assert reopened["status"] == "in_progress"
    assert reopened["resolved_at"] is None
    assert at(reopened["resolution_due_at"]) == start + timedelta(hours=2 + 72)
    reopened_events = await fb.outbox("loyalty.complaint.reopened.v1")
    assert [e["data"]["complaint_id"] for e in reopened_events].count(c["id"]) == 1


async def test_goodwill_points_per_policy_granted_once_per_breach(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    policy = await fb.client.put(
        "/v1/sla/policies/goodwill-social",
        json={
            "name": "social complaints: 100 goodwill points per breach",
            "match": {"kind": "complaint", "channel_class": "online", "severity": "low"},
            "goodwill_points": 100,
        },
    )
    assert policy.status_code == 201, policy.text
    start = datetime(2026, 8, 1, 0, 0, tzinfo=UTC)
    fb.clock.set(start)
    c = await open_complaint(fb.client, channel="social", severity="low")
    assert "goodwill-social" in c["sla"]["policy_ids"]
    await detect(fb, start + timedelta(hours=25))
    await detect(fb, start + timedelta(hours=26))
    grants = [
        g
        for g in await fb.outbox("loyalty.complaint.goodwill_granted.v1")
        if g["data"]["complaint_id"] == c["id"]
    ]
    assert len(grants) == 1
    grant = grants[0]
    assert grant["data"]["points"] == 100
    assert grant["id"] == grant["data"]["grant_id"]
    assert grant["subject"] == c["member_id"]
    # switch it off again so other complaints in this module are unaffected
    off = await fb.client.put(
        "/v1/sla/policies/goodwill-social",
        json={"name": "off", "active": False},
    )
    assert off.status_code == 200
