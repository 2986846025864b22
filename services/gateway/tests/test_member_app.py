"""The member's own app over the real services: every route a member token may call, called
by the member itself and by another member, and no internal label in any answer.

The matrix in ``test_policy.py`` checks the gateway's decision against an echo upstream;
this one checks what really comes back: a member sees its own data and never another's,
a route keyed by something other than the member (a redemption) is checked by its service,
and no answer to a member token carries a tag, a segment, a score or a strategy.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway import policy
from gateway.routing import COMPOSED
from gateway.testing import TEST_KEYS, bearer
from gateway.testing_member_app import (
    AppMember,
    MemberWorld,
    build_member,
    build_world,
    internal_labels,
    member_ids_in,
)
from loyalty_shared.testing import asgi_client
from segmentation.settings import SegmentationSettings


@pytest.fixture(scope="module")
async def world(
    gateway_app: FastAPI,
    segmentation_app: FastAPI,
    segmentation_settings: SegmentationSettings,
    feedback_app: FastAPI,
    member_token_for: Callable[[str], str],
) -> AsyncIterator[MemberWorld]:
    async with asgi_client(gateway_app) as admin, asgi_client(segmentation_app) as seg:
        admin.headers.update(bearer(TEST_KEYS["admin"]))
        built = await build_world(admin)
        for _ in range(2):
            member_id = f"m-app-{uuid.uuid4().hex[:10]}"
            await build_member(
                admin,
                built,
                member_id,
                member_token_for(member_id),
                segmentation=(segmentation_app, seg, segmentation_settings),
                feedback_app=feedback_app,
            )
        yield built


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    success: int = 200
    idempotent_key: bool = False


Case = Callable[[MemberWorld, AppMember], Call]

# Every route a member token may reach, as the member calls it for itself (``me``).
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/members/{member_id}/status"): lambda w, me: Call(
        "GET", f"/v1/members/{me.member_id}/status"
    ),
    ("GET", "/v1/members/{member_id}"): lambda w, me: Call("GET", f"/v1/members/{me.member_id}"),
    ("GET", "/v1/members/{member_id}/ledger"): lambda w, me: Call(
        "GET", f"/v1/members/{me.member_id}/ledger"
    ),
    ("GET", "/v1/members/{member_id}/export"): lambda w, me: Call(
        "GET", f"/v1/members/{me.member_id}/export"
    ),
    ("POST", "/v1/members/{member_id}/redemptions"): lambda w, me: Call(
        "POST",
        f"/v1/members/{me.member_id}/redemptions",
        {"reward_id": w.reward_id},
        201,
        idempotent_key=True,
    ),
    ("POST", "/v1/members/{member_id}/check-ins"): lambda w, me: Call(
        "POST", f"/v1/members/{me.member_id}/check-ins", {}, 201
    ),
    ("GET", "/v1/members/{member_id}/complaints"): lambda w, me: Call(
        "GET", f"/v1/members/{me.member_id}/complaints"
    ),
    ("GET", "/v1/members/{member_id}/surveys"): lambda w, me: Call(
        "GET", f"/v1/members/{me.member_id}/surveys"
    ),
    ("POST", "/v1/redemptions/{redemption_id}/cancel"): lambda w, me: Call(
        "POST", f"/v1/redemptions/{me.redemption_id}/cancel", None, idempotent_key=True
    ),
    ("GET", "/v1/tiers"): lambda w, me: Call("GET", "/v1/tiers"),
    ("GET", "/v1/rewards"): lambda w, me: Call("GET", "/v1/rewards"),
    ("GET", "/v1/rewards/{reward_id}"): lambda w, me: Call("GET", f"/v1/rewards/{w.reward_id}"),
    ("GET", "/v1/profiles/{member_id}/contact-preferences"): lambda w, me: Call(
        "GET", f"/v1/profiles/{me.member_id}/contact-preferences"
    ),
    ("PUT", "/v1/profiles/{member_id}/contact-preferences"): lambda w, me: Call(
        "PUT",
        f"/v1/profiles/{me.member_id}/contact-preferences",
        {"preferred_channels": ["app_push"], "opted_out_channels": ["sms"]},
    ),
    ("GET", "/v1/profiles/{member_id}/export"): lambda w, me: Call(
        "GET", f"/v1/profiles/{me.member_id}/export"
    ),
    ("POST", "/v1/complaints"): lambda w, me: Call(
        "POST",
        "/v1/complaints",
        {
            "member_id": me.member_id,
            "channel": "app",
            "category": "billing",
            "description": "Charged twice",
        },
        201,
    ),
    ("GET", "/v1/feedback/members/{member_id}/export"): lambda w, me: Call(
        "GET", f"/v1/feedback/members/{me.member_id}/export"
    ),
    ("POST", "/v1/surveys/{survey_id}/responses"): lambda w, me: Call(
        "POST",
        f"/v1/surveys/{me.invited_survey_id}/responses",
        {"member_id": me.member_id, "answers": {"nps": 9}, "complaint_id": me.complaint_id},
        201,
    ),
}

_MEMBER_RULES = [r for r in policy.POLICY if r.member_self or r.member_any or r.member_owned]


def _rule_id(rule: policy.Rule) -> str:
    return f"{rule.method} {rule.template}"


def test_every_member_route_of_the_policy_has_a_case_over_the_real_services() -> None:
    assert {(r.method, r.template) for r in _MEMBER_RULES} == set(CASES)
    # ... and the gateway's own member routes are among them
    assert {c for c in COMPOSED if c in CASES} == {
        ("GET", "/v1/members/{member_id}/status"),
        ("GET", "/v1/members/{member_id}/export"),
    }


async def _send(
    client: httpx.AsyncClient, call: Call, auth: dict[str, str], key: str | None = None
) -> httpx.Response:
    headers = {**auth}
    if call.idempotent_key:
        headers["Idempotency-Key"] = key or f"k-{uuid.uuid4().hex}"
    return await client.request(call.method, call.path, json=call.body, headers=headers)


def _no_labels(world: MemberWorld, response: httpx.Response) -> None:
    assert internal_labels(response.json(), world.secrets) == [], response.request.url


async def _gateway_refusal(client: httpx.AsyncClient, me: AppMember, other: AppMember) -> Any:
    """The gateway's own answer when a member names another member: the 403 to compare with."""
    refused = await client.get(f"/v1/members/{other.member_id}/ledger", headers=me.auth)
    assert refused.status_code == 403
    return refused.json()


