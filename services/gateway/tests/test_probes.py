"""/ready answers every probe, but only operators see which service is not ready; /metrics
needs an ops or admin key."""

from collections.abc import Callable

from gateway.testing import TEST_KEYS, bearer, echo_app, gateway_over
from loyalty_shared.testing import RoutingTransport


def _transport() -> RoutingTransport:
    echo = echo_app()
    return RoutingTransport(
        {"points": echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )


async def test_ready_without_credentials_is_a_bare_200_or_503() -> None:
    transport = _transport()
    async with gateway_over(transport, key=None) as client:
        r = await client.get("/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "checks": None}
        transport.down.add("feedback")
        r = await client.get("/ready")
        assert r.status_code == 503
        assert r.json() == {"status": "not-ready", "checks": None}
        for name in ("feedback", "points", "unreachable", "circuit"):
            assert name not in r.text


async def test_ready_names_each_service_for_ops_and_admin_only(
    member_token_for: Callable[[str], str],
) -> None:
    transport = _transport()
    async with gateway_over(transport, key=None) as client:
        transport.down.add("feedback")
        for scope in ("ops", "admin"):
            r = await client.get("/ready", headers=bearer(TEST_KEYS[scope]))
            assert r.status_code == 503
            checks = r.json()["checks"]
            assert checks["feedback"]["ok"] is False
            assert checks["feedback"]["detail"].startswith("unreachable")
            assert checks["points"] == {"ok": True, "detail": "ok"}
        for credential in (TEST_KEYS["storefront"], member_token_for("m-1")):
            r = await client.get("/ready", headers=bearer(credential))
            assert r.status_code == 503
            assert r.json() == {"status": "not-ready", "checks": None}
        r = await client.get("/ready", headers=bearer("not-a-key"))
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"


async def test_metrics_need_an_ops_or_admin_key(member_token_for: Callable[[str], str]) -> None:
    async with gateway_over(_transport(), key=None) as client:
        r = await client.get("/metrics")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "gateway_" not in r.text
        assert (await client.get("/metrics", headers=bearer("not-a-key"))).status_code == 401
        for credential in (TEST_KEYS["storefront"], member_token_for("m-1")):
            r = await client.get("/metrics", headers=bearer(credential))
            assert r.status_code == 403
            assert r.json()["type"].endswith("/forbidden")
        for scope in ("ops", "admin"):
            r = await client.get("/metrics", headers=bearer(TEST_KEYS[scope]))
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert "http_request_duration_seconds" in r.text


async def test_health_stays_open_for_liveness_probes() -> None:
    async with gateway_over(_transport(), key=None) as client:
        r = await client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
