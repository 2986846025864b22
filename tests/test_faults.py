"""The fault suite, short (`make faults` runs it at length): two replicas of every API and
worker, paced orders through the gateway, one fault at a time; after each, no accepted order
lost, nothing applied twice, no drift, no dead letter (loyalty_shared.devstack.faults)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from loyalty_shared.devstack.broker import free_port
from loyalty_shared.devstack.faults import FAULTS, Durations, run_suite
from loyalty_shared.devstack.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

SHORT = Durations(
    load_seconds=5.0,
    rate_per_second=6.0,
    broker_down_seconds=3.0,
    hang_seconds=12.0,  # past the gateway's health checks (5 s), so the replica is taken out
    restart_after_seconds=1.0,
)


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        data_dir=Path(tmp_path_factory.mktemp("faults")),
        gateway_port=free_port(),
        ports={name: free_port() for name in ("points", "segmentation", "feedback")},
        kafka_port=free_port(),
        fast_postgres=True,
        replicas=2,
        extra_env={
            f"{p}_LOG_LEVEL": "WARNING" for p in ("POINTS", "SEGMENTATION", "FEEDBACK", "GATEWAY")
        },
    )
    stack = Stack(config)
    try:
        stack.start(timeout=300)
        yield stack
    finally:
        stack.stop()


async def test_no_fault_loses_an_order_or_applies_one_twice(replicated: Stack) -> None:
    rows = await run_suite(replicated, SHORT, members=12)
    assert [r.fault for r in rows] == list(FAULTS)
    for row in rows:
        assert row.accepted > 0, row
        assert (row.lost, row.duplicate_effects, row.problems) == (0, 0, []), row
