"""The console's pages through the in-process gateway (real services behind it), and the
rules that shape what they show."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.console.complaints import next_due, queue
from gateway.console.overview import card, profile_charts
from gateway.console.segments import pointer
from gateway.testing import TEST_KEYS, gateway_over
from loyalty_shared.testing import RoutingTransport, asgi_client


async def _signed_in(app: FastAPI, key: str) -> httpx.AsyncClient:
    client = asgi_client(app)
    form = await client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    signed = await client.post("/console/login", data={"csrf_token": token[1], "api_key": key})
    assert signed.status_code == 303, signed.text
    return client


def test_the_caret_points_at_the_position_on_its_own_line() -> None:
    condition = "order_count >= 2\nand and total_spend > 10"
    at = pointer(condition, condition.index("and total"))
    assert (at["line_number"], at["column"]) == (2, 5)
    assert at["line"] == "and and total_spend > 10" and at["caret"] == "    ^"
    assert pointer("x", 99)["caret"] == " ^"  # past the end: after the last character


def _complaint(status: str, first: str, resolution: str, **more: Any) -> dict[str, Any]:
    return {
        "status": status,
        "channel": more.pop("channel", "web"),
        "first_response_due_at": first,
        "resolution_due_at": resolution,
        "first_responded_at": more.pop("answered", None),
        "sla": more.pop("sla", {}),
        **more,
    }


def test_the_queue_is_sorted_by_the_running_clocks_deadline() -> None:
    answered = _complaint(
        "acknowledged", "2026-01-01T10:00:00+00:00", "2026-01-02T09:00:00+00:00", answered="x"
    )
    waiting = _complaint("open", "2026-01-01T12:00:00+00:00", "2026-01-01T08:00:00+00:00")
    done = _complaint("resolved", "2026-01-01T01:00:00+00:00", "2026-01-01T01:00:00+00:00")
    phone = _complaint(
        "open", "2026-01-01T00:00:00+00:00", "2026-01-03T00:00:00+00:00", channel="phone"
    )
    assert next_due(done) is None
    assert next_due(waiting) is not None and next_due(waiting).hour == 12  # type: ignore[union-attr]
    rows = queue([answered, done, waiting, phone], "web", "deadline")
    assert [r["status"] for r in rows] == ["open", "acknowledged", "resolved"]


def test_a_card_shows_the_change_and_whether_the_target_is_met() -> None:
    rate = card(
        "churn_rate",
        {"current": 0.1, "previous": 0.25, "target": {"basis": "churn <= 15%", "met": True}},
        "lost customers",
    )
    assert (rate["current"], rate["previous"], rate["change"]) == ("10.0%", "25.0%", "-15.0 pts")
    assert rate["met"] is True and rate["target"] == "churn <= 15%"
    money = card("average_ltv", {"current": "150.00", "previous": "100.00", "target": None}, None)
    assert (money["current"], money["change"], money["label"]) == (
        "150.00",
        "+50.0%",
        "Average LTV",
    )


def test_the_distribution_makes_the_value_tiers_the_rfm_grid_and_the_funnel() -> None:
    charts = profile_charts(
        {
            "profiles": 3,
            "value_tiers": {"high": 2, "unscored": 1},
            "lifecycle": {"mature": 1, "new": 1, "unknown": 1},
            "tiers": {"bronze": 3},
            "rfm_grid": [{"r": 5, "f": 4, "count": 2}],
            "rfm_scored": 2,
        }
    )
    assert dict(zip(*charts["value_tiers"].values(), strict=True)) == {
        "high": 2,
        "medium": 0,
        "low": 0,
        "unscored": 1,
    }
    assert charts["lifecycle"]["values"][:3] == [1, 0, 1]  # new, growing, mature
    top = charts["rfm"][0]  # R5 first
    assert top["r"] == 5 and top["cells"][3] == {"f": 4, "count": 2, "level": 4}
    assert charts["rfm_scored"] == 2


async def test_dead_letters_are_shown_to_admin_keys_only(gateway_app: FastAPI) -> None:
    ops = await _signed_in(gateway_app, TEST_KEYS["ops"])
    admin = await _signed_in(gateway_app, TEST_KEYS["admin"])
    as_ops = await ops.get("/console/pipeline")
    as_admin = await admin.get("/console/pipeline")
    await ops.aclose()
    await admin.aclose()
    assert as_ops.status_code == as_admin.status_code == 200
    for page in (as_ops, as_admin):
        for service in ("points", "segmentation", "feedback"):
            assert f'data-service="{service}"' in page.text
        assert "Outbox backlog" in page.text
    assert "need an admin key" in as_ops.text
    assert "need an admin key" not in as_admin.text


async def test_an_unknown_member_is_a_404_page_not_an_error(gateway_app: FastAPI) -> None:
    client = await _signed_in(gateway_app, TEST_KEYS["ops"])
    page = await client.get(f"/console/members/m-none-{uuid.uuid4().hex[:8]}")
    bad = await client.get("/console/members/bad id!")
    await client.aclose()
    assert page.status_code == 404 and "Member m-none-" in page.text
    assert bad.status_code == 422 and "member_id" in bad.text


async def test_the_console_is_off_outside_dev_without_its_secret(
    upstreams: RoutingTransport,
) -> None:
    production = {"environment": "production", "upstream_secret": "u" * 40}
    async with gateway_over(upstreams, key=None, **production) as client:
        off = await client.get("/console/login")
        assert off.status_code == 404 and "GATEWAY_CONSOLE_SECRET" in off.text
    async with gateway_over(upstreams, key=None, console_secret="c" * 40, **production) as on:
        form = await on.get("/console/login")
        assert form.status_code == 200
        assert "Secure" in form.headers["set-cookie"]  # outside dev the cookie is Secure


@pytest.mark.parametrize("name", ["vendor/chart-4.6.2.umd.min.js", "console.js", "console.css"])
async def test_the_assets_are_served_by_the_gateway(gateway_app: FastAPI, name: str) -> None:
    async with asgi_client(gateway_app) as client:
        asset = await client.get(f"/console/static/{name}")
        missing = await client.get("/console/static/../session.py")
    assert asset.status_code == 200 and len(asset.content) > 1000
    assert missing.status_code == 404
