"""The route policy table: the auth matrix over every route, and coverage of every service route."""

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway import policy
from gateway.routing import COMPOSED, MEMBER_SUBRESOURCES, ROUTES, owner_of
from gateway.testing import TEST_KEYS, bearer, echo_app, gateway_over
from loyalty_shared.testing import RoutingTransport

CALLERS = ["none", "storefront", "ops", "admin", "member-self", "member-other"]


def _concrete(template: str, member: str) -> str:
    path = template.replace("{member_id}", member).replace("{ref}", "points.dlq.1")
    return re.sub(r"\{[^}]+\}", lambda m: f"x-{uuid.uuid4().hex[:6]}", path)


# What a member token may do on each route of the table, written out here rather than read
# from policy.py: "self" (only for its own member id), "any" (any member token), "owned"
# (any member token reaches the service, which answers only for the member's own resource,
# e.g. a redemption by its id). Every other route of the table is refused to member tokens.
MEMBER_ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/v1/members/{member_id}/status"): "self",
    ("GET", "/v1/members/{member_id}"): "self",
    ("GET", "/v1/members/{member_id}/ledger"): "self",
    ("GET", "/v1/members/{member_id}/export"): "self",
    ("POST", "/v1/members/{member_id}/redemptions"): "self",
    ("POST", "/v1/members/{member_id}/check-ins"): "self",
    ("GET", "/v1/members/{member_id}/complaints"): "self",
    ("GET", "/v1/members/{member_id}/surveys"): "self",
    ("POST", "/v1/redemptions/{redemption_id}/cancel"): "owned",
    ("GET", "/v1/tiers"): "any",
    ("GET", "/v1/rewards"): "any",
    ("GET", "/v1/rewards/{reward_id}"): "any",
    ("GET", "/v1/profiles/{member_id}/contact-preferences"): "self",
    ("PUT", "/v1/profiles/{member_id}/contact-preferences"): "self",
    ("GET", "/v1/profiles/{member_id}/export"): "self",
    ("POST", "/v1/complaints"): "self",
    ("GET", "/v1/feedback/members/{member_id}/export"): "self",
    ("POST", "/v1/surveys/{survey_id}/responses"): "self",
}


def _member_access(rule: policy.Rule) -> str | None:
    return MEMBER_ACCESS.get((rule.method, rule.template))


def test_the_member_column_of_the_table_is_the_one_written_here() -> None:
    """Every row's member access, as policy.py declares it, against MEMBER_ACCESS."""
    declared = {}
    for rule in policy.POLICY:
        flags = (("self", rule.member_self), ("any", rule.member_any), ("owned", rule.member_owned))
        kinds = [kind for kind, on in flags if on]
        assert len(kinds) <= 1, rule
        if kinds:
            declared[(rule.method, rule.template)] = kinds[0]
    assert declared == MEMBER_ACCESS
    # the internal views stay ops-only: the 360 profile, feedback's view of the member
    for template in ("/v1/profiles/{member_id}", "/v1/feedback/members/{member_id}"):
        assert ("GET", template) not in MEMBER_ACCESS


def _expected(rule: policy.Rule, caller: str) -> int:
    if caller == "none":
        return 401
    if caller in ("storefront", "ops", "admin"):
        return 200 if rule.allows(caller) else 403  # type: ignore[arg-type]
    access = _member_access(rule)
    if access == "any":
        return 200
    if caller == "member-self":
        return 200 if access in ("self", "owned") else 403
    # another member's token: the path or the body names ``me`` (an "owned" route has no
    # member in its path, but a member id the request names must still be the token's own)
    return 403


