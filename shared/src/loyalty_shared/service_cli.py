"""The command line every service ships: ``api``, ``worker`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared import dead_letters_cli
from loyalty_shared.db import create_engine, create_sessionmaker
from loyalty_shared.kafka import ensure_topics
from loyalty_shared.logs import configure_logging
from loyalty_shared.migrations import upgrade_head
from loyalty_shared.pipeline import PipelineMonitor
from loyalty_shared.runtime import run_until_stopped
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import all_topics

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
WorkerFactory = Callable[
    [CommonSettings, AsyncEngine, async_sessionmaker[AsyncSession]], Sequence[Worker]
]

log = structlog.get_logger("loyalty.cli")

# The service's app factory ("module:function"), for `serving_app` in each uvicorn worker.
APP_FACTORY_ENV = "LOYALTY_APP_FACTORY"


def serving_app() -> Any:
    """uvicorn's app factory for `api`: the service's app, then a frozen garbage collector.

    Everything that exists once the app is built (modules, pydantic schemas, FastAPI's
    routes, SQLAlchemy's metadata: ~160k objects for points) is moved out of the
    collector's generations (`gc.freeze`, as the `gc` docs advise for servers). Measured
    under load, a full collection otherwise walked all of them: ~95 ms with the event
    loop stopped, several times a minute, which set the checkout's p99. Only the
    served process does this: tests build many apps in one process and must not pin them.
    """
    module, _, name = os.environ[APP_FACTORY_ENV].partition(":")
    app = getattr(importlib.import_module(module), name)()
    gc.collect()
    gc.freeze()
    return app


def service_main(
    *,
    settings_factory: Callable[[], CommonSettings],
    app_factory: str,
    service_dir: Path | None,
    worker_factory: WorkerFactory | None,
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int, help="uvicorn worker processes (API_WORKERS)")
    if worker_factory is not None:
        sub.add_parser("worker", help="run the outbox relay, the event consumers and the jobs")
    if service_dir is not None:
        sub.add_parser("migrate", help="apply this service's database migrations")
        dead_letters_cli.add_parser(sub)
    args = parser.parse_args(argv)
    settings = settings_factory()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)

    if args.command == "api":
        os.environ[APP_FACTORY_ENV] = app_factory
        uvicorn.run(
            f"{__name__}:serving_app",
            factory=True,
            workers=args.workers or settings.api_workers,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    elif args.command == "migrate":
        assert service_dir is not None
        upgrade_head(service_dir, settings.sqlalchemy_url())
        log.info("migrations_applied", service=settings.service_name)
    elif args.command == "worker":
        assert worker_factory is not None
        asyncio.run(_run_workers(settings, worker_factory))
    elif args.command == "dead-letters":
        raise SystemExit(dead_letters_cli.run(settings, args))


async def _run_workers(settings: CommonSettings, worker_factory: WorkerFactory) -> None:
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        try:
            await ensure_topics(settings, all_topics())
        except Exception as exc:  # the relay keeps retrying; topics are made when it connects
            log.warning("topics_not_created_yet", error=f"{type(exc).__name__}: {exc}")
        workers = [*worker_factory(settings, engine, sessionmaker)]
        workers.append(PipelineMonitor(settings, engine).run)
        log.info("worker_started", service=settings.service_name, workers=len(workers))
        await run_until_stopped(*workers)
    finally:
        await engine.dispose()
        log.info("worker_stopped", service=settings.service_name)
