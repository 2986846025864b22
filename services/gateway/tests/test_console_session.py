"""The console's session cookie and CSRF checks, through the in-process gateway (real
services behind it): who may sign in, what a forged or missing token or a changed cookie
gets, and what the cookie carries."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from gateway.console.session import COOKIE, Session, SessionCodec
from gateway.testing import TEST_KEYS
from loyalty_shared.testing import asgi_client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/login")
    assert form.status_code == 200
    return await client.post(
        "/console/login", data={"csrf_token": _csrf(form.text), "api_key": key}
    )


@pytest.fixture
async def console(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(gateway_app) as client:
        yield client


async def test_an_ops_key_signs_in_into_a_sealed_http_only_strict_cookie(
    console: httpx.AsyncClient,
) -> None:
    signed = await _sign_in(console, TEST_KEYS["ops"])
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/console"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert TEST_KEYS["ops"] not in cookie  # sealed, not merely signed
    assert "test-ops" not in cookie
    page = await console.get("/console/complaints")
    assert page.status_code == 200
    assert "test-ops" in page.text and TEST_KEYS["ops"] not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("credential", "why"),
    [
        ("storefront", "A storefront key cannot sign in"),
        ("member", "member tokens cannot sign in"),
        ("wrong", "That API key is not valid"),
    ],
)
async def test_keys_that_are_not_staff_are_refused(
    console: httpx.AsyncClient,
    member_token_for: Callable[[str], str],
    credential: str,
    why: str,
) -> None:
    key = {
        "storefront": TEST_KEYS["storefront"],
        "member": member_token_for("m-console-1"),
        "wrong": "not-a-key",
    }[credential]
    refused = await _sign_in(console, key)
    assert refused.status_code == 401
    assert why in refused.text
    assert (await console.get("/console")).status_code == 303  # still signed out


async def test_a_sign_in_without_or_with_a_forged_csrf_token_is_refused(
    console: httpx.AsyncClient,
) -> None:
    await console.get("/console/login")  # a session cookie with its token
    for data in ({"api_key": TEST_KEYS["ops"]}, {"api_key": TEST_KEYS["ops"], "csrf_token": "x"}):
        refused = await console.post("/console/login", data=data)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert (await console.get("/console")).status_code == 303


async def test_a_form_needs_the_sessions_own_token_not_another_sessions(
    gateway_app: FastAPI, console: httpx.AsyncClient
) -> None:
    assert (await _sign_in(console, TEST_KEYS["ops"])).status_code == 303
    async with asgi_client(gateway_app) as other:
        theirs = _csrf((await other.get("/console/login")).text)
    action = {"action": "acknowledge", "csrf_token": theirs}
    refused = await console.post("/console/complaints/c-none/actions", data=action)
    assert refused.status_code == 403
    still = await console.post("/console/logout", data={"csrf_token": theirs})
    assert still.status_code == 403
    assert (await console.get("/console/complaints")).status_code == 200  # still signed in


async def test_a_changed_cookie_or_one_sealed_elsewhere_signs_out(
    console: httpx.AsyncClient,
) -> None:
    assert (await _sign_in(console, TEST_KEYS["admin"])).status_code == 303
    sealed = console.cookies[COOKIE]
    tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    console.cookies.set(COOKIE, tampered, path="/console")
    assert (await console.get("/console/complaints")).status_code == 303
    forged = SessionCodec("another-secret-of-at-least-32-characters!", 3600, False).seal(
        Session(csrf="c", key=TEST_KEYS["admin"], name="test-admin", scope="admin")
    )
    console.cookies.set(COOKIE, forged, path="/console")
    gone = await console.get("/console/complaints")
    assert gone.status_code == 303 and gone.headers["location"] == "/console/login"


async def test_sign_out_needs_the_token_and_ends_the_session(console: httpx.AsyncClient) -> None:
    assert (await _sign_in(console, TEST_KEYS["ops"])).status_code == 303
    token = _csrf((await console.get("/console/complaints")).text)
    out = await console.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert (await console.get("/console/complaints")).status_code == 303
