"""The member status's expiry list (one statement: member, balance, counts and expiry dates)."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from points.testing import import_history


async def test_expiring_soon_lists_the_next_dates_in_order_summed_and_limited(
    points_client: httpx.AsyncClient,
) -> None:
    member = f"m-{uuid.uuid4().hex[:12]}"
    assert (await points_client.post("/v1/members", json={"member_id": member})).status_code == 201
    now = datetime.now(UTC).replace(microsecond=0)
    placed = [(10, "6"), (300, "1"), (100, "5"), (250, "2"), (50, "7"), (200, "3"), (150, "4")]
    placed.append((250, "10"))  # the same moment as another order: one date, summed
    history = [
        {
            "order_id": f"o-{uuid.uuid4().hex[:12]}",
            "member_id": member,
            "amount": amount,
            "occurred_at": (now - timedelta(days=days)).isoformat(),
        }
        for days, amount in placed
    ]
    await import_history(points_client, *history)
    status = (await points_client.get(f"/v1/members/{member}")).json()
    soon = status["balance"]["expiring_soon"]
    assert [x["points"] for x in soon] == [1, 12, 3, 4, 5]  # the default limit: 5 dates
    dates = [datetime.fromisoformat(x["expires_at"]) for x in soon]
    assert dates == sorted(dates) and len(set(dates)) == 5
    assert dates[0] > now


async def test_nothing_expiring_is_an_empty_list(points_client: httpx.AsyncClient) -> None:
    member = f"m-{uuid.uuid4().hex[:12]}"
    assert (await points_client.post("/v1/members", json={"member_id": member})).status_code == 201
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["expiring_soon"] == []
