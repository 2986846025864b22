"""``GET /v1/segments/{id}/members.csv``: a segment's members streamed as CSV (issue #16)."""

from __future__ import annotations

import csv
import io

from segmentation.segments.export import member_rows
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order, refund


def _rows(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body)))


async def test_members_csv_has_a_header_and_every_member_in_id_order(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = sorted(member_id() for _ in range(5))
    for m in members:
        await env.feed(enrolled(m), order(m, "2025-03-01", "30.00"))
    created = await env.client.post(
        "/v1/segments", json={"name": "buyers", "condition": "order_count >= 1"}
    )
    sid = created.json()["segment_id"]

    response = await env.client.get(f"/v1/segments/{sid}/members.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{sid}-members.csv"'
    assert response.text.startswith("member_id,entered_at\r\n")
    rows = _rows(response.text)
    page = (await env.client.get(f"/v1/segments/{sid}/members")).json()["items"]
    assert rows == [["member_id", "entered_at"]] + [
        [item["member_id"], item["entered_at"].replace("Z", "+00:00")] for item in page
    ]
    assert [r[0] for r in rows[1:]] == members

    missing = await env.client.get("/v1/segments/seg_nope/members.csv")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    await env.client.post(f"/v1/segments/{sid}/archive")
    archived = await env.client.get(f"/v1/segments/{sid}/members.csv")
    assert archived.status_code == 200 and _rows(archived.text) == [["member_id", "entered_at"]]


async def test_members_csv_is_one_snapshot_read_page_by_page(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """Members that leave or enter while the file streams do not change it."""
    env = fresh_segmentation
    members = sorted(member_id() for _ in range(5))
    orders = {}
    for m in members:
        orders[m] = order(m, "2025-03-01", "30.00")
        await env.feed(enrolled(m), orders[m])
    created = await env.client.post(
        "/v1/segments", json={"name": "buyers", "condition": "total_spend > 0"}
    )
    sid = created.json()["segment_id"]
    state = env.app.state
    chunks = member_rows(state.engine, state.sessionmaker, sid, page=2)
    streamed = [await anext(chunks), await anext(chunks)]  # the header, the first page
    # meanwhile the last member leaves (a full refund) and a new one enters
    last = members[-1]
    await env.feed(refund(last, orders[last].data["order_id"], "30.00", "2025-03-02"))
    newcomer = member_id()
    await env.feed(enrolled(newcomer), order(newcomer, "2025-03-03", "10.00"))
    now = (await env.client.get(f"/v1/segments/{sid}/members")).json()["items"]
    assert last not in [i["member_id"] for i in now] and newcomer in [i["member_id"] for i in now]
    streamed += [chunk async for chunk in chunks]
    assert len(streamed) == 4  # header + pages of 2, 2 and 1 members
    rows = _rows(b"".join(streamed).decode())
    assert [r[0] for r in rows] == ["member_id", *members]
