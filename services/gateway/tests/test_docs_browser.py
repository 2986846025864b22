"""/docs renders offline: a headless Chromium (Debian's package) sees every service's operations.

Chromium is installed with apt-get when missing and the suite runs as root (as on CI);
elsewhere the test is skipped with the command to run.
"""

import asyncio
import socket

import pytest
import uvicorn
from fastapi import FastAPI

from gateway.testing import chromium_path


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("needs Debian's chromium package: apt-get install chromium")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_swagger_ui_lists_the_operations_of_all_three_services(
    gateway_app: FastAPI, chromium: str
) -> None:
    port = _free_port()
    # The app's lifespan already runs (session fixture): serve it as it is.
    server = uvicorn.Server(
        uvicorn.Config(gateway_app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        browser = await asyncio.create_subprocess_exec(
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            # no network but loopback: a CDN asset would fail to load
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"http://127.0.0.1:{port}/docs",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(browser.communicate(), timeout=120)
    finally:
        server.should_exit = True
        await serving
    dom = out.decode("utf-8", "replace")
    assert "swagger-ui" in dom
    for path in ("/v1/orders", "/v1/profiles/", "/v1/complaints", "/v1/auth/member-tokens"):
        assert f'data-path="{path}' in dom, f"{path} not rendered"
    assert "Authorize" in dom
