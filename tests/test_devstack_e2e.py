"""The `make run` stack itself (REPLICAS=2): real processes (four services, relays,
consumers), real Postgres and the real broker, on free ports; an order through the gateway
reaches the profile."""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from loyalty_shared.devstack.stack import DEV_KEYS, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(replicated_stack: Stack) -> Stack:
    return replicated_stack


def test_order_through_real_gateway_reaches_profile(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {DEV_KEYS['admin']}"}
    member = f"m-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=stack.gateway_url(), headers=headers, timeout=10) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert client.post("/v1/members", json={"member_id": member}).status_code == 201
        order = {
            "order_id": f"o-{uuid.uuid4().hex[:10]}",
            "member_id": member,
            "amount": "88.80",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        response = client.post("/v1/orders", json=order)
        assert response.status_code == 201, response.text
        assert response.json()["points_earned"] == 88
        deadline = time.monotonic() + 30
        profile = None
        while time.monotonic() < deadline:
            got = client.get(f"/v1/profiles/{member}")
            if got.status_code == 200 and got.json()["order_count"] == 1:
                profile = got.json()
                break
            time.sleep(0.2)
        assert profile is not None, "the order never reached the segmentation profile"
        assert profile["total_spend"] == "88.80"
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_make_run_refuses_a_taken_port(stack: Stack, tmp_path: Path) -> None:
    taken = stack.config.gateway_port
    result = subprocess.run(
        [sys.executable, "-m", "loyalty_shared.devstack.cli", "run", "--data-dir", str(tmp_path)],
        env={**os.environ, "GATEWAY_PORT": str(taken)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"port {taken} (gateway) is already in use" in result.stderr
    assert not (tmp_path / "postgres").exists()  # nothing was started
