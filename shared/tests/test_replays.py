"""The one rule for keyed writes (``loyalty_shared.replays``): the same request replays, another
is a 409; the fingerprint is blind to key order and formatting, and total over what a JSON
body holds (an integer beyond 64 bits, a datetime, a decimal)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from loyalty_shared.problems import Conflict
from loyalty_shared.replays import fingerprint, replay_or_conflict


def test_the_fingerprint_ignores_key_order_and_tells_values_apart() -> None:
    first = fingerprint({"order_id": "o-1", "lines": [{"sku": "a", "qty": 2}], "total": "9.50"})
    same = fingerprint({"total": "9.50", "lines": [{"qty": 2, "sku": "a"}], "order_id": "o-1"})
    other = fingerprint({"order_id": "o-1", "lines": [{"sku": "a", "qty": 3}], "total": "9.50"})
    assert first == same
    assert first != other
    assert fingerprint(["POST", "/v1/x", {"a": 1}]) != fingerprint(["POST", "/v1/y", {"a": 1}])


def test_the_fingerprint_takes_huge_integers_datetimes_and_decimals() -> None:
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert fingerprint({"n": 2**70}) != fingerprint({"n": 2**70 + 1})
    assert fingerprint({"at": at}) == fingerprint({"at": str(at)})
    assert fingerprint({"amount": Decimal("9.50")}) == fingerprint({"amount": "9.50"})
    assert fingerprint({"name": "Zoë"}) != fingerprint({"name": "Zoe"})


def test_the_same_request_replays_and_another_is_the_conflict() -> None:
    digest = fingerprint({"campaign_id": "c-1"})

    def conflict() -> Conflict:
        return Conflict("c-1 exists with another body")

    assert replay_or_conflict(digest, digest, lambda: "first answer", conflict) == "first answer"
    with pytest.raises(Conflict, match="another body"):
        replay_or_conflict(digest, fingerprint({"campaign_id": "c-2"}), lambda: "x", conflict)
    with pytest.raises(Conflict):
        replay_or_conflict(None, digest, lambda: "x", conflict)
