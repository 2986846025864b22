"""Where a webhook may go: no SSRF into our own network (docs/webhooks.md, docs/security.md).

- ``https`` only outside dev and test (``http`` is for a receiver on the developer's machine).
- Link-local addresses (169.254.0.0/16, fe80::/10: the cloud metadata endpoints live there),
  the unspecified address and multicast are refused everywhere.
- Outside dev and test, every address that is not globally routable is refused too
  (loopback, RFC 1918 private ranges, carrier-grade NAT, unique-local IPv6, reserved), unless
  ``WEBHOOKS_ALLOW_PRIVATE_TARGETS`` says the receivers live in the shop's own network.

The URL is checked when a subscription is made or changed (its host, or every address the
name resolves to), and again before every attempt after resolving the name: the attempt then
connects to the address that was checked (``pinned``), so a DNS answer that changes between
the check and the connection (DNS rebinding) can't point it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# always refused: cloud metadata (link-local, and AWS's IPv6 one), nowhere, multicast
_METADATA = (ipaddress.ip_address("fd00:ec2::254"),)


class TargetRefused(ValueError):
    """A URL or address a webhook may not be sent to; the message says why."""


@dataclass(frozen=True)
class TargetPolicy:
    require_https: bool
    allow_private: bool

    @classmethod
    def for_environment(cls, *, is_dev: bool, allow_private: bool) -> TargetPolicy:
        return cls(require_https=not is_dev, allow_private=is_dev or allow_private)


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_address(address: IPAddress, policy: TargetPolicy) -> None:
    """Raise ``TargetRefused`` if a webhook may not connect to ``address``."""
    ip = _unmapped(address)
    if ip.is_link_local or ip in _METADATA:
        raise TargetRefused(f"{ip} is link-local (cloud metadata lives there): never a target")
    if ip.is_unspecified or ip.is_multicast:
        raise TargetRefused(f"{ip} is not a host a webhook can be sent to")
    if policy.allow_private:
        return
    if ip.is_loopback:
        raise TargetRefused(f"{ip} is a loopback address: refused outside dev")
    if not ip.is_global:
        raise TargetRefused(f"{ip} is a private or reserved address: refused outside dev")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL (a name, or an address)
    port: int
    literal: IPAddress | None  # the host, when it is an address


def parse_url(url: str, policy: TargetPolicy) -> Target:
    """The URL's parts, or ``TargetRefused`` (scheme, credentials, a refused address)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with https://")
    if parts.scheme == "http" and policy.require_https:
        raise TargetRefused("only https:// URLs outside dev (the payload and signature travel)")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("no credentials in the URL (the signature proves who sends)")
    if parts.fragment:
        raise TargetRefused("no #fragment in the URL")
    try:
        literal: IPAddress | None = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, policy)
    elif parts.hostname.rstrip(".").lower() in ("localhost", "localhost.localdomain") and not (
        policy.allow_private
    ):
        raise TargetRefused("localhost is a loopback address: refused outside dev")
    return Target(
        parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), literal
    )


async def resolve(target: Target) -> list[IPAddress]:
    """Every address the target's host stands for (the address itself for a literal)."""
    if target.literal is not None:
        return [target.literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"{target.host} does not resolve: {exc}") from exc
    seen: dict[str, IPAddress] = {}
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id
        seen.setdefault(raw, ipaddress.ip_address(raw))
    if not seen:
        raise TargetRefused(f"{target.host} has no address")
    return list(seen.values())


async def pinned(url: str, policy: TargetPolicy) -> tuple[Target, IPAddress]:
    """Check the URL, resolve its host, check every address; the address to connect to.

    Every address is checked (not just the one used): a name that also resolves into our
    network is refused as a whole.
    """
    target = parse_url(url, policy)
    addresses = await resolve(target)
    for address in addresses:
        check_address(address, policy)
    return target, addresses[0]


async def check_url(url: str, policy: TargetPolicy) -> None:
    """For a new or changed subscription: refuse a URL whose host is, or resolves to, a
    refused address. A name that does not resolve yet is accepted (checked at delivery)."""
    target = parse_url(url, policy)
    if target.literal is not None:
        return
    try:
        addresses = await resolve(target)
    except TargetRefused:
        return
    for address in addresses:
        check_address(address, policy)
