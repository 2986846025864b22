"""Keyset cursors (``loyalty_shared.cursors``): a page's last position comes back as it went
out, and a cursor the API did not make is a 422 naming ``query.cursor``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loyalty_shared import cursors


def test_a_cursor_gives_back_the_position_it_was_made_from() -> None:
    at = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    assert cursors.decode(cursors.encode(at, "c-1|x")) == (at, "c-1|x")


@pytest.mark.parametrize("cursor", ["@@@", "bm9wZQ==", ""])
def test_a_cursor_the_api_did_not_make_is_a_422_on_the_field(cursor: str) -> None:
    with pytest.raises(cursors.BadCursor) as caught:
        cursors.decode(cursor)
    body = caught.value.to_dict()
    assert body["status"] == 422
    assert body["type"].endswith("invalid-cursor")
    assert body["errors"] == [{"field": "query.cursor", "message": "malformed cursor"}]
