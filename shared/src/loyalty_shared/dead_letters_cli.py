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

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import dead_letters
from loyalty_shared.db import create_engine, create_sessionmaker
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
    try:
        # one transaction, committed before anything is printed
        async with create_sessionmaker(engine)() as session, session.begin():
            said = await _act(settings, session, args)
    finally:
        await engine.dispose()
    if isinstance(said, str):
        print(said, file=out)
    else:
        _print_list(said, as_json=args.json, out=out)
    return 0


async def _act(
    settings: CommonSettings, session: AsyncSession, args: argparse.Namespace
) -> str | list[dead_letters.Item]:
    """What the command does; what it has to say (or the items to list)."""
    actor = f"cli:{getpass.getuser()}"
    service = settings.service_name
    if args.action == "list":
        return await dead_letters.list_items(
            session, service, status=args.status, kind=args.kind, limit=args.limit
        )
    if args.action == "show":
        item = await dead_letters.get_item(session, service, args.ref)
        return json.dumps(item.as_dict(with_payload=True), default=str, indent=2)
    if args.action == "replay" and args.all:
        refs = await replay_all(settings, session, kind=args.kind, actor=actor, reason=args.reason)
        return f"replayed {len(refs)}: {' '.join(refs)}".rstrip(": ")
    if args.action == "replay":
        await replay_item(settings, session, args.ref, actor=actor, reason=args.reason)
        return f"replayed {args.ref}"
    await dead_letters.discard(session, service, args.ref, actor=actor, reason=args.reason)
    return f"discarded {args.ref}"


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
