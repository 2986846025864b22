"""Stored Idempotency-Key answers are forgotten after the retention period (hourly job)."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from feedback.testing import IsolatedFeedback
from feedback.worker import run_periodic_jobs


async def test_old_keys_are_pruned_and_recent_ones_kept(
    isolated_feedback: IsolatedFeedback,
) -> None:
    fb = isolated_feedback
    member = f"m-{uuid.uuid4().hex[:12]}"
    body = {
        "member_id": member,
        "channel": "email",
        "kind": "complaint",
        "category": "delivery",
        "description": "The parcel arrived broken",
    }
    old_key, new_key = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    for key in (old_key, new_key):
        answer = await fb.client.post("/v1/complaints", json=body, headers={"Idempotency-Key": key})
        assert answer.status_code == 201, answer.text
    now = datetime.now(UTC)
    retention = timedelta(hours=fb.settings.idempotency_retention_hours)
    async with fb.engine.begin() as conn:
        await conn.execute(
            text("UPDATE idempotency_keys SET created_at = :at WHERE key = :k"),
            {"at": now - retention - timedelta(minutes=1), "k": old_key},
        )
    await run_periodic_jobs(fb.settings, fb.sessionmaker, now, monthly=True)
    async with fb.engine.connect() as conn:
        kept = (
            (
                await conn.execute(
                    text("SELECT key FROM idempotency_keys WHERE key = ANY(:ks)"),
                    {"ks": [old_key, new_key]},
                )
            )
            .scalars()
            .all()
        )
    assert kept == [new_key]
