"""Contact frequency cap and channel preferences; erasure and export."""

import uuid

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import complaint, enrolled, erased, member_id, order


async def test_frequency_cap_and_opt_out(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    m = member_id()
    policy = await env.client.put("/v1/contact-policy", json={"cap": 2, "period_days": 7})
    assert policy.status_code == 200
    for day in ("2026-01-01", "2026-01-03"):
        recorded = await env.client.post(
            "/v1/contacts",
            json={"member_id": m, "channel": "email", "contacted_at": f"{day}T10:00:00+00:00"},
        )
        assert recorded.status_code == 201, recorded.text
    check = (
        await env.client.post(
            "/v1/contacts/check",
            json={"member_id": m, "channel": "sms", "at": "2026-01-05T10:00:00+00:00"},
        )
    ).json()
    assert check["allowed"] is False and check["contacts_in_period"] == 2
    assert check["next_allowed_at"].startswith("2026-01-08T10:00:00")
    refused = await env.client.post(
        "/v1/contacts",
        json={"member_id": m, "channel": "sms", "contacted_at": "2026-01-05T10:00:00+00:00"},
    )
    assert refused.status_code == 409 and refused.json()["type"].endswith("contact-not-allowed")
    later = await env.client.post(
        "/v1/contacts/check",
        json={"member_id": m, "channel": "sms", "at": "2026-01-08T10:00:01+00:00"},
    )
    assert later.json()["allowed"] is True

    prefs = await env.client.put(
        f"/v1/profiles/{m}/contact-preferences",
        json={"preferred_channels": ["app_push"], "opted_out_channels": ["sms"]},
    )
    assert prefs.status_code == 200
    opted = (
        await env.client.post(
            "/v1/contacts/check",
            json={"member_id": m, "channel": "sms", "at": "2026-02-01T10:00:00+00:00"},
        )
    ).json()
    assert opted["allowed"] is False and opted["reasons"] == ["the member opted out of sms"]
    assert opted["preferred_channels"] == ["app_push"]
    bad = await env.client.post("/v1/contacts/check", json={"member_id": m, "channel": "pigeon"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.channel"


async def test_recording_a_contact_is_idempotent_by_contact_id(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m, cid = member_id(), f"ct-{uuid.uuid4().hex}"
    body = {"contact_id": cid, "member_id": m, "channel": "email", "campaign": "spring"}
    first = await env.client.post("/v1/contacts", json=body)
    again = await env.client.post("/v1/contacts", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["contact_id"] == cid and again.json()["contacts_in_period"] == 1
    other = await env.client.post("/v1/contacts", json={**body, "channel": "sms"})
    assert other.status_code == 409


async def test_erasure_removes_personal_data_and_keeps_aggregates(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m, other = member_id(), member_id()
    await env.feed(
        enrolled(m),
        order(m, "2025-12-05", "100.00"),
        complaint(m, "2025-12-06"),
        enrolled(other),
        order(other, "2025-12-07", "20.00"),
    )
    seg = (
        await env.client.post(
            "/v1/segments", json={"name": "buyers", "condition": "order_count >= 1"}
        )
    ).json()
    assert seg["member_count"] == 2
    await env.client.post("/v1/contacts", json={"member_id": m, "channel": "email"})
    export = await env.client.get(f"/v1/profiles/{m}/export")
    assert export.status_code == 200
    data = export.json()
    assert data["profile"]["total_spend"] == "100.00" and len(data["orders"]) == 1
    assert data["orders"][0]["amount"] == "100.00" and len(data["contacts"]) == 1
    assert data["segments"][0]["segment_id"] == seg["segment_id"]

    period = {"from": "2025-12-01T00:00:00+00:00", "to": "2026-01-01T00:00:00+00:00"}
    before = (await env.client.get("/v1/analytics/kpis", params=period)).json()["kpis"]
    await env.feed(erased(m))
    assert (await env.client.get(f"/v1/profiles/{m}")).status_code == 404
    assert (await env.client.get(f"/v1/profiles/{m}/export")).status_code == 404
    assert (await env.client.get(f"/v1/segments/{seg['segment_id']}")).json()["member_count"] == 1
    left = await env.sql(
        "SELECT (SELECT count(*) FROM member_orders WHERE member_id = :m) "
        "+ (SELECT count(*) FROM member_activities WHERE member_id = :m) "
        "+ (SELECT count(*) FROM contacts WHERE member_id = :m) "
        "+ (SELECT count(*) FROM segment_history WHERE member_id = :m)",
        m=m,
    )
    assert left[0][0] == 0
    after = (await env.client.get("/v1/analytics/kpis", params=period)).json()["kpis"]
    assert after["revenue"] == before["revenue"]
    assert (after["revenue"]["current"], after["revenue"]["previous"]) == ("120.00", "0.00")
    assert after["buyers"]["current"] == 2  # the anonymous orders still count


async def test_nothing_brings_an_erased_profile_back(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """Late events are skipped (the tombstone), writes naming the member are refused."""
    env = fresh_segmentation
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-12-05", "100.00"))
    assert (await env.client.get(f"/v1/profiles/{m}")).status_code == 200
    await env.feed(erased(m))
    # an order published before the erasure but delivered after it, and a complaint
    await env.feed(order(m, "2025-12-06", "30.00"), complaint(m, "2025-12-06"))
    assert (await env.client.get(f"/v1/profiles/{m}")).status_code == 404
    left = await env.sql(
        "SELECT (SELECT count(*) FROM profiles WHERE member_id = :m) "
        "+ (SELECT count(*) FROM member_orders WHERE member_id = :m)",
        m=m,
    )
    assert left[0][0] == 0
    refused = [
        await env.client.post("/v1/contacts", json={"member_id": m, "channel": "email"}),
        await env.client.post("/v1/contacts/check", json={"member_id": m, "channel": "sms"}),
        await env.client.put(
            f"/v1/profiles/{m}/contact-preferences",
            json={"preferred_channels": ["email"], "opted_out_channels": []},
        ),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        assert response.json()["type"].endswith("/member-erased")
    assert (await env.sql("SELECT count(*) FROM contacts WHERE member_id = :m", m=m))[0][0] == 0
