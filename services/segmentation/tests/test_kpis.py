"""KPIs on hand-made data with known answers: feedback figures (NPS, CSAT, complaint rate,
SLA compliance, FCR, follow-up coverage), targets, and breakdowns per tier, value tier and
segment, each with its previous period."""

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loyalty_shared.contracts import CONTRACTS
from loyalty_shared.contracts.points import TierChangedV1
from loyalty_shared.events import CloudEvent, make_event
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import (
    enrolled,
    erased,
    interaction,
    member_id,
    order,
    refund,
    ts,
)

DEC = {"from": "2025-12-01T00:00:00+00:00", "to": "2025-12-31T00:00:00+00:00"}  # prev: Nov


def _feedback(type_: str, member: str, at: str, data: dict[str, Any]) -> CloudEvent:
    """As the feedback service publishes it (its model's example with ``data``): envelope
    time = the moment of the fact."""
    payload = CONTRACTS[type_].sample(member_id=member, **data)
    return payload.event(member, time=datetime.fromisoformat(ts(at)))


def survey(member: str, at: str, nps: int | None = None, csat: int | None = None) -> CloudEvent:
    response = f"resp-{uuid.uuid4().hex[:10]}"
    return _feedback(
        "loyalty.survey.completed.v1",
        member,
        at,
        {
            "survey_id": "s-1",
            "response_id": response,
            "nps": nps,
            "csat": csat,
            "complaint_id": None,
            "order_id": None,
            "submitted_at": ts(at),
        },
    )


class Complaint:
    """The events of one complaint's life, as the feedback service publishes them."""

    def __init__(self, member: str) -> None:
        self.member = member
        self.id = f"c-{uuid.uuid4().hex[:10]}"

    def _event(self, kind: str, when: str, **data: Any) -> CloudEvent:
        return _feedback(
            f"loyalty.complaint.{kind}.v1", self.member, when, {"complaint_id": self.id, **data}
        )

    def opened(self, at: str) -> CloudEvent:
        return self._event("opened", at, channel="app", category="delivery", opened_at=ts(at))

    def action(self, kind: str, status: str, at: str, **data: Any) -> CloudEvent:
        return self._event(kind, at, status=status, at=ts(at), **data)

    def resolved(self, at: str, fcr: bool) -> CloudEvent:
        return self.action(
            "resolved", "resolved", at, first_contact_resolution=fcr, resolved_at=ts(at)
        )

    def breached(self, clock: str, at: str) -> CloudEvent:
        return self._event(
            "sla_breached", at, breach_id=uuid.uuid4().hex, clock=clock, detected_at=ts(at)
        )

    def followed_up(self, at: str) -> CloudEvent:
        return _feedback(
            "loyalty.follow_up.completed.v1",
            self.member,
            at,
            {
                "follow_up_id": f"f-{uuid.uuid4().hex[:8]}",
                "reason": "post_resolution",
                "complaint_id": self.id,
                "rectified": True,
                "completed_at": ts(at),
            },
        )


def tier_changed(member: str, to_tier: str, at: str) -> CloudEvent:
    payload = TierChangedV1.sample(
        member_id=member, from_tier="bronze", to_tier=to_tier, occurred_at=ts(at)
    )
    return payload.event(member)


@pytest.fixture(autouse=True)
def _every_nps_shown(fresh_segmentation: FreshSegmentation) -> None:
    """These hand-made periods have a handful of answers: show the NPS from one answer on
    (the minimum sample is tested in test_nps_has_its_ci_and_hides_below_the_minimum_sample)."""
    fresh_segmentation.settings.nps_min_sample = 1


