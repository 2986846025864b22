"""Test support for the member's own app: members with data in every service, and the scan
for internal labels that no member-token answer may carry (API.md "Additions").

``build_member`` gives a member, through the gateway over the real in-process services, a
balance, a redemption, a complaint, contact preferences, surveys addressed to it, and, in
segmentation and feedback, the internal labels ops work with: a manual tag, a live segment,
scores as a recompute writes them (value tier, RFM, lifecycle, strategies, CLV...), a value
tier in feedback's projection and a churn-risk follow-up. ``internal_labels`` then finds any
of them in an answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from gateway.testing import TEST_KEYS, bearer
from segmentation.settings import SegmentationSettings
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, order

# Keys that name an internal label (segmentation's scores and groupings, feedback's view of
# the member's value, the SLA policies chosen by it): never in an answer to a member token.
INTERNAL_KEYS = frozenset(
    {
        "tags",
        "manual_tags",
        "rule_tags",
        "segments",
        "segment_history",
        "rfm_r",
        "rfm_f",
        "rfm_m",
        "rfm_segment",
        "value_tier",
        "member_value_tier",
        "value_tier_as_of",
        "lifecycle",
        "lifecycle_stage",
        "value_group",
        "behaviour_group",
        "loyalty_index",
        "loyalty_indicators",
        "loyalty_type",
        "loyalty_reasons",
        "strategies",
        "p_alive",
        "expected_purchases_90d",
        "expected_value",
        "median_gap_days",
        "churn_risk",
        "clv",
        "scores_as_of",
        "policy_ids",
        "sla_policy_ids",
    }
)
# Values an internal label takes in these tests (besides the per-run tag and segment names).
INTERNAL_VALUES = frozenset({"monthly_high_value", "churn_risk", "Champions", "trust"})

QUESTIONS = [
    {"id": "nps", "type": "nps", "text": "Would you recommend us?", "required": True},
    {"id": "care", "type": "likert5", "text": "Customer care", "factor": "customer_care"},
]


def _walk(doc: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _walk(value, f"{path}[{i}]")


def internal_labels(doc: Any, secrets: frozenset[str]) -> list[str]:
    """Where ``doc`` names an internal label: a key of INTERNAL_KEYS or a secret value."""
    found = [f"{path}.{key}" for path, key, _ in _walk(doc) if key in INTERNAL_KEYS]
    values = INTERNAL_VALUES | secrets
    found += [
        f"{path}.{key} = {value!r}"
        for path, key, value in _walk(doc)
        if (isinstance(value, str) and value in values)
        or (isinstance(value, list) and any(isinstance(v, str) and v in values for v in value))
    ]
    return found


def member_ids_in(doc: Any) -> set[str]:
    return {value for _, key, value in _walk(doc) if key == "member_id"}


@dataclass
class AppMember:
    member_id: str
    auth: dict[str, str]
    redemption_id: str = ""
    complaint_id: str = ""
    invited_survey_id: str = ""


@dataclass
class MemberWorld:
    """Catalogue, surveys and the internal labels shared by the members of one test module."""

    reward_id: str
    sold_out_reward_id: str
    hidden_reward_id: str
    everyone_survey_id: str
    tag: str
    segment: str
    strategy: str
    members: list[AppMember] = field(default_factory=list)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset({self.tag, self.segment, self.strategy})


def _ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.request.url, response.text)
    body: dict[str, Any] = response.json()
    return body


async def build_world(admin: httpx.AsyncClient) -> MemberWorld:
    """The catalogue (an active reward, a sold-out one, an inactive one), a survey for every
    member, and the labels: a manual tag and a live segment on it."""
    run = uuid.uuid4().hex[:8]
    world = MemberWorld(
        reward_id=f"r-tote-{run}",
        sold_out_reward_id=f"r-sold-out-{run}",
        hidden_reward_id=f"r-hidden-{run}",
        everyone_survey_id="",
        tag=f"secret-tag-{run}",
        segment=f"secret segment {run}",
        strategy=f"secret-strategy-{run}",
    )
    for reward_id, stock, active in (
        (world.reward_id, 100, True),
        (world.sold_out_reward_id, 0, True),
        (world.hidden_reward_id, 100, False),
    ):
        reward = {
            "reward_id": reward_id,
            "name": f"Reward {reward_id}",
            "kind": "product",
            "points_cost": 100,
            "stock": stock,
            "active": active,
        }
        _ok(await admin.post("/v1/rewards", json=reward), 201)
    survey = {"name": "How are we doing?", "questions": QUESTIONS, "audience": "members"}
    world.everyone_survey_id = _ok(await admin.post("/v1/surveys", json=survey), 201)["id"]
    _ok(await admin.post("/v1/tags", json={"name": world.tag, "kind": "manual"}), 201)
    condition = f'tags contains "{world.tag}"'
    _ok(await admin.post("/v1/segments", json={"name": world.segment, "condition": condition}), 201)
    return world


async def _label_in_segmentation(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: SegmentationSettings,
    member: str,
    world: MemberWorld,
) -> None:
    """A profile from points' events, the manual tag (so the segment), and scores as the
    recompute writes them."""
    segmentation = FreshSegmentation(app, client, settings)
    await segmentation.feed(enrolled(member), order(member, "2025-01-10", "250.00"))
    _ok(await client.post(f"/v1/profiles/{member}/tags", json={"add": [world.tag]}), 200)
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE profiles SET value_tier = 'high', lifecycle = 'mature', "
                "rfm_r = 5, rfm_f = 5, rfm_m = 5, rfm_segment = 'Champions', "
                "value_group = 'high-value', loyalty_type = 'trust', loyalty_index = 0.9, "
                "strategies = ARRAY[:strategy], p_alive = 0.95, expected_value = 321.00, "
                "scores_as_of = now() WHERE member_id = :m"
            ),
            {"m": member, "strategy": world.strategy},
        )


async def _label_in_feedback(app: FastAPI, member: str) -> None:
    """Feedback's projection sees a high-value member, with a churn-risk visit planned."""
    now = datetime.now(UTC)
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO member_projection (member_id, tier, tier_as_of, value_tier, "
                "value_tier_as_of) VALUES (:m, 'gold', :now, 'high', :now)"
            ),
            {"m": member, "now": now},
        )
        await session.execute(
            text(
                "INSERT INTO follow_ups (id, member_id, reason, dedupe_key, due_at, status, "
                "created_at) VALUES (:id, :m, 'churn_risk', :key, :due, 'pending', :now)"
            ),
            {
                "id": str(uuid.uuid4()),
                "m": member,
                "key": f"churn:{member}:test",
                "due": now + timedelta(days=3),
                "now": now,
            },
        )


