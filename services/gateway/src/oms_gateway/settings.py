"""Gateway settings from the environment (``OMS_GATEWAY_*``; its database, like every
service's, from ``OMS_DATABASE_URL``), read once at start."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DAY = 24 * 3600.0


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_GATEWAY_", extra="ignore",
                                      populate_by_name=True)

    # The same variables as the gRPC services' (oms_platform.config), so one database Secret
    # and one launcher convention serve every component.
    database_url: str = Field(
        validation_alias="OMS_DATABASE_URL",
        description="SQLAlchemy URL of the gateway's own database (postgresql+psycopg://...)",
    )
    db_pool_size: int = Field(default=10, validation_alias="OMS_DB_POOL_SIZE")
    db_max_overflow: int = Field(default=10, validation_alias="OMS_DB_MAX_OVERFLOW")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    orders_target: str = "127.0.0.1:50051"
    inventory_target: str = Field(
        default="127.0.0.1:50052", description="The inventory service (stock routes)")
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    idempotency_ttl_seconds: float = Field(
        default=DAY, gt=0,
        description="How long a stored answer is replayed for its Idempotency-Key; after it "
        "the key may be used for a new request",
    )
    idempotency_lease_seconds: float = Field(
        default=60.0, gt=0,
        description="How long a key stays in flight without an answer before another request "
        "with it may take over (a gateway that died mid-request); longer than any request",
    )
    idempotency_sweep_interval_seconds: float = Field(
        default=300.0, gt=0, description="How often expired keys are deleted")
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="The largest request body accepted (else 413)")
    jwt_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="The HS256 key that signs and checks OAuth2 access tokens (at least 32 "
        "characters); unset, a random key kept in the gateway's database, shared by replicas",
    )
    access_token_ttl_seconds: int = Field(
        default=900, gt=0, le=3600, description="How long an OAuth2 access token is valid")
    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description='Per partner kind, quotas per replica replacing its default, as JSON: '
        '{"sales_channel": "20/second;600/minute"} (kinds: sales_channel, 3pl, carrier, '
        'payment_provider)',
    )
    partner_rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description='Per partner id, quotas per replica replacing its kind\'s, as JSON: '
        '{"acme-shop": "50/second;3000/minute"}',
    )
    rate_limit_max_partners: int = Field(
        default=10_000, gt=0,
        description="Partners whose spending a replica tracks at once; the least recently "
        "seen are forgotten beyond it",
    )
    csv_import_max_rows: int = Field(
        default=5000, gt=0, description="Rows (order lines) per imported CSV file")
    csv_import_max_orders: int = Field(
        default=500, gt=0, le=500,
        description="Orders per imported CSV file (at most the orders service's batch bound)")
    csv_import_batch_orders: int = Field(
        default=100, gt=0, le=500,
        description="Orders of an import per call to the orders service (each call has the "
        "request timeout to itself)")
    csv_export_max_orders: int = Field(
        default=10_000, gt=0, description="Orders per CSV export; a filter matching more is "
        "refused up front")
    # Webhooks (webhooks/): inbound from carriers and payment providers, outbound to the
    # endpoints partners subscribe.
    nats_url: str | None = Field(
        default=None, validation_alias="OMS_NATS_URL",
        description="Where the domain events are read for outbound webhooks; unset, none are "
        "queued (deliveries already queued still go out)")
    shipping_target: str = Field(default="127.0.0.1:50054",
                                 description="The shipping service, for tracking webhooks")
    inbound_webhook_ttl_seconds: float = Field(
        default=3 * DAY, gt=0, description="How long an inbound webhook id is kept: a copy "
        "posted within it changes nothing (longer than the partners' retries)")
    webhook_max_attempts: int = Field(
        default=12, ge=1, le=50, description="Attempts of one outbound delivery before it is "
        "failed (a replay sends it again)")
    webhook_backoff_base_seconds: float = Field(
        default=60.0, gt=0, description="The wait after a delivery's first failed attempt, "
        "doubling after each next one")
    webhook_backoff_max_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="The longest wait between two attempts")
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long an endpoint has to answer an attempt")
    webhook_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the delivery workers look for due "
        "deliveries (new ones are sent at once by the replica that queued them)")
    webhook_concurrency: int = Field(
        default=16, ge=1, le=256, description="Deliveries sent at once per replica")
    webhook_retention_seconds: float = Field(
        default=7 * DAY, gt=0, description="How long finished deliveries stay in the log")
    webhook_max_pending_per_endpoint: int = Field(
        default=10_000, ge=1, description="Deliveries queued for one endpoint at most; past "
        "it new ones are logged failed (replayable) rather than queued")
    webhook_allow_private_urls: bool = Field(
        default=False, description="Accept endpoint URLs on loopback and private networks "
        "(local runs and tests only)")
    log_level: str = "INFO"
    log_format: str = "json"
