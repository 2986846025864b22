"""The ops console in a real headless browser (Playwright driving Debian's chromium): sign in,
the overview's charts drawn from data seeded through the API, acting on a complaint,
adjusting a member's points, and a segment whose condition is wrong.

The gateway is served by uvicorn over the in-process services (real Postgres, the real
broker, the relays and segmentation's consumer: the ``pipeline`` fixture). One browser for
the module; each test has its own context. ``CONSOLE_SCREENSHOTS=<dir>`` also saves every
page at 1280 px and at a phone's width (docs/console/ holds the committed ones).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright, expect

from gateway.testing import TEST_KEYS, bearer, chromium_path
from loyalty_shared.devstack.broker import free_port
from loyalty_shared.testing import asgi_client, eventually

pytestmark = pytest.mark.e2e

SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
WIDTHS = (1280, 390)
CAUSES = ("late-delivery", "late-delivery", "late-delivery", "damaged", "billing")


class Seeded:
    def __init__(self, run: str, members: list[str], complaints: list[str]) -> None:
        self.run = run
        self.members = members
        self.complaints = complaints


async def _history(client: httpx.AsyncClient, member: str, orders: int) -> None:
    now = datetime.now(UTC)
    batch = [
        {
            "order_id": f"o-console-{uuid.uuid4().hex[:12]}",
            "member_id": member,
            "amount": f"{40 + 15 * i}.00",
            "occurred_at": (now - timedelta(days=5 + 9 * i)).isoformat(),
        }
        for i in range(orders)
    ]
    imported = await client.post("/v1/orders/batch", json={"orders": batch, "enrol_missing": True})
    assert imported.status_code == 200 and imported.json()["created"] == orders, imported.text


async def _recompute(client: httpx.AsyncClient) -> None:
    accepted = await client.post("/v1/analytics/recompute", json={})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["job_id"]

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/v1/jobs/{job}")).json()
        return body if body["status"] in ("succeeded", "failed") else None

    assert (await eventually(finished, timeout=120))["status"] == "succeeded"


@pytest.fixture(scope="module")
async def seeded(gateway_app: FastAPI, pipeline: object) -> Seeded:
    """Members with order histories (profiled by the consumer, then scored by a recompute)
    and complaints with causes, all through the gateway's API."""
    run = uuid.uuid4().hex[:8]
    members = [f"m-console-{run}-{i}" for i in range(6)]
    async with asgi_client(gateway_app) as client:
        client.headers.update(bearer(TEST_KEYS["admin"]))
        for i, member in enumerate(members):
            await _history(client, member, 1 + i % 4)

        async def profiled() -> bool:
            answers = [await client.get(f"/v1/profiles/{m}") for m in members]
            return all(a.status_code == 200 and a.json()["order_count"] > 0 for a in answers)

        await eventually(profiled, timeout=60)
        await _recompute(client)
        complaints = []
        for member, cause in zip(members, CAUSES, strict=False):
            opened = await client.post(
                "/v1/complaints",
                json={
                    "member_id": member,
                    "channel": "web",
                    "category": "delivery",
                    "cause": cause,
                    "description": f"console test {run}",
                },
            )
            assert opened.status_code == 201, opened.text
            complaints.append(opened.json()["id"])
        for action in ("acknowledge", "resolve"):  # stopped clocks: SLA compliance
            acted = await client.post(
                f"/v1/complaints/{complaints[-1]}/actions", json={"action": action}
            )
            assert acted.status_code == 200, acted.text
        await _answers(client, members)
    return Seeded(run, members, complaints)


async def _answers(client: httpx.AsyncClient, members: list[str]) -> None:
    """An NPS and CSAT survey every member is asked, answered by each."""
    survey = await client.post(
        "/v1/surveys",
        json={
            "name": "console test",
            "audience": "members",
            "questions": [
                {"id": "nps", "type": "nps", "text": "Would you recommend us?"},
                {"id": "csat", "type": "rating", "text": "How satisfied are you?"},
            ],
        },
    )
    assert survey.status_code == 201, survey.text
    for i, member in enumerate(members):
        answered = await client.post(
            f"/v1/surveys/{survey.json()['id']}/responses",
            json={"member_id": member, "answers": {"nps": 6 + i % 5, "csat": 3 + i % 3}},
        )
        assert answered.status_code == 201, answered.text


