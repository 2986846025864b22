from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000
    points_url: str = "http://127.0.0.1:8001"
    segmentation_url: str = "http://127.0.0.1:8002"
    feedback_url: str = "http://127.0.0.1:8003"
    upstream_timeout_seconds: float = 10.0
    upstream_connect_timeout_seconds: float = 2.0
    upstream_max_connections: int = 200
    openapi_cache_seconds: float = 30.0

    def upstreams(self) -> dict[str, str]:
        return {
            "points": self.points_url.rstrip("/"),
            "segmentation": self.segmentation_url.rstrip("/"),
            "feedback": self.feedback_url.rstrip("/"),
        }
