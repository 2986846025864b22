from pathlib import Path

from feedback.settings import FeedbackSettings
from feedback.worker import build_workers
from loyalty_shared.service_cli import service_main

SERVICE_DIR = Path(__file__).resolve().parents[2]


def main() -> None:
    service_main(
        settings_factory=FeedbackSettings,
        app_factory="feedback.main:create_app",
        service_dir=SERVICE_DIR,
        worker_factory=build_workers,
    )


if __name__ == "__main__":
    main()