@pytest.fixture(scope="module")
async def echo_gateway():  # type: ignore[no-untyped-def]
    echo = echo_app()
    transport = RoutingTransport(
        {"points": echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )
    async with gateway_over(transport, key=None) as client:
        yield client


def _rule_id(rule: policy.Rule) -> str:
    return f"{rule.method} {rule.template}"


# The composite status and member tokens are the gateway's own: tested in their own files.
_FORWARDED = [
    r
    for r in policy.POLICY
    if (r.method, r.template) not in COMPOSED and r.template != "/v1/auth/member-tokens"
]


@pytest.mark.parametrize("rule", _FORWARDED, ids=_rule_id)
async def test_auth_matrix(
    echo_gateway: httpx.AsyncClient, member_token_for: Callable[[str], str], rule: policy.Rule
) -> None:
    me = f"m-{uuid.uuid4().hex[:8]}"
    other = f"m-{uuid.uuid4().hex[:8]}"
    path = _concrete(rule.template, me)
    body = {"member_id": me, "note": "x"} if rule.method in ("POST", "PUT") else None
    for caller in CALLERS:
        headers: dict[str, str] = {}
        if caller in TEST_KEYS:
            headers = bearer(TEST_KEYS[caller])
        elif caller == "member-self":
            headers = bearer(member_token_for(me))
        elif caller == "member-other":
            headers = bearer(member_token_for(other))
        response = await echo_gateway.request(rule.method, path, json=body, headers=headers)
        expected = _expected(rule, caller)
        assert response.status_code == expected, (caller, response.text)
        if expected == 200:
            seen = response.json()
            assert seen["method"] == rule.method
            assert seen["path"] == path
            scope = "member" if caller.startswith("member") else caller
            assert seen["headers"]["x-caller-scope"] == scope
            assert "authorization" not in seen["headers"]
            if caller.startswith("member"):
                # the service learns which member calls (an "owned" route decides by it)
                token_member = me if caller == "member-self" else other
                assert seen["headers"]["x-member-id"] == token_member
        else:
            assert response.headers["content-type"] == "application/problem+json"


# (the /v1/ops reports over every service have their matrix in test_ops.py)
_OWN = [r for r in policy.POLICY if r not in _FORWARDED and not r.template.startswith("/v1/ops/")]


@pytest.mark.parametrize("rule", _OWN, ids=_rule_id)
async def test_auth_matrix_of_the_gateways_own_routes(
    gateway_client: httpx.AsyncClient, member_token_for: Callable[[str], str], rule: policy.Rule
) -> None:
    """The same matrix for the routes the gateway answers itself, over the real services."""
    me = f"m-{uuid.uuid4().hex[:8]}"
    other = f"m-{uuid.uuid4().hex[:8]}"
    assert (await gateway_client.post("/v1/members", json={"member_id": me})).status_code == 201
    path = rule.template.replace("{member_id}", me)
    body = {"member_id": me} if rule.method == "POST" else None
    success = 201 if rule.method == "POST" else 200
    for caller in CALLERS:
        headers = {"Authorization": ""}
        if caller in TEST_KEYS:
            headers = bearer(TEST_KEYS[caller])
        elif caller == "member-self":
            headers = bearer(member_token_for(me))
        elif caller == "member-other":
            headers = bearer(member_token_for(other))
        response = await gateway_client.request(rule.method, path, json=body, headers=headers)
        expected = _expected(rule, caller)
        assert response.status_code == (success if expected == 200 else expected), (
            caller,
            response.text,
        )
        if expected != 200:
            assert response.headers["content-type"] == "application/problem+json"
        elif rule.method == "GET":
            assert response.json()["member_id"] == me
        else:
            assert response.json()["token"].count(".") == 2


async def test_member_cannot_name_another_member_in_path_query_or_body(
    echo_gateway: httpx.AsyncClient, member_token_for: Callable[[str], str]
) -> None:
    me, other = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    auth = bearer(member_token_for(me))
    # path says me, body says other
    r = await echo_gateway.post(
        f"/v1/members/{me}/redemptions", json={"member_id": other, "points": 10}, headers=auth
    )
    assert r.status_code == 403
    # query names another member
    r = await echo_gateway.get(f"/v1/members/{me}/ledger?member_id={other}", headers=auth)
    assert r.status_code == 403
    # body-only route: duplicate keys cannot smuggle another member through
    smuggled = f'{{"member_id": "{me}", "member_id": "{other}", "channel": "app"}}'
    r = await echo_gateway.post(
        "/v1/complaints",
        content=smuggled,
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 403
    # body-only route without a member id at all
    r = await echo_gateway.post("/v1/complaints", json={"channel": "app"}, headers=auth)
    assert r.status_code == 403
    # and the own member in the body goes through, marked as that member
    r = await echo_gateway.post("/v1/complaints", json={"member_id": me}, headers=auth)
    assert r.status_code == 200
    assert r.json()["headers"]["x-member-id"] == me


async def test_a_route_keyed_by_another_id_reaches_its_service_with_the_members_identity(
    echo_gateway: httpx.AsyncClient, member_token_for: Callable[[str], str]
) -> None:
    """A redemption is named by its id, not its member's: the gateway lets any member token
    through with X-Member-Id, and points answers only for the member's own redemption."""
    auth = bearer(member_token_for("m-owner"))
    r = await echo_gateway.post("/v1/redemptions/rd-1/cancel", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-member-id"] == "m-owner"
    assert r.json()["headers"]["x-caller-scope"] == "member"
    # a member id the request names is still checked
    for query, body in (("?member_id=m-else", None), ("", {"member_id": "m-else"})):
        r = await echo_gateway.post(f"/v1/redemptions/rd-1/cancel{query}", json=body, headers=auth)
        assert r.status_code == 403, (query, body)
    r = await echo_gateway.post(
        "/v1/redemptions/rd-1/cancel", json={"member_id": "m-owner"}, headers=auth
    )
    assert r.status_code == 200


async def test_route_outside_the_table_is_denied_even_to_admin(
    echo_gateway: httpx.AsyncClient,
) -> None:
    admin = bearer(TEST_KEYS["admin"])
    # not forwarded: the echo upstream would have answered 200
    r = await echo_gateway.post("/v1/members/m-1/secret-door", json={}, headers=admin)
    assert r.status_code == 404
    assert r.json()["type"] == "about:blank" or r.json()["type"].endswith("/not-found")
    r = await echo_gateway.patch("/v1/orders", json={}, headers=admin)
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]


async def test_unknown_route_is_a_404_problem(echo_gateway: httpx.AsyncClient) -> None:
    admin = bearer(TEST_KEYS["admin"])
    r = await echo_gateway.get("/v1/no-such-thing", headers=admin)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await echo_gateway.get("/v1/members//ledger", headers=admin)
    assert r.status_code == 404


async def test_identity_headers_are_set_by_the_gateway_and_never_taken_from_clients(
    echo_gateway: httpx.AsyncClient,
) -> None:
    spoofed = {
        "X-Operator-Id": "mallory",
        "X-Caller-Scope": "admin",
        "X-Member-Id": "m-victim",
        "Cookie": "session=1",
    }
    r = await echo_gateway.get("/v1/profiles/m-1", headers={**bearer(TEST_KEYS["ops"]), **spoofed})
    seen = r.json()["headers"]
    assert seen["x-operator-id"] == "test-ops"
    assert seen["x-caller-scope"] == "ops"
    assert "x-member-id" not in seen
    assert "cookie" not in seen
    r = await echo_gateway.get(
        "/v1/profiles/m-1", headers={**bearer(TEST_KEYS["storefront"]), **spoofed}
    )
    seen = r.json()["headers"]
    assert seen["x-caller-scope"] == "storefront"
    assert "x-operator-id" not in seen


def _service_routes(app: FastAPI) -> list[tuple[str, str]]:
    doc = app.openapi()
    return [
        (method.upper(), path)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    ]


def test_every_service_route_is_in_the_policy_table(
    points_app: FastAPI, segmentation_app: FastAPI, feedback_app: FastAPI, webhooks_app: FastAPI
) -> None:
    uncovered = [
        f"{service}: {method} {path}"
        for service, app in (
            ("points", points_app),
            ("segmentation", segmentation_app),
            ("feedback", feedback_app),
            ("webhooks", webhooks_app),
        )
        for method, path in _service_routes(app)
        if not policy.covers(method, path)
    ]
    assert uncovered == [], f"add to services/gateway/src/gateway/policy.py: {uncovered}"


def test_every_service_route_is_routed_to_its_service(
    points_app: FastAPI, segmentation_app: FastAPI, feedback_app: FastAPI, webhooks_app: FastAPI
) -> None:
    misrouted = [
        f"{service}: {method} {path} -> {owner_of(path)}"
        for service, app in (
            ("points", points_app),
            ("segmentation", segmentation_app),
            ("feedback", feedback_app),
            ("webhooks", webhooks_app),
        )
        for method, path in _service_routes(app)
        if owner_of(path) != service
        and (method, path) not in COMPOSED  # answered by the gateway itself
        and not path.startswith("/v1/ops/dead-letters/")  # by the ref's service
    ]
    assert misrouted == [], f"add to services/gateway/src/gateway/routing.py: {misrouted}"


def test_policy_templates_resolve_to_one_rule_each() -> None:
    for rule in policy.POLICY:
        concrete = re.sub(r"\{[^}]+\}", "abc", rule.template)
        found = policy.match(rule.method, concrete)
        assert found is not None and found.rule == rule, rule


async def test_encoded_path_reaches_the_service_as_the_gateway_read_it(
    echo_gateway: httpx.AsyncClient, member_token_for: Callable[[str], str]
) -> None:
    admin = bearer(TEST_KEYS["admin"])
    r = await echo_gateway.get("/v1/members/a%3Fb%20c/ledger?limit=5", headers=admin)
    assert r.status_code == 200
    assert r.json()["path"] == "/v1/members/a?b c/ledger"
    assert r.json()["query"] == "limit=5"
    # a member cannot shorten its way to another member with an encoded "?"
    r = await echo_gateway.get("/v1/members/a%3Fx", headers=bearer(member_token_for("a")))
    assert r.status_code == 403


async def test_odd_requests_never_get_a_5xx(
    echo_gateway: httpx.AsyncClient, member_token_for: Callable[[str], str]
) -> None:
    member = bearer(member_token_for("m-odd"))
    admin = bearer(TEST_KEYS["admin"])
    json_headers = {"content-type": "application/json"}
    odd: list[tuple[str, str, dict[str, Any], bytes]] = [
        ("POST", "/v1/complaints", member, b"[" * 100_000),
        ("POST", "/v1/complaints", member, b'{"member_id": ["m-odd"]}'),
        ("POST", "/v1/complaints", member, b"\xff\xfe"),
        ("POST", "/v1/complaints", member, b"null"),
        ("POST", "/v1/members/m-odd/redemptions", member, b"not json"),
        ("GET", "/v1/members/" + "x" * 5000, admin, b""),
        ("GET", "/v1/members/%00%ff", admin, b""),
        ("GET", "/v1/members/m-odd", {"Authorization": "Bearer " + "a.b.c" * 1000}, b""),
        (
            "GET",
            "/v1/members/m-odd",
            {"Authorization": "Bearer \u00e9t\u00e9".encode("latin-1")},
            b"",
        ),
        ("POST", "/v1/auth/member-tokens", admin, b'{"member_id": "m", "ttl_seconds": "x"}'),
        ("POST", "/v1/auth/member-tokens", admin, b"[" * 100_000),
        ("GET", "/v1/members/m-odd/status", admin, b""),
        ("DELETE", "/v1/auth/member-tokens", admin, b""),
    ]
    for method, path, headers, body in odd:
        r = await echo_gateway.request(
            method, path, headers={**headers, **json_headers}, content=body
        )
        assert r.status_code < 500, (method, path[:40], r.status_code, r.text[:200])


async def test_nul_characters_are_refused_before_any_service(
    echo_gateway: httpx.AsyncClient,
) -> None:
    admin = {**bearer(TEST_KEYS["admin"]), "content-type": "application/json"}
    refused = [
        ("GET", "/v1/complaints?owner=a%00b", b""),
        ("GET", "/v1/profiles/m%00x", b""),
        ("POST", "/v1/complaints", b'{"member_id": "m-1", "category": "5\\u0000"}'),
    ]
    for method, path, body in refused:
        r = await echo_gateway.request(method, path, headers=admin, content=body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["type"].endswith("/nul-character")
    # an escaped backslash followed by "u0000" is ordinary text
    r = await echo_gateway.post(
        "/v1/complaints", headers=admin, content=b'{"member_id": "m-1", "note": "a\\\\u0000"}'
    )
    assert r.status_code == 200
    assert r.json()["body"] == '{"member_id": "m-1", "note": "a\\\\u0000"}'


def _owner_by_scan(path: str) -> str | None:
    """The routing rule as written in words: the longest prefix of the table that the path
    equals or continues with a "/" (after the two special cases owner_of handles first)."""
    for prefix, service in sorted(ROUTES.items(), key=lambda kv: -len(kv[0])):
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return None


@pytest.mark.parametrize(
    "path",
    [
        *ROUTES,
        *(prefix + tail for prefix in ROUTES for tail in ("/", "/x", "/x/y", "x", "-x")),
        "/v1/ops/ledger/verify",
        "/v1/ops/ledgerx",
        "/v1/ops",
        "/v1/ops/",
        "/v1",
        "/v1/",
        "/",
        "",
        "v1/orders",
        "/v2/orders",
        "//v1/orders",
        "/v1//orders",
        "/v1/members/m-1/ledger",
        "/v1/members/m-1/complaints/x",
        "/v1/members//complaints",
    ],
)
def test_owner_of_is_the_longest_prefix_of_the_table(path: str) -> None:
    expected = _owner_by_scan(path)
    parts = path.split("/")
    if parts[:3] == ["", "v1", "members"] and len(parts) == 5 and parts[3]:
        expected = MEMBER_SUBRESOURCES.get(parts[4], expected)  # a member's complaints
    assert owner_of(path) == expected
