from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore")

    service_name: str = "feedback"
    port: int = 8003
    first_response_hours: float = 24.0
    resolution_hours: float = 48.0
