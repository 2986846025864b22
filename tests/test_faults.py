"""The fault suite, short (`make faults` runs it at length): two replicas of every API and
worker, paced orders through the gateway, one fault at a time; after each, no accepted order
lost, nothing applied twice, no drift, no dead letter (loyalty_shared.devstack.faults)."""

import pytest

from loyalty_shared.devstack.faults import FAULTS, Durations, run_suite
from loyalty_shared.devstack.stack import Stack

pytestmark = pytest.mark.e2e

SHORT = Durations(
    load_seconds=5.0,
    rate_per_second=6.0,
    broker_down_seconds=3.0,
    hang_seconds=12.0,  # past the gateway's health checks (5 s), so the replica is taken out
    restart_after_seconds=1.0,
)


# seven faults one after the other, each waited out until every service's books agree:
# about four minutes on a quiet machine, over five when the 2 cores are slower (a
# fresh-check run timed out at the suite's default 300 s in the Postgres restart's recovery)
@pytest.mark.timeout(600)
async def test_no_fault_loses_an_order_or_applies_one_twice(replicated_stack: Stack) -> None:
    rows = await run_suite(replicated_stack, SHORT, members=12)
    assert [r.fault for r in rows] == list(FAULTS)
    for row in rows:
        assert row.accepted > 0, row
        assert (row.lost, row.duplicate_effects, row.problems) == (0, 0, []), row
