from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class SegmentationSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore")

    service_name: str = "segmentation"
    port: int = 8002
