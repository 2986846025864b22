"""``loyalty-dev run``: the embedded stack behind ``make run``; ``loyalty-dev stop``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from loyalty_shared.devstack.signals import StopRequest
from loyalty_shared.devstack.stack import (
    DEV_KEYS,
    DEV_MEMBER_TOKEN_SECRET,
    Stack,
    StackConfig,
    StartInterrupted,
)
from loyalty_shared.devstack.state import live_launcher, stop_leftovers


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
        f"  Ops console    {gw}/console   (sign in with the ops or admin key below)",
        f"  Ready          {gw}/ready      (per-service detail with an ops or admin key)",
        f"  Metrics        {gw}/metrics    (with an ops or admin key)",
        f"  Pipeline       {gw}/v1/ops/pipeline  (ops key); workers' Prometheus metrics on"
        f" :{cfg.worker_metrics_port('points')} :{cfg.worker_metrics_port('segmentation')}"
        f" :{cfg.worker_metrics_port('feedback')} :{cfg.worker_metrics_port('webhooks')}",
        *(
            [
                f"  Replicas       {cfg.replicas} APIs and workers per service, each replica"
                " on the ports + 10 (points :8001, :8011, ...)"
            ]
            if cfg.replicas > 1
            else []
        ),
        f"  Services       points :{cfg.ports['points']}  segmentation :{cfg.ports['segmentation']}"
        f"  feedback :{cfg.ports['feedback']}  webhooks :{cfg.ports['webhooks']}",
        f"  Kafka          127.0.0.1:{cfg.kafka_port} (memory only; watch a topic: "
        "loyalty-dev events tail loyalty.points.events)",
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
        "  Ctrl-C (or SIGTERM) stops everything. Should this launcher be killed,",
        "  `make stop` (or the next `make run`) stops what it left running.",
        "=" * 72,
    ]
    return "\n".join(lines)


def _say(msg: str) -> None:
    print(f"[loyalty-dev] {msg}", flush=True)


def _port_variable(name: str) -> str:
    if name == "kafka broker":
        return "KAFKA_PORT"
    service = name.split("-", 1)[0]
    return f"{service.upper()}_PORT (replicas: + 10 each, workers' metrics: + 100)"


def _refuse_taken_ports(stack: Stack) -> bool:
    taken = stack.taken_ports()
    for name, port in taken.items():
        print(
            f"[loyalty-dev] port {port} ({name}) is already in use; free it or set "
            f"{_port_variable(name)} to another port",
            file=sys.stderr,
        )
    return bool(taken)


def _supervise(stack: Stack, stop: StopRequest) -> int:
    """Wait for a stop signal; 1 if a process of the stack dies first."""
    while not stop.wait(1.0):
        dead = stack.dead_processes()
        if dead:
            print(f"[loyalty-dev] stopped unexpectedly: {', '.join(dead)}", file=sys.stderr)
            return 1
    return 0


def run(data_dir: Path) -> int:
    stop = StopRequest()
    stop.install()
    other = live_launcher(data_dir)
    if other is not None:
        print(
            f"[loyalty-dev] another loyalty-dev run (pid {other.pid}) uses {data_dir}; "
            f"stop it first (Ctrl-C there, or: loyalty-dev stop --data-dir {data_dir})",
            file=sys.stderr,
        )
        return 1
    left = stop_leftovers(data_dir, _say)
    if left:
        _say(f"stopped what an earlier run left running: {', '.join(left)}")
    stack = Stack(StackConfig.from_env(data_dir), stop_requested=stop.requested)
    if _refuse_taken_ports(stack):
        return 1
    code = 0
    try:
        stack.start()
        print(_banner(stack), flush=True)
        code = _supervise(stack, stop)
    except StartInterrupted:
        pass
    except Exception as exc:
        print(f"[loyalty-dev] start-up failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
        _say("stopped")
    return code


def stop(data_dir: Path) -> int:
    """Stop the ``loyalty-dev run`` on ``data_dir``, or what a killed one left running."""
    stopped = stop_leftovers(data_dir, _say)
    _say(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running on {data_dir}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loyalty-dev")
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = Path(os.environ.get("LOYALTY_DATA_DIR", ".data"))
    run_p = sub.add_parser("run", help="start the whole platform on the embedded stack")
    run_p.add_argument("--data-dir", type=Path, default=default_dir)
    stop_p = sub.add_parser(
        "stop",
        help="stop the run using this data dir, or whatever a killed run left behind "
        "(its services, the broker, Postgres)",
    )
    stop_p.add_argument("--data-dir", type=Path, default=default_dir)
    _events_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "events":
        sys.exit(_events(args))
    data_dir = args.data_dir.resolve()
    sys.exit(run(data_dir) if args.command == "run" else stop(data_dir))


def _events_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events_p = sub.add_parser("events", help="watch the event stream of a running dev stack")
    tail_p = events_p.add_subparsers(dest="action", required=True).add_parser(
        "tail", help="print the events on a topic as they come (envelope and payload)"
    )
    tail_p.add_argument("topic", help="e.g. loyalty.points.events (or its .dlq)")
    tail_p.add_argument("--member", help="only this member's events (key or subject)")
    tail_p.add_argument("--from-beginning", action="store_true", help="the topic's past too")
    tail_p.add_argument("--pretty", action="store_true", help="indented, one document each")
    tail_p.add_argument("--bootstrap", default=None, help="host:port (default: the dev broker)")


def _events(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from loyalty_shared.devstack import events

    watched = events.tail(
        args.topic,
        bootstrap=args.bootstrap or events.default_bootstrap(),
        member=args.member,
        from_beginning=args.from_beginning,
        pretty=args.pretty,
        out=sys.stdout,
    )
    try:
        asyncio.run(watched)
    except KeyboardInterrupt:
        pass
    except (events.UnknownTopic, OSError, KafkaError) as exc:
        print(f"[loyalty-dev] {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    main()
