"""``python -m gateway api`` serves the gateway; ``python -m gateway mint-key`` makes an API key."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gateway.auth import mint_key
from gateway.settings import GatewaySettings
from loyalty_shared.service_cli import service_main


def mint_key_command(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway mint-key",
        description="Print a new API key and the GATEWAY_API_KEYS entry that accepts it. "
        "Only the SHA-256 of the key goes into the configuration.",
    )
    parser.add_argument("--scope", required=True, choices=["storefront", "ops", "admin"])
    parser.add_argument("--name", required=True, help="who holds it (shown as X-Operator-Id)")
    args = parser.parse_args(argv)
    try:
        key, entry = mint_key(args.scope, args.name)
    except ValueError as exc:
        parser.error(str(exc))
    line = json.dumps(entry.model_dump())
    print(f"key:    {key}")
    print(f"config: {line}")
    print("Add the config entry to the JSON list in GATEWAY_API_KEYS, e.g.")
    print(f"  GATEWAY_API_KEYS='[{line}]'")
    print("The key is shown once; give it to its holder over a safe channel.")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["mint-key"]:
        mint_key_command(args[1:])
        return
    service_main(
        settings_factory=GatewaySettings,
        app_factory="gateway.main:create_app",
        service_dir=None,
        worker_factory=None,
        argv=args,
    )


if __name__ == "__main__":
    main()