async def build_member(
    admin: httpx.AsyncClient,
    world: MemberWorld,
    member_id: str,
    token: str,
    *,
    segmentation: tuple[FastAPI, httpx.AsyncClient, SegmentationSettings],
    feedback_app: FastAPI,
) -> AppMember:
    member = AppMember(member_id, bearer(token))
    _ok(await admin.post("/v1/members", json={"member_id": member.member_id}), 201)
    adjustment = {"points": 5000, "reason": "welcome gift"}
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    adjusted = await admin.post(
        f"/v1/members/{member.member_id}/adjustments", json=adjustment, headers=key
    )
    _ok(adjusted, 201)
    await _label_in_segmentation(*segmentation, member.member_id, world)
    await _label_in_feedback(feedback_app, member.member_id)
    own = {**member.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    redeemed = await admin.post(
        f"/v1/members/{member.member_id}/redemptions",
        json={"reward_id": world.reward_id},
        headers=own,
    )
    member.redemption_id = _ok(redeemed, 201)["redemption_id"]
    complaint = {
        "member_id": member.member_id,
        "channel": "app",
        "category": "delivery",
        "description": "The parcel never came",
    }
    opened = await admin.post("/v1/complaints", json=complaint, headers=member.auth)
    member.complaint_id = _ok(opened, 201)["id"]
    survey = {"name": f"After complaint {member.member_id}", "questions": QUESTIONS}
    member.invited_survey_id = _ok(await admin.post("/v1/surveys", json=survey), 201)["id"]
    invitation = {
        "invitations": [{"member_id": member.member_id, "complaint_id": member.complaint_id}]
    }
    _ok(
        await admin.post(f"/v1/surveys/{member.invited_survey_id}/invitations", json=invitation),
        200,
    )
    preferences = {"preferred_channels": ["email"], "opted_out_channels": ["sms"]}
    _ok(
        await admin.put(
            f"/v1/profiles/{member.member_id}/contact-preferences",
            json=preferences,
            headers=member.auth,
        ),
        200,
    )
    contact = {"member_id": member.member_id, "channel": "email", "campaign": "spring"}
    _ok(await admin.post("/v1/contacts", json=contact, headers=bearer(TEST_KEYS["ops"])), 201)
    world.members.append(member)
    return member
