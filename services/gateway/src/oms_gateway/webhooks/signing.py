"""Standard Webhooks signatures, both ways, with the ``standardwebhooks`` library: an HMAC-
SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` under the secret, sent base64 as
``webhook-signature: v1,<signature>`` (several, space-separated, during a rotation).

Inbound, a timestamp more than five minutes from the gateway's clock is refused before the
signature is looked at (the library's tolerance, the one Standard Webhooks fixes), so a
captured request cannot be replayed later; a stale one is a 400, a bad signature a 401.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"
TOLERANCE = timedelta(minutes=5)
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id", "webhook-timestamp", "webhook-signature")
MAX_ID_LENGTH = 255


def new_secret() -> str:
    """A secret in the Standard Webhooks form: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, webhook_id: str, body: bytes,
                   now: datetime | None = None) -> dict[str, str]:
    """The three headers of an outbound delivery of ``body``."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    signature = Webhook(secret).sign(webhook_id, moment, body.decode())
    return {ID_HEADER: webhook_id, TIMESTAMP_HEADER: str(int(moment.timestamp())),
            SIGNATURE_HEADER: signature}


@dataclass(frozen=True)
class Refusal:
    """Why an inbound webhook is refused: ``status`` 400 (a header missing or malformed, a
    stale timestamp) or 401 (no signature matches); ``field`` names the header."""

    status: int
    field: str
    detail: str


def check(headers: Mapping[str, str], body: bytes, secrets_: Sequence[str]) -> Refusal | None:
    """None when ``body`` is signed under one of the partner's live secrets, else why not.
    Judged by this machine's clock, which the library reads as well."""
    webhook_id = headers.get(ID_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if not 0 < len(webhook_id) <= MAX_ID_LENGTH or not webhook_id.isprintable():
        return Refusal(400, ID_HEADER, f"required: the webhook's id, 1 to {MAX_ID_LENGTH} "
                       "printable characters")
    if not stamp.isdigit():
        return Refusal(400, TIMESTAMP_HEADER, "required: seconds since the Unix epoch")
    # Eleven digits reach the year 5138: anything longer is as stale as can be.
    moment = datetime.fromtimestamp(int(stamp), UTC) if len(stamp) <= 11 else None
    if moment is None or abs(datetime.now(UTC) - moment) > TOLERANCE:
        return Refusal(400, TIMESTAMP_HEADER, "more than 5 minutes from the gateway's clock: "
                       "sign the webhook again when resending it")
    if not headers.get(SIGNATURE_HEADER):
        return Refusal(401, SIGNATURE_HEADER, "required: v1,<base64 HMAC-SHA256>")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return Refusal(400, "", "the body is not UTF-8")
    for secret in secrets_:
        try:
            Webhook(secret).verify(text, dict(headers), json_parse=False)
            return None
        except (WebhookVerificationError, ValueError, binascii.Error):
            continue  # a malformed signature header matches no secret
    return Refusal(401, SIGNATURE_HEADER, "no signature matches a signing secret of the "
                   "partner")
