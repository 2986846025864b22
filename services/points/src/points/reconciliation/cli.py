"""``loyalty-points verify-ledger [--json] [--limit N]``: reconcile the whole ledger.

Recomputes every balance from the entries and lots (``service.verify_ledger``) and prints
each drift (member, field, expected, actual); exit status 1 when anything drifted, 0 when
the ledger balances. ``--json`` prints the report as ``GET /v1/ops/ledger/verify`` gives it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from loyalty_shared.db import create_engine, create_sessionmaker
from points.reconciliation.schemas import LedgerReport
from points.reconciliation.service import verify_ledger
from points.settings import PointsSettings


async def run(settings: PointsSettings, limit: int) -> LedgerReport:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await verify_ledger(session, limit=limit)
    finally:
        await engine.dispose()


def describe(report: LedgerReport) -> list[str]:
    lines = [
        f"checked {report.members} balances and {report.lots} lots: "
        + ("the ledger balances" if report.balanced else f"{report.drift_count} drift(s)")
    ]
    for d in report.drift:
        where = f"{d.member_id} lot {d.lot_id}" if d.lot_id is not None else d.member_id
        lines.append(f"{where}: {d.field} expected {d.expected}, actual {d.actual}")
    if report.drift_count > len(report.drift):
        lines.append(f"... and {report.drift_count - len(report.drift)} more (--limit)")
    return lines


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="loyalty-points verify-ledger")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--limit", type=int, default=1000, help="drifts to list (default 1000)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(PointsSettings(), max(1, args.limit)))
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print("\n".join(describe(report)))
    return 0 if report.balanced else 1
