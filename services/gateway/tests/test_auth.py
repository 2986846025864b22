"""API keys (hashed, scoped), dev defaults only in dev, member tokens (JWT)."""

import json
import subprocess
import sys
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.__main__ import main as gateway_main
from gateway.auth import AuthenticationFailed, Authenticator, ConfigurationError, hash_key
from gateway.main import create_app
from gateway.settings import ApiKeyConfig, GatewaySettings
from gateway.testing import (
    TEST_KEYS,
    TEST_MEMBER_TOKEN_SECRET,
    bearer,
    echo_app,
    gateway_over,
)
from loyalty_shared.devstack.stack import DEV_KEYS, DEV_MEMBER_TOKEN_SECRET
from loyalty_shared.testing import RoutingTransport, asgi_client, running_app


def _echo() -> RoutingTransport:
    echo = echo_app()
    return RoutingTransport(
        {"points": echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )


async def test_no_or_bad_credentials_are_401_problems() -> None:
    async with gateway_over(_echo(), key=None) as client:
        for headers in ({}, {"Authorization": "Basic abc"}, bearer("not-a-key"), bearer("a.b.c")):
            r = await client.get("/v1/profiles/m-1", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"].startswith("Bearer")


async def test_documented_dev_keys_work_in_dev_and_sign_member_tokens() -> None:
    settings = GatewaySettings(
        environment="dev",
        points_url="http://points",
        segmentation_url="http://segmentation",
        feedback_url="http://feedback",
    )
    app = create_app(settings, transport=_echo())
    async with running_app(app), asgi_client(app) as client:
        for scope, key in DEV_KEYS.items():
            r = await client.get("/v1/tiers", headers=bearer(key))
            assert r.status_code == 200
            assert r.json()["headers"]["x-caller-scope"] == scope
        r = await client.post(
            "/v1/auth/member-tokens",
            json={"member_id": "m-dev"},
            headers=bearer(DEV_KEYS["storefront"]),
        )
        claims = jwt.decode(
            r.json()["token"], DEV_MEMBER_TOKEN_SECRET, algorithms=["HS256"], audience="loyalty-api"
        )
        assert claims["sub"] == "m-dev"


async def test_configured_keys_replace_the_dev_keys() -> None:
    async with gateway_over(_echo(), key=None, environment="dev") as client:
        r = await client.get("/v1/tiers", headers=bearer(DEV_KEYS["admin"]))
        assert r.status_code == 401
        r = await client.get("/v1/tiers", headers=bearer(TEST_KEYS["admin"]))
        assert r.status_code == 200


def test_production_without_keys_or_secret_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_API_KEYS", "GATEWAY_MEMBER_TOKEN_SECRET", "GATEWAY_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="GATEWAY_API_KEYS"):
        create_app(GatewaySettings())
    keys = [ApiKeyConfig(name="ops-1", scope="ops", sha256=hash_key("k"))]
    with pytest.raises(ConfigurationError, match="GATEWAY_MEMBER_TOKEN_SECRET"):
        create_app(GatewaySettings(api_keys=keys))
    with pytest.raises(ConfigurationError, match="at least 32"):
        create_app(GatewaySettings(api_keys=keys, member_token_secret="short"))
    with pytest.raises(ConfigurationError, match="RS256"):
        create_app(GatewaySettings(api_keys=keys, member_token_algorithm="RS256"))
    with pytest.raises(ConfigurationError, match="GATEWAY_UPSTREAM_SECRET"):
        create_app(GatewaySettings(api_keys=keys, member_token_secret="x" * 32))
    create_app(
        GatewaySettings(api_keys=keys, member_token_secret="x" * 32, upstream_secret="u" * 32)
    )


def test_keys_are_read_hashed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"name": "shop-eu", "scope": "storefront", "sha256": hash_key("s3cret")}
    monkeypatch.setenv("GATEWAY_API_KEYS", json.dumps([entry]))
    settings = GatewaySettings()
    assert settings.api_keys == [ApiKeyConfig(**entry)]  # type: ignore[arg-type]


async def test_mint_key_cli_prints_a_key_and_its_config_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway_main(["mint-key", "--scope", "ops", "--name", "alice"])
    out = capsys.readouterr().out
    key = out.split("key:")[1].split()[0]
    entry = json.loads(out.split("config:")[1].splitlines()[0])
    assert entry == {"name": "alice", "scope": "ops", "sha256": hash_key(key)}
    assert key not in out.split("config:")[1]
    async with gateway_over(_echo(), key=None, api_keys=[entry]) as client:
        r = await client.get("/v1/profiles", headers=bearer(key))
        assert r.status_code == 200
        assert r.json()["headers"]["x-operator-id"] == "alice"


def test_mint_key_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "mint-key", "--scope", "storefront", "--name", "shop"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '"scope": "storefront"' in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "mint-key", "--scope", "root", "--name", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0


# -- member tokens ----------------------------------------------------------------------


