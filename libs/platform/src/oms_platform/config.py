"""Settings every service reads from its environment (``OMS_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oms_platform.bus import STREAM_MAX_AGE_SECONDS, STREAM_MAX_BYTES


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    database_url: str = Field(
        description="SQLAlchemy URL of this service's own database (postgresql+psycopg://...)"
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s)")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    db_pool_size: int = 20
    db_max_overflow: int = 20
    shutdown_grace_seconds: float = 10.0
    health_check_interval_seconds: float = 2.0
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    outbox_batch_size: int = 500
    outbox_max_in_flight: int = 256
    outbox_retention_hours: float = 24.0
    # Unexplained publish failures of one row before it is set aside (see outbox.py): with
    # the relay's backoff, about 25 s in which a recreated stream or an election can recover.
    outbox_max_attempts: int = Field(default=10, ge=1)
    # The streams' limits (see bus.py): the suite's, the same for every service.
    stream_max_age_seconds: float = Field(default=STREAM_MAX_AGE_SECONDS, gt=0)
    stream_max_bytes: int = Field(default=STREAM_MAX_BYTES, gt=0)
    consumer_batch_size: int = 128
    consumer_concurrency: int = 32
    consumer_max_deliver: int = 8
    # Signs page tokens; unset, a key kept in the service's database (see pagination.py).
    page_token_key: SecretStr | None = Field(default=None, min_length=32)

    @field_validator("page_token_key", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value
