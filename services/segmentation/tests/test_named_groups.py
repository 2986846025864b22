"""Every named RFM segment, value group and behaviour group reached on hand-made data (#16).

Each name is reached by at least one member, and each member gets the name the rules
in docs/segmentation.md give it.
"""

from __future__ import annotations

from typing import Any

from segmentation.conditions.fields import BEHAVIOUR_GROUPS, RFM_SEGMENTS, VALUE_GROUPS
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import (
    complaint,
    enrolled,
    interaction,
    member_id,
    order,
    survey,
)

AS_OF = "2026-01-01T00:00:00+00:00"

# 20 members, exactly 4 at each level of R, of F and of M: then the k members whose
# value is <= a member's make ceil(5 k / 20) = the member's level (ties share it).
# (R, F, M) -> the name of the table (FM = (F + M + 1) div 2).
RFM_PLAN: list[tuple[int, int, int, str]] = [
    (5, 1, 1, "New"),
    (5, 5, 5, "Champions"),
    (5, 2, 2, "Potential loyalist"),
    (5, 4, 4, "Champions"),
    (4, 1, 1, "Promising"),
    (4, 5, 5, "Loyal"),
    (4, 3, 3, "Potential loyalist"),
    (4, 4, 4, "Loyal"),
    (3, 1, 2, "About to sleep"),
    (3, 3, 3, "Needs attention"),
    (3, 5, 4, "Loyal"),
    (3, 2, 1, "About to sleep"),
    (2, 2, 2, "Hibernating"),
    (2, 3, 4, "At risk"),
    (2, 5, 5, "Can't lose them"),
    (2, 4, 3, "At risk"),
    (1, 1, 1, "Lost"),
    (1, 2, 2, "Hibernating"),
    (1, 4, 5, "Can't lose them"),
    (1, 3, 3, "At risk"),
]
# the last order's month per R level; F = the number of orders; M: net spend 60 x M
LAST_MONTH = {1: 3, 2: 5, 3: 7, 4: 9, 5: 11}


async def _profile(env: FreshSegmentation, member: str) -> dict[str, Any]:
    response = await env.client.get(f"/v1/profiles/{member}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_all_eleven_rfm_names_each_to_the_member_that_should_get_it(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = [member_id() for _ in RFM_PLAN]
    for m, (r, f, money, _) in zip(members, RFM_PLAN, strict=True):
        amount = f"{60 * money // f}.00"  # 60 x M splits into F equal orders (F divides 60)
        earlier = [order(m, f"2025-01-{day:02d}", amount) for day in range(1, f)]
        last = order(m, f"2025-{LAST_MONTH[r]:02d}-15", amount)
        await env.feed(enrolled(m), *earlier, last)
    await env.recompute(AS_OF)
    got = [(await _profile(env, m))["rfm"] for m in members]
    assert [(g["r"], g["f"], g["m"], g["segment"]) for g in got] == RFM_PLAN
    assert {g["segment"] for g in got} == set(RFM_SEGMENTS)
    assert len(RFM_SEGMENTS) == 11


async def test_every_value_group_and_behaviour_group_each_to_the_member_that_should_get_it(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """Five members, population N = 5 (p = k / 5, R = ceil(5 k / 5) = k).

    - steady: 6 monthly orders of 100 to Dec 15 -> spend 600 (p = 1), mature -> high tier,
      high-value; no signal -> quality-seeking (nothing else to go on);
    - couponer: 3 monthly orders of 100 with a coupon to Dec 15 -> p = 0.6, n = 3 ->
      medium, potential; price share 1 -> price-sensitive;
    - gone: 3 orders of 150 in Jan-Mar -> churned (292 days, rhythm ~29) -> churn-risk;
      every order at or above the 80th percentile order amount (110) -> quality-seeking;
    - rare: 10.00 on Jan 1 and Sep 1 -> low (p = 0.2), growing (122 days, rhythm 243),
      R = 2 -> ordinary; a complaint and a survey over 2 orders -> service-experience;
    - newcomer: one order of 50 on Dec 20 -> low (n = 1), new with R = 5 -> potential;
      a review for one order -> social-interactive.
    """
    env = fresh_segmentation
    steady, couponer, gone, rare, newcomer = (member_id() for _ in range(5))
    await env.feed(
        enrolled(steady), *[order(steady, f"2025-{mo:02d}-15", "100.00") for mo in range(7, 13)]
    )
    await env.feed(
        enrolled(couponer),
        *[order(couponer, f"2025-{mo}-15", "100.00", coupon=True) for mo in (10, 11, 12)],
    )
    await env.feed(enrolled(gone), *[order(gone, f"2025-0{mo}-15", "150.00") for mo in (1, 2, 3)])
    await env.feed(
        enrolled(rare),
        order(rare, "2025-01-01", "10.00"),
        order(rare, "2025-09-01", "10.00"),
        complaint(rare, "2025-09-05"),
        survey(rare, csat=3, at="2025-09-06"),
    )
    await env.feed(
        enrolled(newcomer),
        order(newcomer, "2025-12-20", "50.00"),
        interaction(newcomer, "review", "2025-12-21"),
    )
    await env.recompute(AS_OF)
    profiles = {m: await _profile(env, m) for m in (steady, couponer, gone, rare, newcomer)}
    got = {
        m: (p["value_tier"], p["lifecycle"], p["value_group"], p["behaviour_group"])
        for m, p in profiles.items()
    }
    assert got == {
        steady: ("high", "mature", "high-value", "quality-seeking"),
        couponer: ("medium", "growing", "potential", "price-sensitive"),
        gone: ("medium", "churned", "churn-risk", "quality-seeking"),
        rare: ("low", "growing", "ordinary", "service-experience"),
        newcomer: ("low", "new", "potential", "social-interactive"),
    }
    assert profiles[rare]["rfm"]["r"] == 2 and profiles[newcomer]["rfm"]["r"] == 5
    assert {g[2] for g in got.values()} == set(VALUE_GROUPS)
    assert {g[3] for g in got.values()} == set(BEHAVIOUR_GROUPS)