async def test_storefront_and_admin_issue_member_tokens_ops_cannot() -> None:
    async with gateway_over(_echo(), key=None) as client:
        for scope, expected in (("storefront", 201), ("admin", 201), ("ops", 403)):
            r = await client.post(
                "/v1/auth/member-tokens",
                json={"member_id": "m-42", "ttl_seconds": 120},
                headers=bearer(TEST_KEYS[scope]),
            )
            assert r.status_code == expected, scope
        r = await client.post(
            "/v1/auth/member-tokens",
            json={"member_id": "m-42", "ttl_seconds": 120},
            headers=bearer(TEST_KEYS["storefront"]),
        )
        token = r.json()["token"]
        claims = jwt.decode(
            token, TEST_MEMBER_TOKEN_SECRET, algorithms=["HS256"], audience="loyalty-api"
        )
        assert claims["iss"] == "loyalty-gateway"
        assert claims["exp"] - claims["iat"] == 120
        assert r.json()["expires_at"].endswith("Z") or "+00:00" in r.json()["expires_at"]
        r = await client.get("/v1/members/m-42", headers=bearer(token))
        assert r.status_code == 200
        assert r.json()["headers"]["x-member-id"] == "m-42"
        # a member token cannot mint tokens
        r = await client.post(
            "/v1/auth/member-tokens", json={"member_id": "m-42"}, headers=bearer(token)
        )
        assert r.status_code == 403


async def test_member_token_request_is_validated() -> None:
    async with gateway_over(_echo(), key="storefront") as client:
        r = await client.post("/v1/auth/member-tokens", json={"member_id": ""})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "body.member_id"
        r = await client.post(
            "/v1/auth/member-tokens", json={"member_id": "m-1", "ttl_seconds": 10**9}
        )
        assert r.status_code == 422
        r = await client.post(
            "/v1/auth/member-tokens",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400


def _forge(**claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "loyalty-gateway",
        "aud": "loyalty-api",
        "sub": "m-1",
        "scope": "member",
        "iat": now,
        "exp": now + 300,
    }
    base.update(claims)
    secret = str(base.pop("_secret", TEST_MEMBER_TOKEN_SECRET))
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "someone-else"},
        {"iss": "evil"},
        {"exp": None},
        {"scope": "admin"},
        {"_secret": "another-secret-another-secret-another"},
    ],
    ids=["expired", "audience", "issuer", "no-exp", "not-member", "signature"],
)
async def test_bad_member_tokens_are_401(claims: dict[str, object]) -> None:
    async with gateway_over(_echo(), key=None) as client:
        r = await client.get("/v1/members/m-1", headers=bearer(_forge(**claims)))
        assert r.status_code == 401
        assert r.json()["type"].endswith("/unauthorized")


async def test_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode(
        {"iss": "loyalty-gateway", "aud": "loyalty-api", "sub": "m-1", "exp": 2**31},
        key=None,
        algorithm="none",
    )
    async with gateway_over(_echo(), key=None) as client:
        r = await client.get("/v1/members/m-1", headers=bearer(unsigned))
        assert r.status_code == 401


async def test_rs256_member_tokens() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    async with gateway_over(
        _echo(),
        key="storefront",
        member_token_algorithm="RS256",
        member_token_private_key=private_pem,
        member_token_public_key=public_pem,
    ) as client:
        r = await client.post("/v1/auth/member-tokens", json={"member_id": "m-rs"})
        token = r.json()["token"]
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        jwt.decode(token, public_pem, algorithms=["RS256"], audience="loyalty-api")
        r = await client.get("/v1/members/m-rs", headers=bearer(token))
        assert r.status_code == 200
        # an HS256 token signed with the public key (algorithm confusion) is refused
        confused = _forge(sub="m-rs")
        r = await client.get("/v1/members/m-rs", headers=bearer(confused))
        assert r.status_code == 401


async def test_member_other_gets_the_same_403_whether_or_not_the_member_exists(
    gateway_client: httpx.AsyncClient, member_token_for
) -> None:  # type: ignore[no-untyped-def]
    me, other = f"m-{uuid.uuid4().hex[:10]}", f"m-{uuid.uuid4().hex[:10]}"
    for member in (me, other):
        assert (
            await gateway_client.post("/v1/members", json={"member_id": member})
        ).status_code == 201
    ghost = f"m-{uuid.uuid4().hex[:10]}"
    auth = bearer(member_token_for(me))
    own = await gateway_client.get(f"/v1/members/{me}", headers=auth)
    assert own.status_code == 200
    assert own.json()["member_id"] == me
    answers = []
    for target in (other, ghost):
        r = await gateway_client.get(f"/v1/members/{target}", headers=auth)
        assert r.status_code == 403
        answers.append((r.status_code, r.json(), r.headers["content-type"]))
    assert answers[0] == answers[1]


def test_a_key_is_hashed_once_and_only_valid_keys_are_remembered() -> None:
    """The key store remembers a key that matched (its holder's next calls skip the hash);
    wrong keys are never kept, so a stream of them cannot grow the memo."""
    settings = GatewaySettings(
        environment="test",
        api_keys=[ApiKeyConfig(name="shop", scope="storefront", sha256=hash_key("k-shop"))],
        member_token_secret=TEST_MEMBER_TOKEN_SECRET,
    )
    authenticator = Authenticator(settings)
    for n in range(100):
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate(f"Bearer wrong-{n}")
    first = authenticator.authenticate("Bearer k-shop")
    again = authenticator.authenticate("Bearer  k-shop ")
    assert (first.scope, first.name, first.member_id) == ("storefront", "shop", None)
    assert again == first
    assert authenticator.keys._matched == {"k-shop": settings.api_keys[0]}
