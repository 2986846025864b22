"""History import: POST /v1/orders/batch and `python -m points import-orders FILE.csv`."""

import csv
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from points.settings import PointsSettings
from points.testing import enrol, mid, oid, order, outbox_events


async def test_batch_imports_each_row_alone_and_never_twice(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    known = await enrol(points_client)
    newcomer = mid()
    long_ago = datetime.now(UTC) - timedelta(days=500)
    rows = [
        order(known, "100", datetime.now(UTC) - timedelta(days=2)),
        order(newcomer, "50.90", long_ago),
        {
            "order_id": oid(),
            "member_id": known,
            "amount": "-3",
            "occurred_at": "2026-01-01T00:00:00Z",
        },
        order(mid(), "10"),  # unknown member, enrol_missing is off
    ]
    response = await points_client.post("/v1/orders/batch", json={"orders": rows})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["created"] == 1 and out["duplicates"] == 0
    assert [f["index"] for f in out["failed"]] == [1, 2, 3]
    assert out["failed"][1]["problem"]["errors"][0]["field"] == "body.orders.2.amount"
    assert out["failed"][0]["problem"]["status"] == 422

    again = await points_client.post(
        "/v1/orders/batch", json={"orders": rows[:2], "enrol_missing": True}
    )
    assert again.json() == {
        "created": 1,
        "duplicates": 1,
        "failed": [],
        "refunded": 0,
        "refunds_failed": [],
    }
    status = (await points_client.get(f"/v1/members/{known}")).json()
    assert status["balance"]["available"] == 100
    imported = (await points_client.get(f"/v1/members/{newcomer}")).json()
    # earned 500 days ago with 12-month expiry: a lot that is due to expire (the expiry job
    # takes it), and no growth value inside today's window
    assert imported["growth_value"] == 0
    types = [t for t, _ in await outbox_events(points_db, newcomer)]
    assert types == [
        "loyalty.member.enrolled.v1",
        "loyalty.order.recorded.v1",
        "loyalty.points.earned.v1",
    ]
    earned = [p for t, p in await outbox_events(points_db, newcomer) if t.endswith("earned.v1")]
    assert earned[0]["data"]["expires_at"].startswith(str(long_ago.year + 1))


async def test_batch_failures_name_each_field_with_the_row_index(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    known = await enrol(points_client)
    recorded = order(known, "20")
    assert (await points_client.post("/v1/orders", json=recorded)).status_code == 201
    stranger = mid()
    rows = [
        order(known, "10"),
        order(known, "abc"),  # 1: bad amount
        {"order_id": oid(), "member_id": known, "amount": "5"},  # 2: no occurred_at
        order(stranger, "10"),  # 3: unknown member
        {**recorded, "amount": "21"},  # 4: known order id, another body
        order(known, "10", bogus="x"),  # 5: unknown field
    ]
    response = await points_client.post("/v1/orders/batch", json={"orders": rows})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["created"] == 1
    fields = {
        f["index"]: ([e["field"] for e in f["problem"]["errors"]], f["problem"]["status"])
        for f in out["failed"]
    }
    assert fields == {
        1: (["body.orders.1.amount"], 422),
        2: (["body.orders.2.occurred_at"], 422),
        3: (["body.orders.3.member_id"], 422),
        4: (["body.orders.4.order_id"], 409),
        5: (["body.orders.5.bogus"], 422),
    }
    assert "body.orders.1.amount" in out["failed"][0]["problem"]["detail"]
    status = (await points_client.get(f"/v1/members/{known}")).json()
    assert status["balance"]["available"] == 30  # 20 live + the one good row
    assert (await points_client.get(f"/v1/members/{stranger}")).status_code == 404


async def test_batch_over_1000_orders_is_422(points_client: httpx.AsyncClient) -> None:
    member = await enrol(points_client)
    rows = [order(member, "1") for _ in range(1001)]
    response = await points_client.post("/v1/orders/batch", json={"orders": rows})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.orders"
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 0


async def test_cli_imports_a_csv_file(
    points_client: httpx.AsyncClient, points_settings: PointsSettings, tmp_path: Path
) -> None:
    member = mid()
    path = tmp_path / "orders.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "member_id", "amount", "occurred_at", "channel"])
        for amount in ("12.50", "7", "oops"):
            at = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            writer.writerow([f"csv-{uuid.uuid4().hex[:10]}", member, amount, at, "pos"])
    env = {
        **os.environ,
        "POINTS_DATABASE_URL": points_settings.database_url,
        "POINTS_ENVIRONMENT": "test",  # dev and test have a default erasure key
    }
    command = [sys.executable, "-m", "points", "import-orders", str(path), "--enrol-missing"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stderr  # one bad row
    assert "created 2, duplicates 0, already in 0, failed 1" in first.stdout
    assert "row 4: amount:" in first.stdout  # the CSV column, not the request path
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "created 0, duplicates 0, already in 2, failed 1" in second.stdout
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 19


async def test_integers_beyond_64_bits_in_a_batch_fail_their_row_not_the_request(
    points_client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": f"big-{uuid.uuid4().hex}"}
    body = {"orders": [{"order_id": f"o-{uuid.uuid4().hex[:8]}", "x": 18446744073709551616}]}
    first = await points_client.post("/v1/orders/batch", json=body, headers=key)
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 0 and [f["index"] for f in first.json()["failed"]] == [0]
    again = await points_client.post("/v1/orders/batch", json=body, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_cli_carries_items_categories_and_refunds_and_resumes(
    points_client: httpx.AsyncClient,
    points_settings: PointsSettings,
    points_db: str,
    tmp_path: Path,
) -> None:
    member, first, second = mid(), oid(), oid()
    day = datetime.now(UTC) - timedelta(days=200)
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["order_id", "member_id", "amount", "occurred_at", "items", "categories", "refund_id"]
        )
        # the refund comes first in the file: it waits for its order (tried again at the end)
        refund_at = (day + timedelta(days=3)).isoformat()
        writer.writerow([second, "", "20.00", refund_at, "", "", f"r-{second}"])
        writer.writerow(
            [first, member, "100.00", day.isoformat(), "s-1:shoes:40.00:2;s-2:hats:20.00:1", "", ""]
        )
        at = (day + timedelta(days=1)).isoformat()
        writer.writerow([second, member, "40.00", at, "", "books;toys", ""])
        writer.writerow([oid(), member, "5.00", at, "s-3:shoes:x:1", "", ""])  # a bad price
    env = {
        **os.environ,
        "POINTS_DATABASE_URL": points_settings.database_url,
        "POINTS_ENVIRONMENT": "test",
    }
    command = [sys.executable, "-m", "points", "import-orders", str(path), "--enrol-missing"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "created 2, duplicates 0, already in 0, failed 1" in done.stdout
    assert "refunds recorded 1" in done.stdout
    assert "row 5: items.0.unit_price:" in done.stdout
    lines = {
        p["data"]["order_id"]: p["data"]["items"]
        for t, p in await outbox_events(points_db, member)
        if t == "loyalty.order.recorded.v1"
    }
    assert [i["category"] for i in lines[first]] == ["shoes", "hats"]
    assert [(i["category"], i["unit_price"]) for i in lines[second]] == [
        ("books", "20.00"),
        ("toys", "20.00"),
    ]
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 100 + 40 - 20  # half of the second order refunded
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "created 0, duplicates 0, already in 2, failed 1" in again.stdout
    assert "refunds recorded 0, already in 1" in again.stdout


async def test_batch_refund_rows_fail_alone_and_count_once(
    points_client: httpx.AsyncClient,
) -> None:
    member = mid()
    day = datetime.now(UTC) - timedelta(days=90)
    placed = order(member, "80.00", day)
    later = (day + timedelta(days=2)).isoformat()
    refunds = [
        {
            "refund_id": f"r-{oid()}",
            "order_id": placed["order_id"],
            "amount": "40.00",
            "occurred_at": later,
        },
        {
            "refund_id": f"r-{oid()}",
            "order_id": placed["order_id"],
            "amount": "99.00",
            "occurred_at": later,
        },
        {"refund_id": f"r-{oid()}", "order_id": "nope", "amount": "1.00", "occurred_at": later},
        {"refund_id": f"r-{oid()}", "order_id": placed["order_id"], "amount": "1.00"},
    ]
    body = {"orders": [placed], "enrol_missing": True, "refunds": refunds}
    answer = await points_client.post("/v1/orders/batch", json=body)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert (out["created"], out["refunded"]) == (1, 1)
    fields = {f["index"]: f["problem"]["errors"][0]["field"] for f in out["refunds_failed"]}
    assert fields == {
        1: "body.refunds.1.amount",
        2: "body.refunds.2.order_id",
        3: "body.refunds.3.occurred_at",
    }
    again = (await points_client.post("/v1/orders/batch", json=body)).json()
    assert (again["created"], again["duplicates"], again["refunded"]) == (0, 1, 1)
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 40


async def test_a_history_member_is_enrolled_as_of_its_first_order(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    """Dated now, the enrolment came after the tier changes of the member's own history,
    and a profile fed from the events (newest wins) kept the entry tier."""
    member = mid()
    first = datetime.now(UTC) - timedelta(days=40)
    rows = [
        order(member, "20000", first + timedelta(days=10)),  # far past every threshold
        order(member, "10", first),
    ]
    out = await points_client.post("/v1/orders/batch", json={"orders": rows, "enrol_missing": True})
    assert out.status_code == 200 and out.json()["created"] == 2, out.text
    events = await outbox_events(points_db, member)
    enrolled = [p["data"] for t, p in events if t.endswith("member.enrolled.v1")]
    assert [datetime.fromisoformat(e["enrolled_at"]) for e in enrolled] == [first]
    changed = [p["data"] for t, p in events if t.endswith("tier.changed.v1")]
    assert changed, "the history's big order moves the member up"
    assert all(datetime.fromisoformat(c["occurred_at"]) > first for c in changed)
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["tier"] == changed[-1]["to_tier"]
