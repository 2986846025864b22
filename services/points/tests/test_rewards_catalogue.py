"""The rewards catalogue through /v1/rewards: create (idempotent by id), read, list, patch."""

import uuid
from typing import Any

import httpx
import pytest


def rid() -> str:
    return f"r-{uuid.uuid4().hex[:12]}"


def reward(**overrides: Any) -> dict[str, Any]:
    return {
        "reward_id": rid(),
        "name": "Tote bag",
        "description": "Canvas, printed logo",
        "kind": "product",
        "points_cost": 1200,
        "stock": 5,
        **overrides,
    }


async def test_create_read_and_replay(points_client: httpx.AsyncClient) -> None:
    body = reward()
    created = await points_client.post("/v1/rewards", json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert {k: out[k] for k in body} == body and out["active"] is True and out["created_at"]
    assert (await points_client.get(f"/v1/rewards/{body['reward_id']}")).json() == out
    again = await points_client.post("/v1/rewards", json=body)
    assert again.status_code == 200 and again.json() == out


async def test_idempotency_key_replays_the_first_answer(
    points_client: httpx.AsyncClient,
) -> None:
    body = reward()
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await points_client.post("/v1/rewards", json=body, headers=key)
    replay = await points_client.post("/v1/rewards", json=body, headers=key)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json() and replay.headers.get("Idempotent-Replayed") == "true"
    other_body = reward()
    other = await points_client.post("/v1/rewards", json=other_body, headers=key)
    assert other.status_code == 409
    assert (await points_client.get(f"/v1/rewards/{other_body['reward_id']}")).status_code == 404


async def test_same_id_other_definition_is_409(points_client: httpx.AsyncClient) -> None:
    body = reward()
    await points_client.post("/v1/rewards", json=body)
    response = await points_client.post("/v1/rewards", json={**body, "points_cost": 999})
    assert response.status_code == 409
    assert response.json()["type"].endswith("/reward-exists")
    assert response.json()["fields"] == ["points_cost"]
    got = (await points_client.get(f"/v1/rewards/{body['reward_id']}")).json()
    assert got["points_cost"] == 1200


async def test_unlimited_stock_and_kinds(points_client: httpx.AsyncClient) -> None:
    for kind in ("product", "service", "coupon"):
        body = reward(kind=kind, stock=None)
        out = (await points_client.post("/v1/rewards", json=body)).json()
        assert out["kind"] == kind and out["stock"] is None


async def test_patch_stock_cost_active(points_client: httpx.AsyncClient) -> None:
    body = reward()
    await points_client.post("/v1/rewards", json=body)
    url = f"/v1/rewards/{body['reward_id']}"
    patched = await points_client.patch(url, json={"stock": 40, "points_cost": 900})
    assert patched.status_code == 200, patched.text
    assert patched.json()["stock"] == 40 and patched.json()["points_cost"] == 900
    unlimited = await points_client.patch(url, json={"stock": None})
    assert unlimited.json()["stock"] is None
    off = await points_client.patch(url, json={"active": False})
    assert off.json()["active"] is False
    got = (await points_client.get(url)).json()
    assert (got["stock"], got["points_cost"], got["active"]) == (None, 900, False)
    assert got["name"] == body["name"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(reward(points_cost=0), "body.points_cost", id="free"),
        pytest.param(reward(points_cost=-5), "body.points_cost", id="negative-cost"),
        pytest.param(reward(stock=-1), "body.stock", id="negative-stock"),
        pytest.param(reward(kind="voucher"), "body.kind", id="unknown-kind"),
        pytest.param(reward(name=""), "body.name", id="empty-name"),
        pytest.param(reward(reward_id="a b"), "body.reward_id", id="bad-id"),
        pytest.param(reward(colour="red"), "body.colour", id="unknown-field"),
        pytest.param(
            {k: v for k, v in reward().items() if k != "points_cost"},
            "body.points_cost",
            id="missing-cost",
        ),
    ],
)
async def test_invalid_reward_is_422_and_writes_nothing(
    points_client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    body = {**body, "reward_id": rid()} if field != "body.reward_id" else body
    response = await points_client.post("/v1/rewards", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    if field != "body.reward_id":
        assert (await points_client.get(f"/v1/rewards/{body['reward_id']}")).status_code == 404


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"stock": -3}, "body.stock"),
        ({"points_cost": 0}, "body.points_cost"),
        ({"points_cost": None}, "body.points_cost"),
        ({"active": None}, "body.active"),
        ({"kind": "coupon"}, "body.kind"),
    ],
)
async def test_invalid_patch_is_422_and_changes_nothing(
    points_client: httpx.AsyncClient, patch: dict[str, Any], field: str
) -> None:
    body = reward()
    before = (await points_client.post("/v1/rewards", json=body)).json()
    url = f"/v1/rewards/{body['reward_id']}"
    response = await points_client.patch(url, json=patch)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await points_client.get(url)).json() == before


async def test_unknown_reward_is_404(points_client: httpx.AsyncClient) -> None:
    assert (await points_client.get(f"/v1/rewards/{rid()}")).status_code == 404
    response = await points_client.patch(f"/v1/rewards/{rid()}", json={"stock": 1})
    assert response.status_code == 404
    assert response.json()["type"].endswith("/reward-not-found")


async def test_list_filters_and_pages(points_client: httpx.AsyncClient) -> None:
    prefix = f"r-{uuid.uuid4().hex[:8]}"
    bodies = [
        reward(reward_id=f"{prefix}-a", stock=0),
        reward(reward_id=f"{prefix}-b", kind="coupon", stock=None),
        reward(reward_id=f"{prefix}-c", active=False),
        reward(reward_id=f"{prefix}-d", kind="service", stock=3),
    ]
    for body in bodies:
        assert (await points_client.post("/v1/rewards", json=body)).status_code == 201

    async def ids(**params: Any) -> list[str]:
        seen: list[str] = []
        query: dict[str, Any] = {"limit": 2, **params}
        while True:
            page = (await points_client.get("/v1/rewards", params=query)).json()
            seen += [r["reward_id"] for r in page["items"]]
            if page["next_cursor"] is None:
                return [i for i in seen if i.startswith(prefix)]
            query["after"] = page["next_cursor"]

    assert await ids(after=prefix) == [f"{prefix}-{x}" for x in "abcd"]
    assert await ids(after=prefix, available="true") == [f"{prefix}-b", f"{prefix}-d"]
    assert await ids(after=prefix, active="false") == [f"{prefix}-c"]
    assert await ids(after=prefix, kind="coupon") == [f"{prefix}-b"]
    assert (await points_client.get("/v1/rewards", params={"limit": 0})).status_code == 422
