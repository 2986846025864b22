"""Alembic glue: each service keeps its own migration tree; this runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(service_dir: Path, database_url: str) -> Config:
    cfg = Config(str(service_dir / "alembic.ini"))
    cfg.set_main_option("script_location", str(service_dir / "alembic"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_head(service_dir: Path, database_url: str) -> None:
    command.upgrade(alembic_config(service_dir, database_url), "head")


def run_env(target_metadata: MetaData, default_url: str) -> None:
    """The body of each service's ``alembic/env.py`` (online, async engine)."""
    from alembic import context

    config = context.config
    url = config.attributes.get("database_url") or default_url
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, hide_parameters=True)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_async())
    else:  # called from inside a running loop (tests): run in a worker thread
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool_:
            pool_.submit(asyncio.run, run_async()).result()
