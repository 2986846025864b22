"""API.md: "Writes accept Idempotency-Key" on the segmentation writes that are not
idempotent by themselves (recording a contact; the recompute is in test_jobs.py)."""

import uuid

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id


async def test_recording_a_contact_with_an_idempotency_key_counts_once(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    key = {"Idempotency-Key": f"ik-{uuid.uuid4().hex}"}
    body = {"member_id": m, "channel": "email", "campaign": "spring"}
    first = await env.client.post("/v1/contacts", json=body, headers=key)
    again = await env.client.post("/v1/contacts", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again.json()["contact_id"] == key["Idempotency-Key"]
    assert again.json()["contacts_in_period"] == 1
    other = await env.client.post("/v1/contacts", json={**body, "channel": "sms"}, headers=key)
    assert other.status_code == 409
    without = await env.client.post("/v1/contacts", json=body)  # no key: a second contact
    assert without.status_code == 201 and without.json()["contacts_in_period"] == 2
    too_long = await env.client.post(
        "/v1/contacts", json=body, headers={"Idempotency-Key": "k" * 65}
    )
    assert too_long.status_code == 422
    assert "header.Idempotency-Key" in [e["field"] for e in too_long.json()["errors"]]


async def test_tags_segments_and_profile_tags_replay_with_the_same_idempotency_key(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    suffix = uuid.uuid4().hex[:8]
    writes = [
        ("/v1/tags", {"name": f"vip-{suffix}", "kind": "manual"}, {"name": f"other-{suffix}"}),
        (
            "/v1/segments",
            {"name": f"big spenders {suffix}", "condition": "total_spend > 1000"},
            {"name": f"small spenders {suffix}", "condition": "total_spend < 10"},
        ),
    ]
    for path, body, changed in writes:
        key = {"Idempotency-Key": f"ik-{uuid.uuid4().hex}"}
        first = await env.client.post(path, json=body, headers=key)
        again = await env.client.post(path, json=body, headers=key)
        assert (first.status_code, again.status_code) == (201, 201), again.text
        assert again.json() == first.json()
        other = await env.client.post(path, json={**body, **changed}, headers=key)
        assert other.status_code == 409
        assert other.json()["type"].endswith("/idempotency-key-reused")
        unkeyed = await env.client.post(path, json=body)  # no key: a real duplicate
        assert unkeyed.status_code == 409 and not unkeyed.json()["type"].endswith(
            "/idempotency-key-reused"
        )

    m = member_id()
    await env.feed(enrolled(m))
    key = {"Idempotency-Key": f"ik-{uuid.uuid4().hex}"}
    tagging = {"add": [f"vip-{suffix}"]}
    first = await env.client.post(f"/v1/profiles/{m}/tags", json=tagging, headers=key)
    again = await env.client.post(f"/v1/profiles/{m}/tags", json=tagging, headers=key)
    assert (first.status_code, again.status_code) == (200, 200), first.text
    assert again.json() == first.json()
    assert first.json()["manual_tags"] == [f"vip-{suffix}"]


async def test_the_daily_run_forgets_idempotency_keys_past_their_retention(
    fresh_segmentation: FreshSegmentation,
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from segmentation.analytics.jobs import DailyRecompute

    env = fresh_segmentation
    keys = [f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"]
    for key in keys:
        body = {"name": key, "kind": "manual"}
        assert (
            await env.client.post("/v1/tags", json=body, headers={"Idempotency-Key": key})
        ).status_code == 201
    sessionmaker = env.app.state.sessionmaker
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE idempotency_keys SET created_at = :at WHERE key = :k"),
            {
                "at": now - timedelta(hours=env.settings.idempotency_retention_hours, minutes=1),
                "k": keys[0],
            },
        )
    await DailyRecompute(env.settings, sessionmaker).run_once(now)
    async with sessionmaker() as session:
        kept = (
            (
                await session.execute(
                    text("SELECT key FROM idempotency_keys WHERE key = ANY(:ks)"), {"ks": keys}
                )
            )
            .scalars()
            .all()
        )
    assert kept == [keys[1]]
