"""Gateway settings from the environment (``OMS_GATEWAY_*``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_GATEWAY_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    orders_target: str = "127.0.0.1:50051"
    request_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"
