"""Metric formulas on hand-computed data (own database), the CSI hierarchy and the AHP endpoint."""

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from feedback.orders.handlers import on_order_recorded
from feedback.sla.service import detect_breaches
from feedback.testing import IsolatedFeedback
from loyalty_shared.contracts.points import OrderRecordedV1

OPS = {"X-Operator-Id": "agent-ann"}


def day(d: int, h: int, m: int = 0, month: int = 4) -> datetime:
    return datetime(2026, month, d, h, m, tzinfo=UTC)


async def act(fb: IsolatedFeedback, cid: str, action: str, when: datetime) -> dict[str, Any]:
    fb.clock.set(when)
    r = await fb.client.post(f"/v1/complaints/{cid}/actions", json={"action": action}, headers=OPS)
    assert r.status_code == 200, r.text
    return r.json()


async def complaint(fb: IsolatedFeedback, when: datetime, cause: str) -> str:
    fb.clock.set(when)
    r = await fb.client.post(
        "/v1/complaints",
        json={
            "member_id": f"m-{uuid.uuid4().hex[:10]}",
            "channel": "app",
            "category": "general",
            "cause": cause,
            "description": "x",
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


HIERARCHY = {
    "criteria": [
        {
            "key": "a",
            "name": "A",
            "factors": [{"key": "f1", "name": "F1"}, {"key": "f2", "name": "F2"}],
        },
        {"key": "b", "name": "B", "factors": [{"key": "f3", "name": "F3"}]},
    ],
    "criteria_matrix": [[1, 3], [1 / 3, 1]],  # weights 0.75, 0.25
    "factor_matrices": {"a": [[1, 1], [1, 1]], "b": [[1]]},
}

# (nps, csat, f1 likert5, f2 rating, f3 likert5); None = skipped
APRIL = [
    (10, 5, 5, 4, 4),
    (10, 4, 4, 4, 5),
    (10, 4, 4, 2, None),
    (9, 5, 5, 5, 3),
    (9, 3, 3, None, None),
    (8, 4, "very_satisfied", None, None),
    (7, 2, None, None, None),
    (6, 3, None, None, None),
    (3, 1, None, None, None),
    (0, None, None, None, None),
    (None, 5, 2, None, None),
]


async def test_metrics_on_hand_computed_data(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    fb.settings.nps_min_sample = 5
    put = await fb.client.put("/v1/feedback/csi-hierarchy", json=HIERARCHY)
    assert put.status_code == 200, put.text
    weights = {f["key"]: f["weight"] for f in put.json()["factor_weights"]}
    assert weights == pytest.approx({"f1": 0.375, "f2": 0.375, "f3": 0.25})

    survey = await fb.client.post(
        "/v1/surveys",
        json={
            "name": "quarterly",
            "allow_multiple_responses": True,
            "questions": [
                {"id": "nps", "type": "nps", "text": "Recommend?"},
                {"id": "sat", "type": "rating", "text": "Satisfied?"},
                {"id": "q1", "type": "likert5", "text": "F1", "factor": "f1"},
                {"id": "q2", "type": "rating", "text": "F2", "factor": "f2"},
                {"id": "q3", "type": "likert5", "text": "F3", "factor": "f3"},
            ],
        },
    )
    sid = survey.json()["id"]
    for i, row in enumerate(APRIL):
        fb.clock.set(day(10, 8, i))
        answers = {
            k: v
            for k, v in zip(("nps", "sat", "q1", "q2", "q3"), row, strict=True)
            if v is not None
        }
        r = await fb.client.post(
            f"/v1/surveys/{sid}/responses", json={"member_id": f"m{i}", "answers": answers}
        )
        assert r.status_code == 201, r.text
    fb.clock.set(day(15, 8, month=3))
    await fb.client.post(
        f"/v1/surveys/{sid}/responses", json={"member_id": "prev", "answers": {"nps": 10, "sat": 4}}
    )

    async with fb.sessionmaker() as session, session.begin():
        for i in range(20):  # 20 orders in April
            when = day(1 + i, 12)
            await on_order_recorded(
                session,
                OrderRecordedV1.sample(
                    order_id=f"o-{uuid.uuid4().hex}", member_id=f"m{i}", occurred_at=when
                ).event(f"m{i}"),
            )

    c1 = await complaint(fb, day(2, 9), "delivery")
    await act(fb, c1, "acknowledge", day(2, 10))
    await act(fb, c1, "resolve", day(2, 12))
    c2 = await complaint(fb, day(3, 9), "delivery")
    await act(fb, c2, "acknowledge", day(3, 9, 30))
    await act(fb, c2, "escalate", day(3, 10))
    await act(fb, c2, "resolve", day(3, 15))
    c3 = await complaint(fb, day(4, 9), "product_quality")
    async with fb.sessionmaker() as session, session.begin():
        assert await detect_breaches(session, day(5, 10)) == [c3]
    await act(fb, c3, "acknowledge", day(5, 11))
    await complaint(fb, day(6, 9), "billing")
    await complaint(fb, day(7, 9), "delivery")
    page = await fb.client.get("/v1/follow-ups", params={"reason": "post_resolution"})
    by_complaint = {f["complaint_id"]: f["id"] for f in page.json()["items"]}
    for cid, rectified, when in ((c1, True, day(4, 10)), (c2, False, day(5, 12))):
        fb.clock.set(when)
        done = await fb.client.post(
            f"/v1/follow-ups/{by_complaint[cid]}/outcome",
            json={"outcome": "called", "rectified": rectified},
            headers=OPS,
        )
        assert done.status_code == 200, done.text

    response = await fb.client.get(
        "/v1/feedback/metrics",
        params={"from": "2026-04-01T00:00:00+00:00", "to": "2026-05-01T00:00:00+00:00"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous_period"] == {
        "from": "2026-03-02T00:00:00Z",
        "to": "2026-04-01T00:00:00Z",
    }
    cur = body["current"]

    # NPS: 10 answers (the skipped one is not an answer): 5 promoters, 2 passives, 3 detractors
    nps = cur["nps"]
    assert (nps["responses"], nps["promoters"], nps["passives"], nps["detractors"]) == (10, 5, 2, 3)
    assert nps["score"] == pytest.approx(20.0)
    margin = 100 * 1.959964 * math.sqrt((0.5 + 0.3 - 0.2**2) / 10)  # 54.03
    assert nps["ci95"] == pytest.approx([20 - margin, 20 + margin], abs=1e-3)
    assert nps["hidden"] is False
    # CSAT: (5+4+4+5+3+4+2+3+1+5) / 10
    csat = cur["csat"]
    assert (csat["responses"], csat["mean"], csat["target"]) == (10, pytest.approx(3.6), 4.5)
    assert csat["satisfied_share"] == pytest.approx(0.6)
    assert "mean of 1-5" in csat["method"]
    # CSI: DC1 = 28/(5*7) = 0.8, DC2 = 15/(5*4) = 0.75, DC3 = 12/(5*3) = 0.8
    csi = cur["csi"]
    dcs = {f["key"]: f["dc"] for f in csi["factors"]}
    assert dcs == pytest.approx({"f1": 0.8, "f2": 0.75, "f3": 0.8})
    assert csi["value"] == pytest.approx(0.375 * 0.8 + 0.375 * 0.75 + 0.25 * 0.8)  # 0.78125
    assert csi["complete"] is True

    assert cur["complaints_opened"] == 5
    assert cur["complaint_rate"]["numerator"] == 5 and cur["complaint_rate"]["denominator"] == 20
    assert cur["complaint_rate"]["rate"] == pytest.approx(0.25)
    assert cur["fcr"] == {"numerator": 1, "denominator": 2, "rate": 0.5, "target": 0.85}
    sla = cur["sla_compliance"]
    assert (sla["first_response"]["numerator"], sla["first_response"]["denominator"]) == (2, 3)
    assert (sla["resolution"]["numerator"], sla["resolution"]["denominator"]) == (2, 2)
    assert sla["overall"]["rate"] == pytest.approx(4 / 5)
    assert cur["mean_minutes_to_first_response"] == pytest.approx((60 + 30 + 1560) / 3)
    assert cur["mean_minutes_to_resolution"] == pytest.approx((180 + 360) / 2)
    assert [(c["cause"], c["count"], c["vital_few"]) for c in cur["causes"]] == [
        ("delivery", 3, True),
        ("billing", 1, True),
        ("product_quality", 1, False),
    ]
    assert [c["cumulative_share"] for c in cur["causes"]] == pytest.approx([0.6, 0.8, 1.0])
    assert cur["follow_up_coverage"]["rate"] == 1.0
    assert cur["rectification"] == {
        "numerator": 1,
        "denominator": 2,
        "rate": 0.5,
        "target": 0.95,
    }

    prev = body["previous"]
    assert prev["nps"]["responses"] == 1
    assert prev["nps"]["hidden"] is True and prev["nps"]["score"] is None
    assert prev["csat"]["mean"] == 4.0
    assert prev["csi"]["value"] is None and prev["csi"]["complete"] is False
    assert prev["complaints_opened"] == 0 and prev["fcr"]["rate"] is None

    bad = await fb.client.get(
        "/v1/feedback/metrics",
        params={"from": "2026-05-01T00:00:00+00:00", "to": "2026-04-01T00:00:00+00:00"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.from"


async def test_inconsistent_hierarchy_is_rejected(isolated_feedback: IsolatedFeedback) -> None:
    fb = isolated_feedback
    bad = {
        **HIERARCHY,
        "criteria": [
            *HIERARCHY["criteria"],
            {"key": "c", "name": "C", "factors": [{"key": "f4", "name": "F4"}]},
        ],  # type: ignore[list-item]
        "criteria_matrix": [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]],
        "factor_matrices": {**HIERARCHY["factor_matrices"], "c": [[1]]},  # type: ignore[dict-item]
    }
    response = await fb.client.put("/v1/feedback/csi-hierarchy", json=bad)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/inconsistent-matrix")
    assert problem["cr"] > 0.1
    assert problem["errors"][0]["field"] == "body.criteria_matrix"


async def test_default_hierarchy_has_13_factors_in_3_criteria(
    feedback_client: httpx.AsyncClient,
) -> None:
    body = (await feedback_client.get("/v1/feedback/csi-hierarchy")).json()
    assert body["is_default"] is True
    assert [len(c["factors"]) for c in body["criteria"]] == [5, 4, 4]
    assert sum(f["weight"] for f in body["factor_weights"]) == pytest.approx(1.0)
    assert body["factor_weights"][0]["weight"] == pytest.approx(1 / 15)


async def test_ahp_saaty_example(feedback_client: httpx.AsyncClient) -> None:
    response = await feedback_client.post(
        "/v1/ahp/weights",
        json={"matrix": [[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]], "labels": ["a", "b", "c"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # Saaty's textbook 3x3: w = (0.637, 0.258, 0.105), lambda_max = 3.039, CR = 0.033
    assert body["weights"] == pytest.approx([0.637, 0.258, 0.105], abs=1e-3)
    assert body["lambda_max"] == pytest.approx(3.0385, abs=1e-4)
    assert body["ci"] == pytest.approx((3.0385 - 3) / 2, abs=1e-4)
    assert body["cr"] == pytest.approx(body["ci"] / 0.58)
    assert body["ri"] == 0.58 and body["consistent"] is True
    assert body["labelled"]["a"] == body["weights"][0]


@pytest.mark.parametrize(
    ("matrix", "slug"),
    [
        ([[1, 3], [3, 1]], "invalid-matrix"),  # not reciprocal
        ([[1, -2], [-0.5, 1]], "invalid-matrix"),  # not positive
        ([[1, 2, 3], [0.5, 1]], "invalid-matrix"),  # not square
        ([[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]], "inconsistent-matrix"),
    ],
)
async def test_ahp_rejects_bad_matrices(
    feedback_client: httpx.AsyncClient, matrix: list[list[float]], slug: str
) -> None:
    response = await feedback_client.post("/v1/ahp/weights", json={"matrix": matrix})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith(f"/{slug}")
    assert problem["errors"][0]["field"] == "body.matrix"
    if slug == "inconsistent-matrix":
        assert problem["cr"] == pytest.approx(6.1303, abs=1e-3)


async def test_metrics_period_is_validated(feedback_client) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("from=0001-01-01T00:00:00Z", "query.from"),
        ("from=2026-01-01T00:00:00", "query.from"),  # no offset
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.from"),
        ("to=9999-12-31T00:00:00Z", "query.to"),
    ]
    for query, field in cases:
        response = await feedback_client.get(f"/v1/feedback/metrics?{query}")
        assert response.status_code == 422, (query, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
