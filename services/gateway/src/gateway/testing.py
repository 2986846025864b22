"""pytest fixtures for the gateway, wired to the in-process services."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from gateway.main import create_app
from gateway.settings import GatewaySettings
from loyalty_shared.testing import RoutingTransport, asgi_client, running_app


@pytest.fixture(scope="session")
def upstreams(points_app: FastAPI, segmentation_app: FastAPI, feedback_app: FastAPI) -> RoutingTransport:
    return RoutingTransport(
        {"points": points_app, "segmentation": segmentation_app, "feedback": feedback_app}
    )


@pytest.fixture(scope="session")
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        environment="test",
        points_url="http://points",
        segmentation_url="http://segmentation",
        feedback_url="http://feedback",
        upstream_timeout_seconds=5.0,
    )


@pytest.fixture(scope="session")
async def gateway_app(
    gateway_settings: GatewaySettings, upstreams: RoutingTransport
) -> AsyncIterator[FastAPI]:
    async with running_app(create_app(gateway_settings, transport=upstreams)) as app:
        yield app


@pytest.fixture
async def gateway_client(gateway_app: FastAPI, upstreams: RoutingTransport) -> AsyncIterator[httpx.AsyncClient]:
    upstreams.down.clear()
    async with asgi_client(gateway_app) as client:
        yield client
    upstreams.down.clear()
