"""Every speed layer switched off (``hotpath_off``, what bench/orders.py measures) records a
checkout as the service with every layer on does: the same points, balance and replay."""

import uuid

from loyalty_shared.hotpath.fast_lane import FastLane
from loyalty_shared.testing import asgi_client, running_app
from points.main import create_app
from points.settings import PointsSettings
from points.testing import enrol, order, sql


async def test_a_checkout_with_every_speed_layer_off_is_recorded_the_same(
    points_settings: PointsSettings, points_db: str
) -> None:
    off = points_settings.model_copy(
        update={
            "hotpath_off": frozenset(
                {
                    "fast_lane",
                    "keyed_batches",
                    "driver_autocommit",
                }
            ),
            "order_facts_members": 0,
        }
    )
    app = create_app(off)
    assert not any(m.cls is FastLane for m in app.user_middleware)
    assert app.state.checkouts.batching is False
    async with running_app(app), asgi_client(app) as client:
        member = await enrol(client)
        first = await client.post("/v1/orders", json=order(member, "10.00"))
        body = order(member, "25.90")
        second = await client.post("/v1/orders", json=body)
        again = await client.post("/v1/orders", json=body)
        keyed = await client.post(
            "/v1/orders",
            json=order(member, "1.00"),
            headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"},
        )
    assert [r.status_code for r in (first, second, again, keyed)] == [201] * 4
    assert second.json()["balance"]["available"] == 35 and again.json() == second.json()
    assert keyed.json()["balance"]["available"] == 36
    rows = await sql(
        points_db,
        "SELECT (SELECT count(*) FROM orders WHERE member_id = :m),"
        " (SELECT available FROM balances WHERE member_id = :m)",
        m=member,
    )
    assert tuple(rows[0]) == (3, 36)
