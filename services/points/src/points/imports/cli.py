"""``python -m points import-orders FILE.csv [--enrol-missing]``: load a shop's order history.

Columns (a header row names them; docs/points-ledger.md, "History import"):

- orders: ``order_id,member_id,amount,occurred_at`` and optionally ``currency``,
  ``discount_amount``, ``coupon_used``, ``channel``, ``items`` and ``categories``.
  ``items``: the order's lines, as the API's JSON array or as ``sku:category:unit_price:
  quantity`` entries separated by ``;`` (``s-12:shoes:59.90:2;s-7:hats:15.00:1``).
  ``categories``: for a shop that has only categories (``shoes;hats``), one line per
  category sharing the amount evenly (so category campaigns and segments work on history).
- refunds: a row with a ``refund_id`` is a refund of ``order_id``: ``amount`` refunded at
  ``occurred_at`` (any past time, not before the order), optional ``reason``.

Rows go in chunks of 1,000 through the same import as ``POST /v1/orders/batch`` (one
transaction per chunk; a chunk's refunds after its orders; a refund whose order comes in
a later chunk is tried again at the end). Resumable: before a chunk is parsed, the order
and refund ids already recorded are looked up in one query and those rows skipped (a
rerun after a stop goes quickly through what is in). A progress bar (rows, rate, ETA) goes
to stderr; a summary and each failed row (by its line number in the file, with the
column) to stdout. Exit status 1 when a row failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import create_engine, create_sessionmaker, driver_connection
from points.imports.service import BatchResult, import_orders
from points.rules_cache import RulesCache
from points.settings import PointsSettings

CHUNK = 1000
REQUIRED = ("order_id", "amount", "occurred_at")
ORDER_FIELDS = (
    *("order_id", "member_id", "amount", "occurred_at"),
    *("currency", "discount_amount", "coupon_used", "channel"),
)
REFUND_FIELDS = ("refund_id", "order_id", "amount", "occurred_at", "reason")


@dataclass
class Summary:
    result: BatchResult = field(default_factory=BatchResult)
    already_in: int = 0  # rows skipped: recorded by an earlier run
    refunds_already_in: int = 0
    failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line, problem)


def parse_items(cell: str) -> Any:
    """The ``items`` cell: a JSON array, or ``sku:category:unit_price:quantity;...``
    (a malformed entry is passed on as it is, for the row's validation to name it)."""
    cell = cell.strip()
    if cell.startswith("["):
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            return cell
    lines: list[Any] = []
    for entry in filter(None, (e.strip() for e in cell.split(";"))):
        parts = entry.split(":")
        if len(parts) != 4:
            lines.append(entry)
            continue
        sku, category, price, quantity = parts
        lines.append(
            {"sku": sku, "category": category or None, "unit_price": price, "quantity": quantity}
        )
    return lines


def category_items(cell: str, amount: str) -> list[dict[str, Any]] | None:
    """One line per category, the amount shared evenly (the last line takes the cents left)."""
    categories = [c.strip() for c in cell.split(";") if c.strip()]
    try:
        total = Decimal(amount)
    except InvalidOperation:
        return None  # the amount's own error names the row
    if not categories or total <= 0:
        return None
    share = (total / len(categories)).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    last = total - share * (len(categories) - 1)
    return [
        {
            "sku": c,
            "category": c,
            "unit_price": str(last if i == len(categories) - 1 else share),
            "quantity": 1,
        }
        for i, c in enumerate(categories)
    ]


def order_row(row: dict[str, str]) -> dict[str, Any]:
    order: dict[str, Any] = {k: row[k] for k in ORDER_FIELDS if row.get(k) not in (None, "")}
    if row.get("items"):
        order["items"] = parse_items(row["items"])
    elif row.get("categories"):
        items = category_items(row["categories"], row.get("amount") or "")
        if items is not None:
            order["items"] = items
    return order


def refund_row(row: dict[str, str]) -> dict[str, Any]:
    return {k: row[k] for k in REFUND_FIELDS if row.get(k) not in (None, "")}


@dataclass
class Chunk:
    """Up to CHUNK rows of the file: orders and refunds, each with its line number."""

    orders: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    refunds: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.orders) + len(self.refunds)


def read_chunks(path: Path) -> Iterator[Chunk]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}")
        chunk = Chunk()
        for line, row in enumerate(reader, start=2):
            if row.get("refund_id"):
                chunk.refunds.append((line, refund_row(row)))
            else:
                chunk.orders.append((line, order_row(row)))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = Chunk()
        if chunk:
            yield chunk


def count_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


