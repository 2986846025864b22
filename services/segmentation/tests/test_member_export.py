"""The export a member token reads: the member's own facts, none of segmentation's scoring."""

from sqlalchemy import text

from segmentation.privacy.member_view import FACT_LISTS, PROFILE_FACTS
from segmentation.profiles.models import Profile
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order

# Profile columns that score or label the member (API.md "Additions": never to a member token)
INTERNAL = {
    "manual_tags",
    "rule_tags",
    "scores_as_of",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "value_tier",
    "lifecycle",
    "median_gap_days",
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
}


def test_every_profile_column_is_a_fact_or_internal() -> None:
    """A new column must be decided: a fact the member's export carries, or internal."""
    columns = {c.key for c in Profile.__table__.columns}
    assert set(PROFILE_FACTS) | INTERNAL == columns
    assert not set(PROFILE_FACTS) & INTERNAL


async def test_a_member_token_reads_its_facts_without_labels(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-03-01", "80.00"))
    assert (
        await env.client.post("/v1/tags", json={"name": "vip", "kind": "manual"})
    ).status_code == 201
    segment = await env.client.post(
        "/v1/segments", json={"name": "vips", "condition": 'tags contains "vip"'}
    )
    assert segment.status_code == 201, segment.text
    assert (
        await env.client.post(f"/v1/profiles/{m}/tags", json={"add": ["vip"]})
    ).status_code == 200
    async with env.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE profiles SET value_tier = 'low', lifecycle = 'new', "
                "strategies = ARRAY['first-purchase-offer'], p_alive = 0.4 WHERE member_id = :m"
            ),
            {"m": m},
        )
    await env.client.post(
        "/v1/contacts", json={"member_id": m, "channel": "email", "campaign": "welcome"}
    )
    member = {"x-caller-scope": "member", "x-member-id": m}
    mine = await env.client.get(f"/v1/profiles/{m}/export", headers=member)
    assert mine.status_code == 200, mine.text
    doc = mine.json()
    assert set(doc) == {"member_id", "profile", *FACT_LISTS}
    assert set(doc["profile"]) == set(PROFILE_FACTS)
    assert doc["profile"]["total_spend"] == "80.00" and doc["profile"]["order_count"] == 1
    assert [o["amount"] for o in doc["orders"]] == ["80.00"]
    assert [c["campaign"] for c in doc["contacts"]] == ["welcome"]
    for label in ("vip", "vips", "first-purchase-offer", "value_tier", "segments"):
        assert label not in mine.text, label
    full = (await env.client.get(f"/v1/profiles/{m}/export")).json()
    assert full["profile"]["value_tier"] == "low" and full["profile"]["manual_tags"] == ["vip"]
    assert [s["segment_id"] for s in full["segments"]] == [segment.json()["segment_id"]]