@pytest.fixture(scope="module")
async def base_url(gateway_app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    # The app's lifespan already runs (session fixture): serve it as it is.
    config = uvicorn.Config(
        gateway_app, host="127.0.0.1", port=port, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("needs Debian's chromium package: apt-get install chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    """A signed-out browser context of its own."""
    context = await browser.new_context(
        base_url=base_url, viewport={"width": WIDTHS[0], "height": 900}
    )
    opened = await context.new_page()
    yield opened
    await context.close()


@pytest.fixture(scope="module")
async def signed_in_state(browser: Browser, base_url: str) -> dict[str, Any]:
    """The cookies of one ops sign-in, for the tests that start signed in."""
    context = await browser.new_context(base_url=base_url)
    opened = await context.new_page()
    await sign_in(opened)
    state: dict[str, Any] = await context.storage_state()  # type: ignore[assignment]
    await context.close()
    return state


@pytest.fixture
async def ops_page(
    browser: Browser, base_url: str, signed_in_state: dict[str, Any]
) -> AsyncIterator[Page]:
    """A browser context of its own, signed in with the ops key."""
    context = await browser.new_context(
        base_url=base_url,
        viewport={"width": WIDTHS[0], "height": 900},
        storage_state=signed_in_state,  # type: ignore[arg-type]
    )
    opened = await context.new_page()
    yield opened
    await context.close()


async def shoot(page: Page, name: str) -> None:
    """Screenshots of the page at each width (only with CONSOLE_SCREENSHOTS set)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(
            path=f"{SHOTS}/{name}-{width}.jpg", full_page=True, type="jpeg", quality=70
        )
    await page.set_viewport_size({"width": WIDTHS[0], "height": 900})


async def sign_in(page: Page, key: str = TEST_KEYS["ops"]) -> None:
    await page.goto("/console")
    assert page.url.endswith("/console/login")  # signed out: sent to the form
    await shoot(page, "sign-in")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert "api_key" not in page.url and key not in page.url
    assert await page.evaluate("() => document.cookie") == ""  # HttpOnly: out of scripts' reach


CHART_SUMS = """() => ["chart-tiers", "chart-value", "chart-lifecycle", "chart-pareto"].map(id => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart ? chart.data.datasets[0].data.reduce((a, b) => a + (b || 0), 0) : -1;
})"""


async def test_sign_in_and_see_the_overview_with_its_charts(page: Page, seeded: Seeded) -> None:
    await sign_in(page)
    await page.wait_for_function("() => window.Chart && Chart.getChart('chart-pareto')")
    tiers, value, lifecycle, pareto = await page.evaluate(CHART_SUMS)
    assert min(tiers, value, lifecycle, pareto) > 0, (tiers, value, lifecycle, pareto)
    cells = await page.locator("#rfm-grid tbody td").all_inner_texts()
    assert sum(int(c) for c in cells) >= len(seeded.members)
    # the Pareto: causes by count, biggest first (other tests' complaints share the
    # database, so the seeded causes are among them rather than alone)
    causes, counts = await page.evaluate(
        "() => { const c = Chart.getChart('chart-pareto'); "
        "return [c.data.labels, c.data.datasets[0].data]; }"
    )
    assert counts == sorted(counts, reverse=True), counts
    assert counts[causes.index("late-delivery")] >= 3, (causes, counts)
    assert await page.locator(".card").count() > 5
    await shoot(page, "overview")
    await page.get_by_label("Break down by").select_option("tier")
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("heading", name="By tier")).to_be_visible()
    await page.goto("/console/pipeline")
    await expect(page.locator("[data-service=points]")).to_contain_text("Outbox backlog")
    await shoot(page, "pipeline")


async def test_act_on_a_complaint_with_only_the_allowed_actions(
    ops_page: Page, seeded: Seeded
) -> None:
    page = ops_page
    await page.goto("/console/complaints?status=open&sort=deadline")
    row = page.locator(f"tr[data-complaint='{seeded.complaints[0]}']")
    await expect(row.locator("[data-due]")).to_contain_text("in ")  # the countdown runs
    await shoot(page, "complaints")
    await row.get_by_role("link", name=seeded.complaints[0]).click()
    actions = page.get_by_role("group", name="Allowed actions")
    await expect(actions.get_by_role("button", name="Acknowledge")).to_be_visible()
    await expect(actions.get_by_role("button", name="Close")).to_have_count(0)  # not from open
    await page.get_by_label("Note").fill("Called the member back")
    await actions.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator("#complaint-status")).to_have_text("acknowledged")
    await expect(page.locator("#history")).to_contain_text("Called the member back")
    await expect(actions.get_by_role("button", name="Acknowledge")).to_have_count(0)
    await shoot(page, "complaint")


async def test_adjust_a_members_points_and_see_the_ledger_row(
    ops_page: Page, seeded: Seeded
) -> None:
    member = seeded.members[3]
    page = ops_page
    await page.goto("/console/members")
    await page.get_by_label("Member id").fill(member)
    await page.get_by_role("button", name="Open").click()
    await expect(page.get_by_role("heading", name=f"Member {member}")).to_be_visible()
    before = await page.locator("#member-balance").inner_text()
    await page.get_by_label("Points (+ to credit, - to debit)").fill("50")
    await page.get_by_label("Reason (kept on the ledger row)").fill(f"Goodwill {seeded.run}")
    await page.get_by_role("button", name="Adjust").click()
    await expect(page.locator("#notice")).to_have_text("Adjusted by +50 points.")
    first = page.locator("#ledger tbody tr").first
    await expect(first).to_contain_text(f"Goodwill {seeded.run}")
    await expect(first).to_contain_text("+50")
    assert await page.locator("#member-balance").inner_text() != before
    await shoot(page, "member")


async def test_a_wrong_condition_is_shown_where_it_is_wrong(ops_page: Page, seeded: Seeded) -> None:
    page = ops_page
    await page.goto("/console/segments")
    condition = "order_count >= 2 and and total_spend > 10"
    await page.locator("#seg-name").fill(f"console-{seeded.run}")
    await page.locator("#seg-condition").fill(condition)
    await page.get_by_role("button", name="Create segment").click()
    error = page.locator("#seg-condition-err")
    await expect(error).to_be_visible()
    column = condition.index("and and") + len("and ") + 1
    await expect(error).to_contain_text(f"column {column}")
    pointer = await page.locator(".condition-pointer").inner_text()
    assert pointer.splitlines() == [condition, " " * (column - 1) + "^"]
    await expect(page.locator("#seg-condition")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#seg-condition")).to_have_value(condition)  # kept to fix
    await shoot(page, "segments-error")
    await page.locator("#seg-condition").fill("order_count >= 2")
    await page.get_by_role("button", name="Create segment").click()
    await expect(page.get_by_role("heading", name=f"Segment console-{seeded.run}")).to_be_visible()
    await shoot(page, "segment")