async def _already_in(session: AsyncSession, chunk: Chunk) -> tuple[set[str], set[str]]:
    """The chunk's order ids and refund ids already recorded (one round trip each)."""
    conn = await driver_connection(session)
    order_ids = [str(o.get("order_id", "")) for _, o in chunk.orders]
    refund_ids = [str(r.get("refund_id", "")) for _, r in chunk.refunds]
    orders = await conn.fetch(
        "SELECT order_id FROM orders WHERE order_id = ANY($1::text[])", order_ids
    )
    refunds = await conn.fetch(
        "SELECT refund_id FROM refunds WHERE refund_id = ANY($1::text[])", refund_ids
    )
    return {r["order_id"] for r in orders}, {r["refund_id"] for r in refunds}


class Importer:
    def __init__(self, settings: PointsSettings, *, enrol_missing: bool) -> None:
        self.settings = settings
        self.enrol_missing = enrol_missing
        self.engine = create_engine(settings)
        self.sessionmaker = create_sessionmaker(self.engine)
        self.cache = RulesCache(settings.rules_cache_seconds)
        self.summary = Summary()
        self.deferred: list[tuple[int, dict[str, Any]]] = []  # refunds before their order

    async def chunk(self, chunk: Chunk, *, last_try: bool = False) -> None:
        async with self.sessionmaker() as session, session.begin():
            known_orders, known_refunds = await _already_in(session, chunk)
            orders = [(n, o) for n, o in chunk.orders if o.get("order_id") not in known_orders]
            refunds = [(n, r) for n, r in chunk.refunds if r.get("refund_id") not in known_refunds]
            self.summary.already_in += len(chunk.orders) - len(orders)
            self.summary.refunds_already_in += len(chunk.refunds) - len(refunds)
            result = await import_orders(
                session,
                self.settings,
                [o for _, o in orders],
                enrol_missing=self.enrol_missing,
                refund_rows=[r for _, r in refunds],
                cache=self.cache,
            )
        total = self.summary.result
        total.created += result.created
        total.duplicates += result.duplicates
        total.refunded += result.refunded
        self.summary.failures += [(orders[f["index"]][0], f["problem"]) for f in result.failed]
        for failure in result.refunds_failed:
            line, row = refunds[failure["index"]]
            if not last_try and failure["problem"].get("status") == 404:
                self.deferred.append((line, row))  # its order may come later in the file
            else:
                self.summary.failures.append((line, failure["problem"]))

    async def finish(self) -> None:
        deferred, self.deferred = self.deferred, []
        for start in range(0, len(deferred), CHUNK):
            await self.chunk(Chunk(refunds=deferred[start : start + CHUNK]), last_try=True)
        await self.engine.dispose()


async def run_import(
    settings: PointsSettings, path: Path, *, enrol_missing: bool, console: Console | None = None
) -> Summary:
    console = console or Console(stderr=True)
    importer = Importer(settings, enrol_missing=enrol_missing)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    began = time.monotonic()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(path.name, total=count_rows(path), rate=0.0)
            for chunk in read_chunks(path):
                await importer.chunk(chunk)
                done = progress.tasks[task].completed + len(chunk)
                rate = done / max(time.monotonic() - began, 1e-9)
                progress.update(task, completed=done, rate=rate)
    finally:
        await importer.finish()
    return importer.summary


def _column(field: Any) -> str:
    """``body.orders.3.amount`` (the row's index in its chunk) -> ``amount``, the CSV column."""
    parts = str(field).split(".")
    if len(parts) > 3 and parts[0] == "body" and parts[1] in ("orders", "refunds"):
        return ".".join(parts[3:])
    return str(field)


def _describe(problem: dict[str, Any]) -> str:
    errors = problem.get("errors") or []
    if errors:
        return "; ".join(f"{_column(e.get('field'))}: {e.get('message')}" for e in errors)
    return str(problem.get("detail") or problem.get("title"))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m points import-orders")
    parser.add_argument("file", type=Path, help="CSV: order_id,member_id,amount,occurred_at,...")
    parser.add_argument("--enrol-missing", action="store_true", help="enrol unknown members")
    args = parser.parse_args(argv)
    settings = PointsSettings()
    began = time.monotonic()
    summary = asyncio.run(run_import(settings, args.file, enrol_missing=args.enrol_missing))
    seconds = time.monotonic() - began
    result, failures = summary.result, sorted(summary.failures, key=lambda f: f[0])
    print(
        f"created {result.created}, duplicates {result.duplicates}, "
        f"already in {summary.already_in}, failed {len(failures)}; "
        f"refunds recorded {result.refunded}, already in {summary.refunds_already_in}; "
        f"{seconds:.1f} s"
    )
    for line, problem in failures:
        print(f"row {line}: {_describe(problem)}")
    return 1 if failures else 0
