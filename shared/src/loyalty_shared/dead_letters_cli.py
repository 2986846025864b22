"""``loyalty-<service> dead-letters list|show|replay|discard``: the work list from a shell.

The same actions as ``/v1/ops/dead-letters`` (``loyalty_shared.ops``), on the service's
own database and broker (its settings from the environment), recorded in
``pipeline_actions`` as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any, TextIO

from loyalty_shared import dead_letters
from loyalty_shared.db import create_engine
from loyalty_shared.ops import replay_all, replay_item
from loyalty_shared.problems import ProblemError
from loyalty_shared.settings import CommonSettings


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "dead-letters", help="list, show, replay or discard dead letters and parked outbox rows"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument(
        "--status", default="open", choices=["open", "replayed", "discarded", "all"]
    )
    listing.add_argument("--kind", choices=["dlq", "parked"])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON document")
    show = actions.add_parser("show", help="one item with its event")
    show.add_argument("ref", help="<service>.<dlq|parked>.<n>, as listed")
    replay = actions.add_parser("replay", help="send again (idempotent by event id)")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("ref", nargs="?")
    target.add_argument("--all", action="store_true", help="every open item")
    replay.add_argument("--kind", choices=["dlq", "parked"], help="with --all: only this kind")
    replay.add_argument("--reason")
    discard = actions.add_parser("discard", help="give it up, with a reason")
    discard.add_argument("ref")
    discard.add_argument("--reason", required=True)


def run(settings: CommonSettings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(_run(settings, args, out))
    except ProblemError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1


async def _run(settings: CommonSettings, args: argparse.Namespace, out: TextIO) -> int:
    engine = create_engine(settings)
    actor = f"cli:{getpass.getuser()}"
    service = settings.service_name
    try:
        if args.action == "list":
            async with engine.connect() as conn:
                items = await dead_letters.list_items(
                    conn, service, status=args.status, kind=args.kind, limit=args.limit
                )
            _print_list(items, as_json=args.json, out=out)
        elif args.action == "show":
            async with engine.connect() as conn:
                item = await dead_letters.get_item(conn, service, args.ref)
            print(json.dumps(item.as_dict(with_payload=True), default=str, indent=2), file=out)
        elif args.action == "replay" and args.all:
            refs = await replay_all(
                settings, engine, kind=args.kind, actor=actor, reason=args.reason
            )
            print(f"replayed {len(refs)}: {' '.join(refs)}".rstrip(": "), file=out)
        elif args.action == "replay":
            await replay_item(settings, engine, args.ref, actor=actor, reason=args.reason)
            print(f"replayed {args.ref}", file=out)
        else:
            async with engine.begin() as conn:
                await dead_letters.discard(conn, service, args.ref, actor=actor, reason=args.reason)
            print(f"discarded {args.ref}", file=out)
    finally:
        await engine.dispose()
    return 0


def _print_list(items: list[dead_letters.Item], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps([i.as_dict() for i in items], default=str, indent=2), file=out)
        return
    if not items:
        print("nothing here", file=out)
        return
    print(f"{'ref':<26} {'status':<10} {'failed at':<20} {'event type':<34} error", file=out)
    for i in items:
        when = i.failed_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{i.ref:<26} {i.status:<10} {when:<20} {(i.event_type or '-'):<34} {i.error[:80]}",
            file=out,
        )
