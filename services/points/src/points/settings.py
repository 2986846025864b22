from decimal import Decimal

from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class PointsSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="POINTS_", extra="ignore")

    service_name: str = "points"
    port: int = 8001
    # points per unit of paid amount, rounded down per order
    earn_rate: Decimal = Decimal("1")
    default_currency: str = "CNY"
    default_timezone: str = "Asia/Shanghai"
