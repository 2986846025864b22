"""The address rules as the sender applies them before each attempt: the host resolved, every
address checked, the connection pinned to a checked one."""

from __future__ import annotations

import ipaddress

import pytest

from webhooks.subscriptions.targets import TargetPolicy, TargetRefused, pinned

STRICT = TargetPolicy.for_environment(is_dev=False, allow_private=False)
PRIVATE_OK = TargetPolicy.for_environment(is_dev=False, allow_private=True)
DEV = TargetPolicy.for_environment(is_dev=True, allow_private=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.1/hooks", "loopback"),  # a name that resolves to 127.0.0.1
        ("https://0x7f000001/hooks", "loopback"),
        ("https://localhost/hooks", "loopback"),
        ("https://[::ffff:10.0.0.1]/hooks", "private"),
        ("https://169.254.169.254/hooks", "link-local"),
        ("http://93.184.216.34/hooks", "https"),
        ("https://no-such-host.invalid/hooks", "does not resolve"),
    ],
)
async def test_outside_dev_the_sender_refuses_before_connecting(url: str, reason: str) -> None:
    with pytest.raises(TargetRefused, match=reason):
        await pinned(url, STRICT)


async def test_the_connection_goes_to_the_checked_address() -> None:
    target, address = await pinned("https://93.184.216.34:8443/hooks", STRICT)
    assert (target.host, target.port, address) == (
        "93.184.216.34",
        8443,
        ipaddress.ip_address("93.184.216.34"),
    )
    _, private = await pinned("https://10.0.0.7/hooks", PRIVATE_OK)
    assert private == ipaddress.ip_address("10.0.0.7")
    _, local = await pinned("http://localhost:9/hooks", DEV)
    assert local.is_loopback
    with pytest.raises(TargetRefused, match="link-local"):
        await pinned("http://169.254.169.254/latest", DEV)
    with pytest.raises(TargetRefused, match="link-local"):
        await pinned("https://169.254.169.254/latest", PRIVATE_OK)
