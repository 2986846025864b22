"""/v1/ops through the gateway: one pipeline report, one dead-letter list, actions routed to
the service that holds the item (in-process services on real Postgres and the real broker)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from gateway.testing import TEST_KEYS, bearer
from loyalty_shared import dead_letters
from loyalty_shared.events import make_event
from loyalty_shared.testing import RoutingTransport
from loyalty_shared.topics import FEEDBACK_EVENTS


async def _dead_letter(app: FastAPI, member: str) -> str:
    """A record points' consumer gave up on, as the consumer keeps it."""
    event = make_event("loyalty/feedback", "loyalty.survey.completed.v1", member, {"x": 1})
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=FEEDBACK_EVENTS,
        partition=0,
        offset=int(uuid.uuid4().int % 10**12),
        timestamp=0,
        timestamp_type=0,
        key=member.encode(),
        value=event.to_json_bytes(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(("ce_type", event.type.encode()),),
    )
    async with app.state.engine.begin() as conn:
        await dead_letters.record_dead_letter(
            conn,
            group="points",
            record=record,
            event_id=event.id,
            event_type=event.type,
            error="KeyError: 'survey_id'",
            error_type="KeyError",
            attempts=3,
        )
    return event.id


def _mine(body: dict[str, Any], event_id: str) -> dict[str, Any]:
    (item,) = [i for i in body["items"] if i["event_id"] == event_id]
    return item


async def test_pipeline_report_has_every_service_and_names_one_that_is_down(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    ops = bearer(TEST_KEYS["ops"])
    report = await gateway_client.get("/v1/ops/pipeline", headers=ops)
    assert report.status_code == 200, report.text
    body = report.json()
    assert set(body["services"]) == {"points", "segmentation", "feedback", "webhooks"}
    for name, part in body["services"].items():
        assert part["service"] == name
        assert {"backlog", "oldest_unsent_age_seconds", "parked"} <= set(part["outbox"])
        assert isinstance(part["dead_letters"], int)
        assert isinstance(part["jobs"], list)
    assert body["services"]["segmentation"]["consumer"]["group"] == "segmentation"
    assert body["services"]["webhooks"]["consumer"]["group"] == "webhooks"
    for name, part in body["services"].items():
        consumer = part["consumer"]
        assert "error" not in consumer, (name, consumer)  # the broker answered
        assert isinstance(consumer["lag"], int)
        assert {p["topic"] for p in consumer["partitions"]} <= set(consumer["topics"])
    assert set(body["totals"]) == {"outbox_backlog", "parked", "dead_letters", "consumer_lag"}

    upstreams.down.add("feedback")
    degraded = (await gateway_client.get("/v1/ops/pipeline", headers=ops)).json()
    assert degraded["services"]["feedback"] == {"status": "unavailable", "reason": "unavailable"}
    assert degraded["services"]["points"]["service"] == "points"


async def test_dead_letters_listed_shown_discarded_with_a_reason_by_admins_only(
    gateway_client: httpx.AsyncClient, points_app: FastAPI
) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    event_id = await _dead_letter(points_app, member)

    for who in ("ops", "storefront"):
        denied = await gateway_client.get("/v1/ops/dead-letters", headers=bearer(TEST_KEYS[who]))
        assert denied.status_code == 403

    listed = await gateway_client.get("/v1/ops/dead-letters", params={"service": "points"})
    assert listed.status_code == 200, listed.text
    item = _mine(listed.json(), event_id)
    assert item["service"] == "points" and item["kind"] == "dlq"
    assert item["error_type"] == "KeyError" and item["attempts"] == 3
    ref = item["ref"]
    assert ref.startswith("points.dlq.")

    shown = await gateway_client.get(f"/v1/ops/dead-letters/{ref}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["payload"]["id"] == event_id

    no_reason = await gateway_client.post(f"/v1/ops/dead-letters/{ref}/discard", json={})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "body.reason"

    gone = await gateway_client.post(
        f"/v1/ops/dead-letters/{ref}/discard", json={"reason": "test data, not a real survey"}
    )
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"ref": ref, "status": "discarded"}
    again = await gateway_client.post(f"/v1/ops/dead-letters/{ref}/replay", json={})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-resolved")

    open_now = await gateway_client.get("/v1/ops/dead-letters", params={"service": "points"})
    assert all(i["event_id"] != event_id for i in open_now.json()["items"])
    async with points_app.state.engine.connect() as conn:
        audit = (
            await conn.exec_driver_sql(
                "SELECT action, actor, reason FROM pipeline_actions WHERE event_id = $1",
                (event_id,),
            )
        ).all()
    assert [tuple(a) for a in audit] == [("discard", "test-admin", "test data, not a real survey")]


async def test_an_unknown_or_foreign_ref_is_a_404(gateway_client: httpx.AsyncClient) -> None:
    for ref in ("points.dlq.999999999", "nobody.dlq.1"):
        response = await gateway_client.get(f"/v1/ops/dead-letters/{ref}")
        assert response.status_code == 404, (ref, response.text)


async def test_replay_of_a_dead_letter_sends_it_back_to_its_topic(
    gateway_client: httpx.AsyncClient, points_app: FastAPI
) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    event_id = await _dead_letter(points_app, member)
    listed = await gateway_client.get("/v1/ops/dead-letters", params={"service": "points"})
    ref = _mine(listed.json(), event_id)["ref"]
    replayed = await gateway_client.post(
        f"/v1/ops/dead-letters/{ref}/replay", json={"reason": "handler fixed"}
    )
    assert replayed.status_code == 200, replayed.text
    shown = (await gateway_client.get(f"/v1/ops/dead-letters/{ref}")).json()
    assert shown["status"] == "replayed"
