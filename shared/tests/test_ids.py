import time
import uuid

from loyalty_shared.ids import uuid7, uuid7_hex


def test_uuid7_is_a_version_7_rfc_9562_uuid() -> None:
    for _ in range(1000):
        value = uuid.UUID(uuid7())
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_uuid7_carries_the_current_millisecond_and_sorts_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= int(first.replace("-", "")[:12], 16) <= after
    assert first < second


def test_uuid7_ids_do_not_repeat() -> None:
    ids = {uuid7() for _ in range(100_000)}
    assert len(ids) == 100_000
    hex_ids = {uuid7_hex() for _ in range(10_000)}
    assert len(hex_ids) == 10_000 and all(len(h) == 32 for h in hex_ids)