async def _kpis(env: FreshSegmentation, **params: Any) -> dict[str, Any]:
    response = await env.client.get("/v1/analytics/kpis", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _pair(figure: dict[str, Any]) -> tuple[Any, Any]:
    return figure["current"], figure["previous"]


async def _december(env: FreshSegmentation) -> dict[str, str]:
    """A: gold from Dec 21, 3 orders; B: 2 orders; C: Nov only (churns), reviews in Dec;
    D: first order in Dec. Surveys and four complaints with known clocks."""
    a, b, c, d = member_id(), member_id(), member_id(), member_id()
    k1, k2, k3, k4 = Complaint(b), Complaint(c), Complaint(a), Complaint(b)
    await env.feed(
        *(enrolled(m, "2024-01-01", tier="bronze") for m in (a, b, c, d)),
        order(a, "2025-11-05", "100.00"),
        order(b, "2025-11-06", "50.00"),
        order(c, "2025-11-07", "10.00"),
        order(a, "2025-12-05", "100.00"),
        order(a, "2025-12-20", "100.00"),
        order(b, "2025-12-06", "40.00"),
        order(d, "2025-12-25", "30.00"),
        interaction(c, "review", "2025-12-10"),
        tier_changed(a, "gold", "2025-12-21"),
        # NPS in Dec: A 9 (promoter), B 6 (detractor), C 10 (promoter), D 8 (passive)
        survey(a, "2025-12-08", nps=9, csat=5),
        survey(b, "2025-12-09", nps=6, csat=3),
        survey(c, "2025-12-11", nps=10, csat=4),
        survey(d, "2025-12-26", nps=8),
        survey(a, "2025-11-10", nps=10),  # Nov: one promoter
        # K1 (B): answered and resolved in time at first contact, followed up
        k1.opened("2025-12-02T09:00"),
        k1.action("acknowledged", "acknowledged", "2025-12-02T10:00"),
        k1.resolved("2025-12-03", fcr=True),
        k1.followed_up("2025-12-05"),
        # K2 (C): first response late, escalated, resolved in time, no follow-up yet
        k2.opened("2025-12-04"),
        k2.breached("first_response", "2025-12-06"),
        k2.action("acknowledged", "acknowledged", "2025-12-07"),
        k2.action("escalated", "escalated", "2025-12-08"),
        k2.resolved("2025-12-10", fcr=False),
        # K3 (A): open, no clock stopped yet
        k3.opened("2025-12-15"),
        # K4 (B): opened and resolved in Nov at first contact, reopened in Dec
        k4.opened("2025-11-20T09:00"),
        k4.action("acknowledged", "acknowledged", "2025-11-20T10:00"),
        k4.resolved("2025-11-21", fcr=True),
        k4.action("reopened", "in_progress", "2025-12-02"),
        k4.resolved("2025-12-03", fcr=False),
    )
    return {"a": a, "b": b, "c": c, "d": d}


async def test_feedback_kpis_and_targets_with_previous_period(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    await _december(env)
    body = await _kpis(env, **DEC)
    k = body["kpis"]
    assert _pair(k["revenue"]) == ("270.00", "160.00")
    assert _pair(k["orders"]) == (4, 3)
    assert _pair(k["repurchase_rate"]) == (round(1 / 3, 4), 0.0)
    assert _pair(k["churn_rate"]) == (round(1 / 3, 4), None)  # nobody bought in October
    assert _pair(k["average_ltv"]) == ("107.50", "53.33")  # (300+90+10+30)/4, (100+50+10)/3
    assert _pair(k["average_annual_spend"]) == ("107.50", "53.33")
    assert _pair(k["participation_rate"]) == (1.0, 0.25)  # everyone answered in Dec; A in Nov
    assert _pair(k["monthly_active_rate"]) == (1.0, 0.75)
    # NPS: (2 promoters - 1 detractor) / 4 answers; Nov: 1 promoter of 1
    assert _pair(k["nps"]) == (25.0, 100.0)
    assert _pair(k["nps_responses"]) == (4, 1)
    assert _pair(k["nps_ci95"]) == ([-56.3, 100.0], [100.0, 100.0])  # 25 +/- 81.3, clipped
    assert _pair(k["nps_hidden"]) == (False, False)
    assert _pair(k["csat"]) == (4.0, None)  # (5 + 3 + 4) / 3
    assert _pair(k["satisfied_share"]) == (round(2 / 3, 4), None)
    # complaints opened / orders: Dec K1, K2, K3 over 4 orders; Nov K4 over 3
    assert _pair(k["complaints"]) == (3, 1)
    assert _pair(k["complaint_rate"]) == (0.75, round(1 / 3, 6))
    # clocks of complaints opened in the period: K1 2 met, K2 first response breached +
    # resolution met, K3 none stopped -> 3/4; Nov K4 both met
    assert _pair(k["sla_compliance"]) == (0.75, 1.0)
    # first resolved in Dec: K1 (first contact), K2 (escalated); Nov: K4, reopened since
    assert _pair(k["first_contact_resolution_rate"]) == (0.5, 0.0)
    assert _pair(k["follow_up_coverage"]) == (0.5, 0.0)
    # targets beside the figures the brief sets one for
    assert k["nps"]["target"] == {
        "op": ">",
        "value": 60.0,
        "stretch": None,
        "relative_to_previous": None,
        "basis": "NPS > 60",
        "met": False,
    }
    assert k["participation_rate"]["target"]["value"] == 0.7
    assert k["participation_rate"]["target"]["met"] is True
    assert k["churn_rate"]["target"]["value"] == 0.15
    assert k["churn_rate"]["target"]["stretch"] == 0.05
    assert k["churn_rate"]["target"]["met"] is False
    ltv = k["average_ltv"]["target"]  # +25..40% on the previous period's 53.33
    assert (ltv["value"], ltv["stretch"], ltv["met"]) == ("66.66", "74.66", True)
    assert k["csat"]["target"]["value"] == 4.5 and k["csat"]["target"]["met"] is False
    assert k["follow_up_coverage"]["target"]["met"] is False
    assert k["revenue"]["target"] is None
    assert "feedback" in body["definitions"]["nps"]
    assert body["breakdowns"] == {}


async def test_nps_has_its_ci_and_hides_below_the_minimum_sample(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """As feedback's metrics: below the minimum sample the NPS and its CI are null, the
    count stays; per breakdown group too."""
    env = fresh_segmentation
    await _december(env)
    env.settings.nps_min_sample = 3  # Dec has 4 answers, Nov 1
    body = await _kpis(env, **DEC, by="tier")
    k = body["kpis"]
    assert _pair(k["nps"]) == (25.0, None)
    assert _pair(k["nps_hidden"]) == (False, True)
    assert _pair(k["nps_responses"]) == (4, 1)
    # p = 2/4 promoters, d = 1/4 detractors: var = 0.75 - 0.0625, se = sqrt(var / 4)
    margin = 100 * 1.959963984540054 * math.sqrt((0.75 - 0.25**2) / 4)
    assert k["nps_ci95"]["current"] == [round(25 - margin, 1), 100.0]
    assert k["nps_ci95"]["previous"] is None
    assert k["nps"]["target"]["met"] is False
    assert "minimum sample" in body["definitions"]["nps"]
    groups = {g["key"]: g["kpis"] for g in body["breakdowns"]["tier"]}
    assert _pair(groups["gold"]["nps"]) == (None, None)  # A's one answer
    assert _pair(groups["gold"]["nps_hidden"]) == (True, None)
    assert groups["gold"]["nps"]["target"]["met"] is None
    assert _pair(groups["bronze"]["nps"]) == (0.0, None)  # B 6, C 10, D 8
    env.settings.nps_min_sample = 30  # the default, as feedback's
    k = (await _kpis(env, **DEC))["kpis"]
    assert _pair(k["nps"]) == (None, None) and _pair(k["nps_ci95"]) == (None, None)
    assert _pair(k["nps_hidden"]) == (True, True) and _pair(k["nps_responses"]) == (4, 1)


async def test_kpis_per_tier_with_the_tier_at_each_period_end(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    await _december(env)
    body = await _kpis(env, **DEC, by="tier")
    assert "tier history" in body["breakdown_definitions"]["tier"]
    groups = {g["key"]: g for g in body["breakdowns"]["tier"]}
    assert sorted(groups) == ["bronze", "gold"]
    gold, bronze = groups["gold"]["kpis"], groups["bronze"]["kpis"]
    # A is gold at the end of Dec, bronze at the end of Nov (previous period: no gold)
    assert _pair(gold["members"]) == (1, None)
    assert _pair(gold["revenue"]) == ("200.00", None)
    assert _pair(gold["repurchase_rate"]) == (1.0, None)
    assert _pair(gold["nps"]) == (100.0, None)  # A's 9
    assert _pair(gold["churn_rate"]) == (0.0, None)
    assert _pair(gold["complaint_rate"]) == (0.5, None)  # K3 over A's 2 orders
    assert gold["nps"]["target"]["met"] is True
    assert _pair(bronze["members"]) == (3, 4)
    assert _pair(bronze["revenue"]) == ("70.00", "160.00")
    assert _pair(bronze["repurchase_rate"]) == (0.0, 0.0)
    assert _pair(bronze["nps"]) == (0.0, 100.0)  # B 6, C 10, D 8; Nov: A's 10 (then bronze)
    assert _pair(bronze["churn_rate"]) == (0.5, None)  # B and C bought in Nov, C not in Dec
    assert _pair(bronze["complaint_rate"]) == (1.0, round(1 / 3, 6))  # K1, K2 / B, D orders
    assert _pair(bronze["sla_compliance"]) == (0.75, 1.0)
    # the groups add up to the whole
    total = body["kpis"]["revenue"]["current"]
    assert float(gold["revenue"]["current"]) + float(bronze["revenue"]["current"]) == float(total)
    assert "tier_distribution" not in bronze


async def test_kpis_per_segment_and_value_tier_use_membership_at_period_end(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """Segment history is written when a member enters (now): the current period contains
    it, the previous one ends before it, so the previous figures of the group are null."""
    env = fresh_segmentation
    now = datetime.now(UTC)

    def day(days_ago: int) -> str:
        return (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M")

    x, y = member_id(), member_id()
    created = await env.client.post(
        "/v1/segments",
        json={"name": f"repeaters-{uuid.uuid4().hex[:6]}", "condition": "order_count >= 2"},
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    await env.feed(
        enrolled(x, "2024-01-01"),
        enrolled(y, "2024-01-01"),
        order(x, day(10), "80.00"),
        order(x, day(5), "20.00"),
        order(y, day(7), "50.00"),
        order(y, day(40), "50.00"),  # previous period
        survey(x, day(3), nps=10),
        survey(y, day(3), nps=0),
    )
    period = {
        "from": (now - timedelta(days=30)).isoformat(),
        "to": (now + timedelta(minutes=5)).isoformat(),
    }
    body = await _kpis(env, **period, by=["segment", "value_tier"])
    [group] = body["breakdowns"]["segment"]
    assert (group["key"], group["label"]) == (segment["segment_id"], segment["name"])
    kpis = group["kpis"]
    assert _pair(kpis["members"]) == (2, None)  # x and y (y's Nov order counts: 2 orders)
    assert _pair(kpis["revenue"]) == ("150.00", None)
    assert _pair(kpis["nps"]) == (0.0, None)  # one promoter, one detractor
    # no recompute yet: every member is unscored, in both periods
    [unscored] = body["breakdowns"]["value_tier"]
    assert unscored["key"] == "unscored"
    assert _pair(unscored["kpis"]["revenue"]) == ("150.00", "50.00")
    assert _pair(body["kpis"]["nps"]) == (0.0, None)


async def test_erasure_keeps_feedback_figures_and_bad_breakdown_is_422(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = await _december(env)
    export = (await env.client.get(f"/v1/profiles/{members['a']}/export")).json()
    assert sorted(s["nps"] for s in export["survey_scores"]) == [9, 10]
    assert [c["status"] for c in export["complaints"]] == ["open"]  # K3
    await env.feed(erased(members["d"]), erased(members["c"]))
    gone = await env.client.get(f"/v1/profiles/{members['c']}/export")
    assert gone.status_code == 404  # nothing links the kept scores to C any more
    k = (await _kpis(env, **DEC))["kpis"]
    assert _pair(k["nps"]) == (25.0, 100.0)  # anonymous scores are kept
    assert _pair(k["complaints"]) == (3, 1)
    assert _pair(k["sla_compliance"]) == (0.75, 1.0)
    bad = await env.client.get("/v1/analytics/kpis", params={**DEC, "by": "country"})
    assert bad.status_code == 422, bad.text
    assert "query.by.0" in [e["field"] for e in bad.json()["errors"]]  # the first value


async def test_value_tier_breakdown_core_retention_and_high_value_share(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """After a recompute: H and H2 are high (top 20% of 365-day spend, 5+ orders), the eight
    one-order members low. H bought in Nov and Dec, H2 in Nov only."""
    env = fresh_segmentation
    h, h2 = member_id(), member_id()
    lows = [member_id() for _ in range(8)]
    await env.feed(
        *(enrolled(m, "2024-01-01") for m in (h, h2, *lows)),
        *(order(h, at, "100.00") for at in ("2025-06-01", "2025-07-01", "2025-08-01")),
        order(h, "2025-11-15", "100.00"),
        order(h, "2025-12-05", "100.00"),
        order(h, "2025-12-15", "100.00"),
        *(
            order(h2, at, "100.00")
            for at in ("2025-05-01", "2025-06-01", "2025-07-01", "2025-08-01", "2025-11-20")
        ),
        *(order(m, "2025-12-10", "10.00") for m in lows),
    )
    await env.recompute("2026-01-01T00:00:00+00:00")
    body = await _kpis(env, **DEC, by="value_tier")
    k = body["kpis"]
    assert _pair(k["high_value_revenue_share"]) == (round(200 / 280, 4), 1.0)
    assert _pair(k["core_customer_retention_rate"]) == (0.5, None)  # H2 did not come back
    assert k["core_customer_retention_rate"]["target"]["met"] is False  # target 95%
    assert _pair(k["churn_rate"]) == (0.5, None)
    groups = {g["key"]: g["kpis"] for g in body["breakdowns"]["value_tier"]}
    assert sorted(groups) == ["high", "low"]
    assert _pair(groups["high"]["members"]) == (2, 2)
    assert _pair(groups["high"]["revenue"]) == ("200.00", "200.00")
    assert _pair(groups["high"]["churn_rate"]) == (0.5, None)
    assert _pair(groups["low"]["members"]) == (8, 8)
    assert _pair(groups["low"]["revenue"]) == ("80.00", "0.00")
    assert _pair(groups["low"]["buyers"]) == (8, 0)


async def test_feedback_facts_are_idempotent_and_order_tolerant(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    answer = survey(m, "2025-12-08", nps=3, csat=2)
    republished = make_event(  # the same response under a new event id
        answer.source, answer.type, m, dict(answer.data), time=answer.time
    )
    k = Complaint(m)
    await env.feed(
        enrolled(m, "2024-01-01"),
        order(m, "2025-12-01T08:00", "10.00"),
        answer,
        republished,
        # resolution and breach arrive before the opening
        k.resolved("2025-12-05", fcr=True),
        k.breached("resolution", "2025-12-04"),
        k.opened("2025-12-02"),
        k.action("acknowledged", "acknowledged", "2025-12-02T10:00"),  # older than resolved
    )
    figures = (await _kpis(env, **DEC))["kpis"]
    assert _pair(figures["nps_responses"]) == (1, 0)
    assert _pair(figures["nps"]) == (-100.0, None)
    assert _pair(figures["complaints"]) == (1, 0)
    # first response met, resolution breached: 1 of 2 clocks
    assert _pair(figures["sla_compliance"]) == (0.5, None)
    assert _pair(figures["first_contact_resolution_rate"]) == (1.0, None)
    rows = await env.sql(
        "SELECT status, opened_at IS NOT NULL FROM complaint_facts WHERE complaint_id = :id",
        id=k.id,
    )
    assert [tuple(r) for r in rows] == [("resolved", True)]  # the newest status stays


async def test_refunds_before_the_period_end_reduce_revenue(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    await env.feed(
        enrolled(m, "2024-01-01"),
        order(m, "2025-11-20", "50.00", order_id=f"o-{m}-1"),
        order(m, "2025-12-05", "100.00", order_id=f"o-{m}-2"),
        refund(m, f"o-{m}-1", "10.00", "2025-12-02"),  # after Nov's end: Nov keeps 50
        refund(m, f"o-{m}-2", "30.00", "2025-12-10"),
        refund(m, f"o-{m}-2", "20.00", "2026-01-05"),  # after Dec's end: ignored for Dec
    )
    k = (await _kpis(env, **DEC))["kpis"]
    assert _pair(k["revenue"]) == ("70.00", "50.00")
    assert _pair(k["average_ltv"]) == ("110.00", "50.00")  # 40 + 70 net before Dec 31
