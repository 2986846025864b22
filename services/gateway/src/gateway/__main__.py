from loyalty_shared.service_cli import service_main
from gateway.settings import GatewaySettings


def main() -> None:
    service_main(
        settings_factory=GatewaySettings,
        app_factory="gateway.main:create_app",
        service_dir=None,
        worker_factory=None,
    )


if __name__ == "__main__":
    main()
