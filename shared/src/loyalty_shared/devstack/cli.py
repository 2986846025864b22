"""``loyalty-dev run``: the embedded stack behind ``make run``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from loyalty_shared.devstack.stack import DEV_KEYS, DEV_MEMBER_TOKEN_SECRET, Stack, StackConfig


def _banner(stack: Stack) -> str:
    gw = stack.gateway_url()
    cfg = stack.config
    lines = [
        "",
        "=" * 72,
        " Loyalty platform is up (embedded Postgres + Tansu broker)",
        "=" * 72,
        f"  Gateway        {gw}",
        f"  API docs       {gw}/docs      (merged OpenAPI: {gw}/openapi.json)",
        f"  Ready          {gw}/ready",
        f"  Metrics        {gw}/metrics",
        f"  Services       points :{cfg.ports['points']}  segmentation :{cfg.ports['segmentation']}"
        f"  feedback :{cfg.ports['feedback']}",
        f"  Kafka          127.0.0.1:{cfg.kafka_port} (memory only)",
        f"  Data           {cfg.data_dir}",
        "",
        "  Dev API keys (Authorization: Bearer <key>):",
        *(f"    {scope:<11} {key}" for scope, key in DEV_KEYS.items()),
        f"  Member tokens are signed with the dev secret: {DEV_MEMBER_TOKEN_SECRET}",
        "",
        f"  Try:  curl -s -H 'Authorization: Bearer {DEV_KEYS['storefront']}' "
        f"-H 'Content-Type: application/json' \\",
        f'          -d \'{{"member_id":"m-1"}}\' {gw}/v1/members',
        "",
        "  Ctrl-C stops everything.",
        "=" * 72,
    ]
    return "\n".join(lines)


def run(data_dir: Path) -> int:
    config = StackConfig.from_env(data_dir)
    stack = Stack(config)
    taken = stack.taken_ports()
    if taken:
        for name, port in taken.items():
            print(
                f"[loyalty-dev] port {port} ({name}) is already in use; free it or set "
                f"{'KAFKA' if name == 'kafka broker' else name.upper()}_PORT to another port",
                file=sys.stderr,
            )
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start()
        if not stopping.is_set():
            print(_banner(stack), flush=True)
        while not stopping.wait(1.0):
            dead = stack.dead_processes()
            if dead:
                print(f"[loyalty-dev] stopped unexpectedly: {', '.join(dead)}", file=sys.stderr)
                code = 1
                break
    except Exception as exc:
        print(f"[loyalty-dev] start-up failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
        print("[loyalty-dev] stopped", flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loyalty-dev")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the whole platform on the embedded stack")
    run_p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("LOYALTY_DATA_DIR", ".data"))
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        sys.exit(run(args.data_dir.resolve()))


if __name__ == "__main__":
    main()
