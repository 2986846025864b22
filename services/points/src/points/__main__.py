import sys
from pathlib import Path

from loyalty_shared.service_cli import service_main
from points.settings import PointsSettings
from points.worker import build_workers

SERVICE_DIR = Path(__file__).resolve().parents[2]


def main() -> None:
    # points' own subcommands (the shared CLI serves api / worker / migrate)
    if sys.argv[1:2] == ["import-orders"]:
        from points.imports.cli import main as import_orders

        raise SystemExit(import_orders(sys.argv[2:]))
    if sys.argv[1:2] == ["verify-ledger"]:
        from points.reconciliation.cli import main as verify_ledger

        raise SystemExit(verify_ledger(sys.argv[2:]))
    service_main(
        settings_factory=PointsSettings,
        app_factory="points.main:create_app",
        service_dir=SERVICE_DIR,
        worker_factory=build_workers,
    )


if __name__ == "__main__":
    main()
