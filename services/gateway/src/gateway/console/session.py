"""The console's session: one cookie, sealed (Fernet: AES-CBC + HMAC-SHA256), HttpOnly,
SameSite=Strict, holding the signed-in API key and the session's CSRF token.

The key never reaches the URL, the page or the browser's storage: it travels only inside
the sealed cookie, which scripts cannot read (HttpOnly) and other sites cannot send
(SameSite=Strict). A cookie that was changed, or sealed with another secret, or older than
``GATEWAY_CONSOLE_SESSION_SECONDS``, opens to nothing: the caller is signed out. Before
sign-in the cookie holds only a CSRF token, so the sign-in form is protected too (no login
CSRF); signing in issues a new token (no session fixation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request
from starlette.responses import Response

from gateway.settings import GatewaySettings

COOKIE = "loyalty_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# The dev and test stacks' secret (documented like the dev keys); never used elsewhere.
DEV_CONSOLE_SECRET = "dev-console-secret-not-for-production-0123456789"  # noqa: S105
SECRET_MIN_LENGTH = 32


class ConsoleDisabled(RuntimeError):
    """Outside dev and test without GATEWAY_CONSOLE_SECRET: the console is not served."""


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    key: str | None = None  # the API key signed in with; None: signed out
    name: str | None = None  # the key's configured name
    scope: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.key is not None


def console_secret(settings: GatewaySettings) -> str:
    if settings.console_secret:
        if len(settings.console_secret) < SECRET_MIN_LENGTH and not settings.is_dev:
            raise ConsoleDisabled(
                f"GATEWAY_CONSOLE_SECRET is shorter than {SECRET_MIN_LENGTH} characters"
            )
        return settings.console_secret
    if settings.is_dev:
        return DEV_CONSOLE_SECRET
    raise ConsoleDisabled("GATEWAY_CONSOLE_SECRET is not set: the console is off")


class SessionCodec:
    def __init__(self, secret: str, max_age_seconds: int, secure: bool) -> None:
        digest = hashlib.sha256(b"loyalty-console-cookie\x00" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.max_age = max_age_seconds
        self.secure = secure

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> SessionCodec:
        secure = settings.console_cookie_secure
        return cls(
            console_secret(settings),
            settings.console_session_seconds,
            secure if secure is not None else not settings.is_dev,
        )

    def seal(self, session: Session) -> str:
        doc = {"c": session.csrf, "k": session.key, "n": session.name, "s": session.scope}
        return self._fernet.encrypt(json.dumps(doc).encode()).decode()

    def open(self, cookie: str | None) -> Session | None:
        """The session in the cookie; None when there is none, or it was tampered with,
        sealed with another secret or is too old."""
        if not cookie:
            return None
        try:
            raw = self._fernet.decrypt(cookie.encode(), ttl=self.max_age)
            doc = json.loads(raw)
        except (InvalidToken, ValueError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("c"), str):
            return None
        key, name, scope = doc.get("k"), doc.get("n"), doc.get("s")
        if key is not None and not (isinstance(key, str) and isinstance(scope, str)):
            return None
        return Session(csrf=doc["c"], key=key, name=name, scope=scope)

    def read(self, request: Request) -> Session | None:
        return self.open(request.cookies.get(COOKIE))

    def write(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.seal(session),
            max_age=self.max_age,
            path="/console",
            httponly=True,
            secure=self.secure,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/console", httponly=True, secure=self.secure, samesite="strict"
        )


def new_session() -> Session:
    return Session(csrf=secrets.token_urlsafe(32))


def csrf_matches(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(
        session.csrf.encode(), (presented or "").encode()
    )