@pytest.mark.parametrize("rule", _MEMBER_RULES, ids=_rule_id)
async def test_member_matrix_over_the_real_services(
    gateway_client: httpx.AsyncClient, world: MemberWorld, rule: policy.Rule
) -> None:
    me, other = world.members
    call = CASES[(rule.method, rule.template)](world, other)
    refusal = await _gateway_refusal(gateway_client, me, other)
    # another member's resource, with my token: refused (before the member's own call, so a
    # refusal that changed anything would show in the member's own answer below)
    as_other = await _send(gateway_client, call, me.auth)
    _no_labels(world, as_other)
    if rule.member_any:
        assert as_other.status_code == call.success, as_other.text
        assert member_ids_in(as_other.json()) == set()
    else:
        assert as_other.status_code == 403, as_other.text
        assert as_other.headers["content-type"] == "application/problem+json"
        assert as_other.json() == refusal
        assert other.member_id not in as_other.text
    # the member itself
    own = await _send(gateway_client, call, other.auth)
    assert own.status_code == call.success, own.text
    _no_labels(world, own)
    assert me.member_id not in own.text
    assert member_ids_in(own.json()) <= {other.member_id}


async def test_a_redemption_that_does_not_exist_is_refused_like_another_members(
    gateway_client: httpx.AsyncClient, world: MemberWorld
) -> None:
    me, other = world.members
    refusal = await _gateway_refusal(gateway_client, me, other)
    redeemed = await gateway_client.post(
        f"/v1/members/{other.member_id}/redemptions",
        json={"reward_id": world.reward_id},
        headers={**other.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert redeemed.status_code == 201, redeemed.text
    theirs = redeemed.json()["redemption_id"]
    for redemption_id in (theirs, f"rd-{uuid.uuid4().hex}", "x" * 64):
        r = await gateway_client.post(
            f"/v1/redemptions/{redemption_id}/cancel",
            headers={**me.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"},
        )
        assert r.status_code == 403, r.text
        assert r.json() == refusal
    # the other member's redemption was left alone: its owner cancels it now
    r = await gateway_client.post(
        f"/v1/redemptions/{theirs}/cancel",
        headers={**other.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["points_returned"] == 100
    # staff cancel any redemption, and an unknown one is their 404
    r = await gateway_client.post(
        f"/v1/redemptions/rd-{uuid.uuid4().hex}/cancel", headers=bearer(TEST_KEYS["ops"])
    )
    assert r.status_code == 404


async def _catalogue(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": "200", **({"after": after} if after else {})}
        page = await client.get("/v1/rewards", params=params, headers=auth)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        after = page.json()["next_cursor"]
        if after is None:
            return items


async def test_the_catalogue_a_member_sees(
    gateway_client: httpx.AsyncClient, world: MemberWorld
) -> None:
    me = world.members[0]
    seen = {item["reward_id"]: item for item in await _catalogue(gateway_client, me.auth)}
    # active rewards, in stock or not; never an inactive one; no stock count, flag or date
    assert seen[world.reward_id] == {
        "reward_id": world.reward_id,
        "name": f"Reward {world.reward_id}",
        "description": None,
        "kind": "product",
        "points_cost": 100,
        "in_stock": True,
    }
    assert seen[world.sold_out_reward_id]["in_stock"] is False
    assert world.hidden_reward_id not in seen
    assert all(set(item) == set(seen[world.reward_id]) for item in seen.values())
    one = await gateway_client.get(f"/v1/rewards/{world.sold_out_reward_id}", headers=me.auth)
    assert one.json() == seen[world.sold_out_reward_id]
    hidden = await gateway_client.get(f"/v1/rewards/{world.hidden_reward_id}", headers=me.auth)
    assert hidden.status_code == 404
    assert hidden.json()["type"].endswith("/reward-not-found")
    # asking for inactive rewards gives a member none
    inactive = await gateway_client.get("/v1/rewards?active=false", headers=me.auth)
    assert inactive.status_code == 200 and inactive.json()["items"] == []
    # the shop and ops still see the whole catalogue as it is kept
    for scope in ("storefront", "ops"):
        staff = {
            i["reward_id"]: i for i in await _catalogue(gateway_client, bearer(TEST_KEYS[scope]))
        }
        assert staff[world.hidden_reward_id]["active"] is False
        assert staff[world.sold_out_reward_id]["stock"] == 0


async def _fresh_member(client: httpx.AsyncClient, token_for: Callable[[str], str]) -> AppMember:
    member_id = f"m-app-{uuid.uuid4().hex[:10]}"
    assert (await client.post("/v1/members", json={"member_id": member_id})).status_code == 201
    return AppMember(member_id, bearer(token_for(member_id)))


async def test_a_members_complaints_newest_first_cursor_paged(
    gateway_client: httpx.AsyncClient, member_token_for: Callable[[str], str], world: MemberWorld
) -> None:
    me = await _fresh_member(gateway_client, member_token_for)
    opened = []
    for n in range(3):
        complaint = {
            "member_id": me.member_id,
            "channel": "app",
            "category": "delivery",
            "description": f"complaint {n}",
        }
        r = await gateway_client.post("/v1/complaints", json=complaint, headers=me.auth)
        assert r.status_code == 201, r.text
        opened.append(r.json()["id"])
    url = f"/v1/members/{me.member_id}/complaints"
    first = await gateway_client.get(url, params={"limit": 2}, headers=me.auth)
    assert first.status_code == 200, first.text
    assert [c["id"] for c in first.json()["items"]] == opened[::-1][:2]
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await gateway_client.get(url, params={"limit": 2, "cursor": cursor}, headers=me.auth)
    assert [c["id"] for c in second.json()["items"]] == opened[:1]
    assert second.json()["next_cursor"] is None
    item = second.json()["items"][0]
    assert item["description"] == "complaint 0" and item["status"] == "open"
    assert item["first_response_due_at"] and item["resolution_due_at"]
    # ops read the same list; bad paging is a 422 naming the field
    staff = await gateway_client.get(url, headers=bearer(TEST_KEYS["ops"]))
    assert [c["id"] for c in staff.json()["items"]] == opened[::-1]
    for params, field in (({"cursor": "nonsense"}, "query.cursor"), ({"limit": 0}, "limit")):
        bad = await gateway_client.get(url, params=params, headers=me.auth)
        assert bad.status_code == 422, bad.text
        assert field in bad.json()["errors"][0]["field"]


async def test_the_surveys_addressed_to_a_member(
    gateway_client: httpx.AsyncClient, member_token_for: Callable[[str], str], world: MemberWorld
) -> None:
    me = await _fresh_member(gateway_client, member_token_for)
    questions = [{"id": "nps", "type": "nps", "text": "Recommend us?", "required": True}]
    made = {}
    for name in ("invited", "not-invited"):
        r = await gateway_client.post("/v1/surveys", json={"name": name, "questions": questions})
        assert r.status_code == 201, r.text
        assert r.json()["audience"] == "invited"
        made[name] = r.json()["id"]
    invite = {"invitations": [{"member_id": me.member_id, "order_id": "o-77"}]}
    r = await gateway_client.post(f"/v1/surveys/{made['invited']}/invitations", json=invite)
    assert r.status_code == 200 and r.json() == {"invited": 1, "already_invited": 0}
    url = f"/v1/members/{me.member_id}/surveys"
    listed = await gateway_client.get(url, params={"limit": 200}, headers=me.auth)
    assert listed.status_code == 200, listed.text
    by_id = {s["survey_id"]: s for s in listed.json()["items"]}
    assert made["not-invited"] not in by_id
    invited = by_id[made["invited"]]
    assert invited["order_id"] == "o-77" and invited["complaint_id"] is None
    assert invited["questions"] == [
        {"id": "nps", "type": "nps", "text": "Recommend us?", "required": True, "options": None}
    ]
    assert world.everyone_survey_id in by_id  # a survey for every member
    # a survey not addressed to the member does not exist for its token
    answer = {"member_id": me.member_id, "answers": {"nps": 10}}
    r = await gateway_client.post(
        f"/v1/surveys/{made['not-invited']}/responses", json=answer, headers=me.auth
    )
    assert r.status_code == 404 and r.json()["type"].endswith("/survey-not-found")
    # answered: no longer listed
    for survey_id in (made["invited"], world.everyone_survey_id):
        r = await gateway_client.post(
            f"/v1/surveys/{survey_id}/responses", json=answer, headers=me.auth
        )
        assert r.status_code == 201, r.text
    listed = await gateway_client.get(url, params={"limit": 200}, headers=me.auth)
    left = {s["survey_id"] for s in listed.json()["items"]}
    assert not left & {made["invited"], world.everyone_survey_id}
    # the shop still records an answer it collected itself, addressed or not
    r = await gateway_client.post(
        f"/v1/surveys/{made['not-invited']}/responses",
        json=answer,
        headers=bearer(TEST_KEYS["storefront"]),
    )
    assert r.status_code == 201, r.text


async def test_the_status_a_member_reads_has_no_profile(
    gateway_client: httpx.AsyncClient, world: MemberWorld
) -> None:
    me = world.members[0]
    own = await gateway_client.get(f"/v1/members/{me.member_id}/status", headers=me.auth)
    assert own.status_code == 200, own.text
    assert "profile" not in own.json()
    assert set(own.json()["parts"]) == {"points", "feedback"}
    assert own.json()["membership"]["balance"]["available"] > 0
    assert own.json()["open_complaints"] >= 1
    staff = await gateway_client.get(
        f"/v1/members/{me.member_id}/status", headers=bearer(TEST_KEYS["ops"])
    )
    assert staff.json()["profile"]["value_tier"] == "high"
    assert world.tag in staff.json()["profile"]["tags"]


async def test_the_export_a_member_reads_keeps_its_facts_without_labels(
    gateway_client: httpx.AsyncClient, world: MemberWorld
) -> None:
    me = world.members[0]
    own = await gateway_client.get(f"/v1/members/{me.member_id}/export", headers=me.auth)
    assert own.status_code == 200, own.text
    doc = own.json()
    assert internal_labels(doc, world.secrets) == []
    segmentation, feedback = doc["segmentation"], doc["feedback"]
    assert [o["amount"] for o in segmentation["orders"]] == ["250.00"]
    assert segmentation["profile"]["total_spend"] == "250.00"
    assert [c["campaign"] for c in segmentation["contacts"]] == ["spring"]
    assert segmentation["contact_preferences"][0]["opted_out_channels"] == ["sms"]
    assert "The parcel never came" in [c["description"] for c in feedback["complaints"]]
    assert [f["status"] for f in feedback["follow_ups"]] == ["pending"]
    assert me.invited_survey_id in [i["survey_id"] for i in feedback["survey_invitations"]]
    assert doc["points"]["member"]["member_id"] == me.member_id
    # the operator's export (a formal access request) holds everything, labels included
    full = (await gateway_client.get(f"/v1/members/{me.member_id}/export")).json()
    assert full["segmentation"]["profile"]["value_tier"] == "high"
    assert [s["segment_id"] for s in full["segmentation"]["segments"]]
    assert {c["member_value_tier"] for c in full["feedback"]["complaints"]} == {"high"}
    assert [f["reason"] for f in full["feedback"]["follow_ups"]] == ["churn_risk"]


async def test_the_merged_openapi_shows_who_may_call_the_member_routes(
    gateway_client: httpx.AsyncClient,
) -> None:
    doc = (await gateway_client.get("/openapi.json")).json()
    expected = {
        ("get", "/v1/members/{member_id}/complaints"): "member:self",
        ("get", "/v1/members/{member_id}/surveys"): "member:self",
        ("get", "/v1/rewards"): "member",
        ("post", "/v1/redemptions/{redemption_id}/cancel"): "member:own",
    }
    for (method, path), scope in expected.items():
        operation = doc["paths"][path][method]
        assert scope in operation["x-allowed-scopes"], (path, operation["x-allowed-scopes"])
        assert {"memberToken": []} in operation["security"]
