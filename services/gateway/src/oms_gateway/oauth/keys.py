"""Where the token signing key comes from (settings, a key file, or the process itself)."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from oms_gateway.oauth.domain import MIN_SECRET_BYTES, new_secret
from oms_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)


def signing_secret(settings: GatewaySettings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.jwt_secret_file is not None:
        return _from_file(settings.jwt_secret_file)
    log.warning("no OMS_GATEWAY_JWT_SECRET or _FILE: access tokens are signed with a key of "
                "this process and are valid on it alone")
    return new_secret()


def _from_file(path: Path) -> str:
    if not path.exists():
        # Written aside, then linked into place (which fails if it exists): of two processes
        # starting at once, one key wins and neither reads a half-written file.
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_secret() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: the key must be at least {MIN_SECRET_BYTES} characters")
    return secret
