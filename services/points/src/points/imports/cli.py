"""``python -m points import-orders FILE.csv [--enrol-missing]``: load a shop's order history.

CSV columns: ``order_id,member_id,amount,occurred_at`` plus optional ``currency``,
``discount_amount``, ``coupon_used``, ``channel`` (empty cells are left out). Rows go in
chunks of up to 1000 through the same import as ``POST /v1/orders/batch`` (one transaction
per chunk, one savepoint per row); a progress bar goes to stderr, a summary and each failed
row (by its line number in the file) to stdout. Exit status 1 when a row failed. Re-running
the same file credits nothing twice (duplicates are counted).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from loyalty_shared.db import create_engine, create_sessionmaker
from points.imports.service import BatchResult, import_orders
from points.rules_cache import RulesCache
from points.settings import PointsSettings

CHUNK = 1000
REQUIRED = ("order_id", "member_id", "amount", "occurred_at")
OPTIONAL = ("currency", "discount_amount", "coupon_used", "channel")


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}")
        return [
            {k: v for k, v in row.items() if k in REQUIRED + OPTIONAL and v not in (None, "")}
            for row in reader
        ]


def _chunks(rows: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for start in range(0, len(rows), CHUNK):
        yield start, rows[start : start + CHUNK]


def _progress(done: int, total: int, out: TextIO) -> None:
    width = 30
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    out.flush()


async def run_import(
    settings: PointsSettings, path: Path, *, enrol_missing: bool, progress: TextIO = sys.stderr
) -> tuple[BatchResult, list[tuple[int, dict[str, Any]]]]:
    rows = read_rows(path)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    cache = RulesCache(settings.rules_cache_seconds)
    total = BatchResult()
    failures: list[tuple[int, dict[str, Any]]] = []
    try:
        _progress(0, len(rows), progress)
        for start, chunk in _chunks(rows):
            async with sessionmaker() as session, session.begin():
                result = await import_orders(
                    session, settings, chunk, enrol_missing=enrol_missing, cache=cache
                )
            total.created += result.created
            total.duplicates += result.duplicates
            failures += [(start + f["index"] + 2, f["problem"]) for f in result.failed]
            _progress(start + len(chunk), len(rows), progress)
        progress.write("\n")
    finally:
        await engine.dispose()
    return total, failures


def _column(field: Any) -> str:
    """``body.orders.3.amount`` (the row's index in its chunk) -> ``amount``, the CSV column."""
    parts = str(field).split(".")
    if len(parts) > 3 and parts[:2] == ["body", "orders"]:
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
    result, failures = asyncio.run(
        run_import(settings, args.file, enrol_missing=args.enrol_missing)
    )
    print(f"created {result.created}, duplicates {result.duplicates}, failed {len(failures)}")
    for line, problem in failures:
        print(f"row {line}: {_describe(problem)}")
    return 1 if failures else 0
