"""The shipping service's own settings, from ``OMS_SHIPPING_*`` environment variables. Read
once at start (``app.py``) and handed to the servicer, the handlers and the background tasks;
a test that needs other values builds the service with its own ``ShippingSettings``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShippingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_SHIPPING_", extra="ignore")

    # Rating: with the BEST_VALUE goal a faster quote wins over the cheapest on-time one when
    # each day it saves costs at most this percentage of the cheapest price.
    best_value_day_percent: Decimal = Field(default=Decimal(10), ge=0, le=1000)
    # How long a replica's rate shop trusts its in-memory carriers, origins, cards and rules
    # before checking the rating version again (a change made through the replica itself is
    # seen at once; another replica's within this). 0 checks on every call.
    rating_refresh_seconds: float = Field(default=1.0, ge=0, le=300)

    # --- Labels ---
    # Our shipper number in the UPS 1Z tracking numbers of table-rate labels (6 letters or
    # digits); a karrio carrier's numbers come from the carrier.
    ups_shipper_number: str = Field(default="OMS001", pattern=r"^[0-9A-Z]{6}$")

    # --- tracking ---
    # A parcel on its way with no carrier scan for this many days becomes an exception.
    stale_after_days: int = Field(default=5, ge=1, le=365)
    # How often the no-scan sweep looks, and how many parcels one pass (one transaction)
    # turns into exceptions; passes follow each other while they find a full batch.
    stale_sweep_interval_seconds: float = Field(default=900.0, gt=0)
    stale_batch_size: int = Field(default=200, ge=1, le=500)


# -- carrier_api: real carriers through karrio ---------------------------------------------


class UpsAccount(BaseModel):
    client_id: SecretStr
    client_secret: SecretStr
    account_number: str = ""
    account_country_code: str = ""
    # A sandbox, a recording proxy or an egress gateway instead of the plugin's own host.
    server_url: str = ""


class DhlExpressAccount(BaseModel):
    site_id: SecretStr
    password: SecretStr
    account_number: str = ""
    account_country_code: str = ""
    server_url: str = ""


class RoyalMailAccount(BaseModel):
    client_id: SecretStr
    client_secret: SecretStr
    server_url: str = ""


class KarrioSettings(BaseSettings):
    """Carrier accounts for ``carrier_api``, from ``OMS_SHIPPING_KARRIO_*``: e.g.
    ``OMS_SHIPPING_KARRIO_UPS__CLIENT_ID``, ``OMS_SHIPPING_KARRIO_DHL_EXPRESS__SITE_ID``, or all
    of them as one JSON file (``OMS_SHIPPING_KARRIO_CREDENTIALS_FILE``, a mounted Secret, shaped
    ``{"ups": {"client_id": …}, "dhl_express": {…}, "royalmail": {…}}``); an account in the
    environment wins over the file's. A carrier without an account is not configured. Test mode
    (the carriers' sandboxes) is the default, so nothing real is bought until it is turned off."""

    model_config = SettingsConfigDict(env_prefix="OMS_SHIPPING_KARRIO_",
                                      env_nested_delimiter="__", extra="ignore")

    test_mode: bool = True
    # Per carrier call, from the request leaving to the answer parsed.
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    # Calls in flight per carrier; more wait their turn (within their timeout).
    concurrency: int = Field(default=4, ge=1, le=64)
    credentials_file: Path | None = None
    ups: UpsAccount | None = None
    dhl_express: DhlExpressAccount | None = None
    royalmail: RoyalMailAccount | None = None

    def configured(self, carrier: str) -> bool:
        """Whether the karrio carrier (``ups``, ``dhl_express``, ``royalmail``) has an
        account."""
        return carrier in ("ups", "dhl_express", "royalmail") and \
            getattr(self, carrier) is not None

    @property
    def any_configured(self) -> bool:
        return any(self.configured(name) for name in ("ups", "dhl_express", "royalmail"))

    @model_validator(mode="after")
    def _accounts_from_file(self) -> KarrioSettings:
        if self.credentials_file is None:
            return self
        stored = json.loads(self.credentials_file.read_text())
        for name, model in (("ups", UpsAccount), ("dhl_express", DhlExpressAccount),
                            ("royalmail", RoyalMailAccount)):
            if getattr(self, name) is None and name in stored:
                setattr(self, name, model.model_validate(stored[name]))
        return self
