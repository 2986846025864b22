"""API.md: "Writes accept Idempotency-Key" on the segmentation writes that are not
idempotent by themselves (recording a contact; the recompute is in test_jobs.py)."""

import uuid

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import member_id


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
