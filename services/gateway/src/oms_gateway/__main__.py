"""``python -m oms_gateway``: serves the partner API with uvicorn (graceful on SIGTERM)."""

from __future__ import annotations

import uvicorn
from oms_platform.logging import configure_logging
from oms_platform.telemetry import configure_tracing

from oms_gateway.app import create_app
from oms_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    configure_tracing("gateway")
    app = create_app(settings)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port,
                log_level=settings.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=10,
                # Longer than the idle timeout of the load balancers in front, so they (not
                # we) close idle connections and never reuse one we just closed.
                timeout_keep_alive=75)


if __name__ == "__main__":
    main()
