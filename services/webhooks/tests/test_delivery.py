"""Events from Kafka to a real receiver on loopback: signed as documented, retried, in order
per member, and one endpoint that hangs never delays another."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import text

from loyalty_shared.contracts.feedback import ComplaintSlaBreachedV1
from loyalty_shared.contracts.points import MemberErasedV1, PointsEarnedV1, TierChangedV1
from loyalty_shared.pipeline import PIPELINE_REGISTRY
from loyalty_shared.testing import eventually
from webhooks.testing import IsolatedWebhooks
from webhooks.testing_receiver import Received, receiver

DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
TIER = TierChangedV1.TYPE
EARNED = PointsEarnedV1.TYPE


def snippet(language: str) -> str:
    """The verification snippet docs/webhooks.md shows for ``language``."""
    found = re.search(
        rf"<!-- verify-{language} -->\n```{language}\n(.*?)```", DOCS.read_text(), re.S
    )
    assert found, f"docs/webhooks.md has no {language} snippet"
    return found.group(1)


def python_verify() -> Any:
    namespace: dict[str, Any] = {}
    exec(snippet("python"), namespace)
    return namespace["verify"]


def node_verify(secret: str, got: Received) -> bool:
    script = snippet("javascript") + (
        "\nconst input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "process.stdout.write(String(verify(input.secret, input.headers, "
        "Buffer.from(input.body, 'base64'))));\n"
    )
    import base64

    payload = {
        "secret": secret,
        "headers": got.headers,
        "body": base64.b64encode(got.body).decode(),
    }
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(payload), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout == "true"


def member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


async def test_an_event_arrives_signed_as_documented(isolated_webhooks: IsolatedWebhooks) -> None:
    wh = isolated_webhooks
    async with receiver() as r, wh.working():
        sub = await wh.subscribe(r.url("/tiers"), TIER)
        other = await wh.subscribe(r.url("/complaints"), ComplaintSlaBreachedV1.TYPE)
        m = member()
        await wh.send(PointsEarnedV1, m)  # no subscription wants it
        event_id = await wh.send(TierChangedV1, m, to_tier="gold")
        await eventually(lambda: r.about("/tiers", m), timeout=20)

    [got] = r.about("/tiers", m)
    assert r.about("/complaints", m) == [] and other["event_types"] == [ComplaintSlaBreachedV1.TYPE]
    assert got.headers["loyalty-webhook-id"] == event_id
    assert got.headers["loyalty-webhook-type"] == TIER
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    assert got.headers["loyalty-webhook-signature"].startswith("k1=")
    body = json.loads(got.body)
    assert body["id"] == event_id and body["type"] == TIER and body["subject"] == m
    assert body["data"] == TierChangedV1.sample(member_id=m, to_tier="gold").model_dump(mode="json")
    verify = python_verify()
    assert verify(sub["secret"], got.headers, got.body)
    assert not verify(sub["secret"] + "x", got.headers, got.body)
    assert not verify(sub["secret"], got.headers, got.body + b" ")
    if shutil.which("node"):
        assert node_verify(sub["secret"], got)
        assert not node_verify("whsec_wrong", got)


async def test_fails_five_times_then_gets_it_once_more_and_no_more(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    async with receiver() as r, wh.working():
        sub = await wh.subscribe(r.url("/flaky", fail_first=5), TIER)
        m = member()
        event_id = await wh.send(TierChangedV1, m)

        async def delivered() -> list[dict[str, Any]]:
            return [d for d in await wh.deliveries(sub["id"]) if d["status"] == "delivered"]

        [delivery] = await eventually(delivered, timeout=20)
        # a sync point: a later event to the same endpoint (failing five times as well) is
        # applied after it; by then a stray repeat of the first would have arrived
        await wh.send(TierChangedV1, m)
        await eventually(lambda: r.effects["/flaky"] == 2, timeout=20)
        detail = await wh.delivery(sub["id"], delivery["id"])

    assert r.ids("/flaky").count(event_id) == 6
    assert r.effects["/flaky"] == 2  # each event applied once
    assert detail["attempts"] == 6
    log = detail["attempt_log"]
    assert [a["outcome"] for a in log] == ["retry"] * 5 + ["delivered"]
    assert [a["status_code"] for a in log] == [500] * 5 + [200]
    assert all(a["error"].startswith("HTTP 500: not now") for a in log[:5])
    assert all(a["next_attempt_at"] > a["attempted_at"] for a in log[:5])
    assert log[-1]["error"] is None and log[-1]["next_attempt_at"] is None
    assert all(a["latency_ms"] >= 0 for a in log)
    assert detail["event"]["id"] == event_id


async def test_one_members_events_arrive_in_order_through_retries(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    async with receiver() as r, wh.working():
        await wh.subscribe(r.url("/ordered", fail_first=2), TIER, EARNED)
        m = member()
        first = await wh.send(TierChangedV1, m)
        second = await wh.send(PointsEarnedV1, m)
        third = await wh.send(TierChangedV1, m, to_tier="platinum")
        await eventually(lambda: r.effects["/ordered"] == 3, timeout=20)

    ids = r.ids("/ordered")
    assert ids == [first] * 3 + [second] * 3 + [third] * 3


async def test_a_hanging_endpoint_does_not_delay_another_subscription(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    async with (
        wh.working(timeout_seconds=120.0, max_in_flight=6, max_in_flight_per_subscription=2),
        receiver() as r,  # stops first: the hanging requests end with it
    ):
        await wh.subscribe(r.url("/hangs", hang=True), TIER)
        await wh.subscribe(r.url("/healthy"), TIER)
        sent = [await wh.send(TierChangedV1, member()) for _ in range(8)]
        # every one reaches the healthy endpoint while the other holds its two requests open
        await eventually(lambda: set(r.ids("/healthy")) == set(sent), timeout=20)
        hanging = r.ids("/hangs")

    assert len(hanging) <= 2  # its own slots only
    assert r.effects["/hangs"] == 0


async def test_both_secrets_sign_during_a_rotation_overlap(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    verify = python_verify()
    async with receiver() as r, wh.working():
        sub = await wh.subscribe(r.url("/rotating"), TIER)
        rotated = await wh.client.post(
            f"/v1/webhooks/{sub['id']}/rotate-secret", json={"overlap_seconds": 3600}
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["secret_key_id"] == "k2" and new["previous_key_id"] == "k1"
        assert new["secret"] != sub["secret"]
        first, second = member(), member()
        await wh.send(TierChangedV1, first)
        await eventually(lambda: len(r.about("/rotating", first)) == 1, timeout=20)

        ended = await wh.client.post(
            f"/v1/webhooks/{sub['id']}/rotate-secret", json={"overlap_seconds": 0}
        )
        newest = ended.json()
        assert newest["secret_key_id"] == "k3" and newest["previous_key_id"] is None
        await wh.send(TierChangedV1, second)
        await eventually(lambda: len(r.about("/rotating", second)) == 1, timeout=20)

    [during], [after] = r.about("/rotating", first), r.about("/rotating", second)
    assert during.headers["loyalty-webhook-signature"].split(",")[0].startswith("k2=")
    assert verify(new["secret"], during.headers, during.body)  # a receiver already moved
    assert verify(sub["secret"], during.headers, during.body)  # one not yet
    assert after.headers["loyalty-webhook-signature"].startswith("k3=")
    assert "," not in after.headers["loyalty-webhook-signature"]
    assert verify(newest["secret"], after.headers, after.body)
    assert not verify(new["secret"], after.headers, after.body)
    if shutil.which("node"):
        assert node_verify(sub["secret"], during) and node_verify(new["secret"], during)


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_the_documented_snippets_are_there(language: str) -> None:
    assert "verify" in snippet(language)


async def test_after_an_erasure_nothing_about_the_member_is_delivered(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    erased_type = MemberErasedV1.TYPE
    async with receiver() as r, wh.working():
        sub = await wh.subscribe(r.url("/erasure"), TIER, EARNED, erased_type)
        await wh.client.post(f"/v1/webhooks/{sub['id']}/pause")  # nothing goes out yet
        m, other = member(), member()
        await wh.send(TierChangedV1, m)
        await wh.send(PointsEarnedV1, m)
        await eventually(lambda: _count(wh, sub["id"], 2), timeout=20)

        erasure = await wh.send(MemberErasedV1, m)
        late = await wh.send(TierChangedV1, m)  # published late: never made a delivery
        kept = await wh.send(TierChangedV1, other)
        await eventually(lambda: _has(wh, sub["id"], erasure, kept), timeout=20)
        await eventually(lambda: _consumed(wh, late), timeout=20)  # seen, and skipped
        left = await wh.deliveries(sub["id"])
        assert {(d["event_id"], d["member_id"]) for d in left} == {(erasure, m), (kept, other)}

        await wh.client.post(f"/v1/webhooks/{sub['id']}/resume")
        await eventually(lambda: r.effects["/erasure"] == 2, timeout=20)

    assert sorted(r.ids("/erasure")) == sorted([erasure, kept])
    assert late not in r.ids("/erasure")
    [told] = [json.loads(g.body) for g in r.at("/erasure") if g.event_id == erasure]
    assert told["type"] == erased_type and told["data"]["member_id"] == m


async def _count(wh: IsolatedWebhooks, subscription_id: str, n: int) -> bool:
    return len(await wh.deliveries(subscription_id)) == n


async def _consumed(wh: IsolatedWebhooks, event_id: str) -> bool:
    async with wh.sessionmaker() as session:
        found = await session.execute(
            text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": event_id}
        )
        return found.first() is not None


async def _has(wh: IsolatedWebhooks, subscription_id: str, *event_ids: str) -> bool:
    return set(event_ids) <= {d["event_id"] for d in await wh.deliveries(subscription_id)}


async def test_a_dead_endpoint_is_paused_with_the_reason_then_retried_by_hand(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    wh = isolated_webhooks
    async with (
        receiver() as r,
        wh.working(retry_window_seconds=0.3, pause_after_failed_deliveries=2),
    ):
        sub = await wh.subscribe(r.url("/dead", fail_first=10_000, status=503), TIER)
        first = await wh.send(TierChangedV1, member())
        await wh.send(TierChangedV1, member())

        async def paused() -> dict[str, Any] | None:
            body: dict[str, Any] = (await wh.client.get(f"/v1/webhooks/{sub['id']}")).json()
            return body if body["status"] == "paused" else None

        state = await eventually(paused, timeout=20)
        assert state["paused_reason"].startswith("2 deliveries in a row failed")
        assert "HTTP 503: not now" in state["paused_reason"]
        deliveries = await wh.deliveries(sub["id"])
        assert {d["status"] for d in deliveries} == {"failed"}
        [failed] = [d for d in deliveries if d["event_id"] == first]
        assert failed["last_status_code"] == 503 and failed["next_attempt_at"] is None

        # by hand: while paused, a retry waits (a second one is a 409); a test event goes out
        retry = f"/v1/webhooks/{sub['id']}/deliveries/{failed['id']}/retry"
        assert (await wh.client.post(retry)).status_code == 202
        again = await wh.client.post(retry)
        assert again.status_code == 409 and again.json()["type"].endswith("/delivery-pending")
        r.behaviours["/dead"].fail_first = 0  # the endpoint is fixed
        test = await wh.client.post(f"/v1/webhooks/{sub['id']}/test")
        assert test.status_code == 202, test.text
        await eventually(lambda: test.json()["event_id"] in r.ids("/dead"), timeout=20)
        assert r.effects["/dead"] == 1  # the test event; the retried one waits for resume
        await wh.client.post(f"/v1/webhooks/{sub['id']}/resume")

        async def delivered() -> dict[str, Any] | None:
            found = await wh.delivery(sub["id"], failed["id"])
            return found if found["status"] == "delivered" else None

        detail = await eventually(delivered, timeout=20)
        assert r.effects["/dead"] == 2

    [probe] = [g for g in r.at("/dead") if g.event_id == test.json()["event_id"]]
    assert probe.headers["loyalty-webhook-type"] == "loyalty.webhook.test.v1"
    assert python_verify()(sub["secret"], probe.headers, probe.body)
    assert [a["outcome"] for a in detail["attempt_log"]][-1] == "delivered"
    assert "failed" in [a["outcome"] for a in detail["attempt_log"]]
    scraped = generate_latest(PIPELINE_REGISTRY).decode()
    for outcome in ("failed", "delivered"):
        assert (
            f'loyalty_webhook_attempts_total{{outcome="{outcome}",subscription="{sub["id"]}"}}'
            in scraped
        )
    assert f'loyalty_webhook_failures_total{{kind="status",subscription="{sub["id"]}"}}' in scraped


async def test_the_address_is_checked_again_when_sending(
    isolated_webhooks: IsolatedWebhooks,
) -> None:
    """A subscription made in dev to a receiver on loopback over http, sent by a worker
    running as production: the attempt is refused before connecting, with the reason in the
    log (the address rules themselves: test_targets.py)."""
    wh = isolated_webhooks
    async with receiver() as r, wh.working(environment="production"):
        sub = await wh.subscribe(r.url("/inside"), TIER)
        await wh.send(TierChangedV1, member())

        async def refused() -> list[dict[str, Any]]:
            return [d for d in await wh.deliveries(sub["id"]) if d["last_error"]]

        [delivery] = await eventually(refused, timeout=20)
    assert r.at("/inside") == []
    assert delivery["last_error"].startswith("refused: only https:// URLs outside dev")
    assert delivery["last_status_code"] is None
