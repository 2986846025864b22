"""The private SQLAlchemy attributes the hot path uses (``loyalty_shared.db``), pinned.

They are used only where measured to buy more than 10% (docs/performance.md, "What each
layer buys"); they are not part of SQLAlchemy's API, so they are checked against the
versions locked in uv.lock: an upgrade that moves one fails here, not in a checkout.
"""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.pool.base import _ConnectionFairy
from sqlalchemy.sql.compiler import SQLCompiler

LOCK = Path(__file__).resolve().parents[2] / "uv.lock"


def locked_version(package: str) -> str:
    found = re.search(
        rf'\[\[package\]\]\nname = "{package}"\nversion = "([^"]+)"', LOCK.read_text()
    )
    assert found, package
    return found.group(1)


@pytest.mark.parametrize("package", ["sqlalchemy", "asyncpg"])
def test_the_installed_version_is_the_locked_one(package: str) -> None:
    assert version(package) == locked_version(package)


def declares(cls: type, name: str) -> bool:
    """A class attribute, a slot, or an attribute its ``__init__`` sets."""
    for klass in cls.__mro__:
        if name in klass.__dict__ or name in getattr(klass, "__slots__", ()):
            return True
        init = klass.__dict__.get("__init__")
        if init is not None and f"self.{name} =" in inspect.getsource(init):
            return True
    return False


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        # _begun_driver, DriverAutocommit, _pool_checkin: begin the adapter's transaction
        # for statements run on the driver, and check that a pooled connection has none
        (AsyncAdapt_asyncpg_connection, "_transaction"),
        (AsyncAdapt_asyncpg_connection, "_execute_mutex"),
        (AsyncAdapt_asyncpg_connection, "_start_transaction"),
        # _pool_checkin: a connection's pool, for the checkin without a greenlet
        (_ConnectionFairy, "_pool"),
        # CompiledStatement: the bind processors of a statement compiled once
        (SQLCompiler, "_bind_processors"),
    ],
)
def test_a_private_attribute_the_hot_path_uses_is_there(cls: type, name: str) -> None:
    assert declares(cls, name), f"{cls.__name__}.{name}"
