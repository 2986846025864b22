"""Who is calling: API keys (hashed, with a scope) and member tokens (JWT, scope ``member``)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from gateway.settings import ApiKeyConfig, CallerScope, GatewaySettings, Scope


class ConfigurationError(RuntimeError):
    """The gateway refuses to start: keys or the member token secret are missing."""


class AuthenticationFailed(Exception):
    """No usable credentials: answered with 401 and ``WWW-Authenticate: Bearer``."""

    def __init__(self, detail: str, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


@dataclass(frozen=True, slots=True)
class Identity:
    scope: CallerScope
    name: str  # the key's name, or "member:<id>"
    member_id: str | None = None

    @property
    def rate_key(self) -> str:
        return self.name


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def mint_key(scope: Scope, name: str) -> tuple[str, ApiKeyConfig]:
    """A new random key and the configuration entry that accepts it."""
    key = f"lk_{scope}_{secrets.token_urlsafe(32)}"
    return key, ApiKeyConfig(name=name, scope=scope, sha256=hash_key(key))


def _dev_defaults() -> tuple[dict[str, str], str]:
    # Imported lazily: the dev stack module is only needed (and installed) for development.
    from loyalty_shared.devstack.stack import DEV_KEYS, DEV_MEMBER_TOKEN_SECRET

    return DEV_KEYS, DEV_MEMBER_TOKEN_SECRET


def resolve_api_keys(settings: GatewaySettings) -> list[ApiKeyConfig]:
    if settings.api_keys:
        return list(settings.api_keys)
    if settings.is_dev:
        dev_keys, _ = _dev_defaults()
        return [
            ApiKeyConfig(name=f"dev-{scope}", scope=scope, sha256=hash_key(key))
            for scope, key in dev_keys.items()
        ]
    raise ConfigurationError(
        "GATEWAY_API_KEYS is empty: outside dev no default key exists. "
        "Mint one with `python -m gateway mint-key --scope admin --name <who>`."
    )


class KeyStore:
    """The configured keys by their SHA-256. A key that matched once is remembered by its
    text, so that its holder's later calls are not hashed again; only matches are kept
    (at most one entry per configured key: a string that hashes to a key's SHA-256 is that
    key), so no stream of wrong keys can grow the memo."""

    def __init__(self, keys: list[ApiKeyConfig]) -> None:
        self._by_hash: dict[str, ApiKeyConfig] = {}
        for key in keys:
            self._by_hash[key.sha256] = key
        self._matched: dict[str, ApiKeyConfig] = {}

    def lookup(self, presented: str) -> ApiKeyConfig | None:
        key = self._matched.get(presented)
        if key is None:
            key = self._by_hash.get(hash_key(presented))
            if key is not None:
                self._matched[presented] = key
        return key


class MemberTokens:
    """Issues and verifies member tokens: ``sub`` = member id, ``scope`` = member."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.algorithm = settings.member_token_algorithm
        self.issuer = settings.member_token_issuer
        self.audience = settings.member_token_audience
        self.default_ttl = settings.member_token_default_ttl_seconds
        self.max_ttl = settings.member_token_max_ttl_seconds
        if self.algorithm == "HS256":
            secret = settings.member_token_secret
            if not secret:
                if not settings.is_dev:
                    raise ConfigurationError(
                        "GATEWAY_MEMBER_TOKEN_SECRET is not set: outside dev no default secret "
                        "exists (or set GATEWAY_MEMBER_TOKEN_ALGORITHM=RS256 with a key pair)."
                    )
                _, secret = _dev_defaults()
            if not settings.is_dev and len(secret) < 32:
                raise ConfigurationError("GATEWAY_MEMBER_TOKEN_SECRET must be at least 32 chars")
            self._signing_key: str = secret
            self._verify_key: str = secret
        else:
            if not (settings.member_token_private_key and settings.member_token_public_key):
                raise ConfigurationError(
                    "RS256 member tokens need GATEWAY_MEMBER_TOKEN_PRIVATE_KEY and "
                    "GATEWAY_MEMBER_TOKEN_PUBLIC_KEY (PEM)"
                )
            self._signing_key = settings.member_token_private_key
            self._verify_key = settings.member_token_public_key

    def issue(self, member_id: str, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + timedelta(seconds=ttl_seconds or self.default_ttl)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": member_id,
            "scope": "member",
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self.algorithm)
        return token, expires_at

    def verify(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("The member token has expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("The member token is not valid") from exc
        if claims.get("scope") != "member" or not isinstance(claims.get("sub"), str):
            raise AuthenticationFailed("The member token is not valid")
        member_id: str = claims["sub"]
        return member_id


class Authenticator:
    def __init__(self, settings: GatewaySettings) -> None:
        self.keys = KeyStore(resolve_api_keys(settings))
        self.tokens = MemberTokens(settings)

    def authenticate(self, authorization: str | None) -> Identity:
        if not authorization:
            raise AuthenticationFailed(
                "Send `Authorization: Bearer <API key or member token>`", error="invalid_request"
            )
        kind, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if kind.lower() != "bearer" or not credential:
            raise AuthenticationFailed(
                "Use the Bearer scheme: `Authorization: Bearer <token>`", error="invalid_request"
            )
        if credential.count(".") == 2:  # a JWT: header.payload.signature
            member_id = self.tokens.verify(credential)
            return Identity(scope="member", name=f"member:{member_id}", member_id=member_id)
        key = self.keys.lookup(credential)
        if key is None:
            raise AuthenticationFailed("The API key is not valid")
        return Identity(scope=key.scope, name=key.name)
