from pathlib import Path

from loyalty_shared.service_cli import service_main
from webhooks.settings import WebhooksSettings
from webhooks.worker import build_workers

SERVICE_DIR = Path(__file__).resolve().parents[2]


def main() -> None:
    service_main(
        settings_factory=WebhooksSettings,
        app_factory="webhooks.main:create_app",
        service_dir=SERVICE_DIR,
        worker_factory=build_workers,
    )


if __name__ == "__main__":
    main()
