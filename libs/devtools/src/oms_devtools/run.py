"""``make run``: PostgreSQL, NATS and every service on this machine, with demo data.

Servers come from ``OMS_DATABASE_URL`` / ``OMS_NATS_URL`` when set; otherwise embedded ones
start from the pip wheels on free ports, with their data under ``.oms/`` so it survives
restarts. A service that exits is started again with a growing delay, as Kubernetes would
restart it, while everything else stays up; Ctrl-C or SIGTERM stops everything, services first.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from oms_devtools import demo
from oms_devtools.servers import EmbeddedNats, EmbeddedPostgres
from oms_devtools.stack import GRPC_SERVICES, Stack, Supervisor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".oms"))
    parser.add_argument("--no-demo", action="store_true", help="skip loading demo data")
    parser.add_argument("--gateway-port", type=int, default=None)
    args = parser.parse_args()
    state: Path = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    postgres = nats = None
    stack: Stack | None = None
    try:
        database_url = os.environ.get("OMS_DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(state / "postgres").start()
            database_url = postgres.url()
        nats_url = os.environ.get("OMS_NATS_URL")
        if not nats_url:
            nats = EmbeddedNats(state / "nats").start()
            nats_url = nats.url
        stack = Stack(state, database_url, nats_url, gateway_port=args.gateway_port,
                      extra_env={} if args.no_demo else {
                          "OMS_RETURNS_RETURN_NODE_ID": demo.RETURNS_NODE})
        stack.start()
        if not args.no_demo:
            demo.load(stack.services["inventory"].endpoint)
            demo.partners(stack.services["gateway"].env, state / "partners.json")
            demo.load_shipping(stack.services["shipping"].endpoint)
            demo.load_fulfilment(stack.services["fulfilment"].endpoint)
            demo.load_returns(stack.services["returns"].endpoint)
        endpoints = stack.endpoints()
        stack.write_endpoints(state / "endpoints.json", postgres=database_url, nats=nats_url)
        print("\nOMS is running:")
        print(f"  gateway (HTTP/JSON)  {endpoints['gateway']}   docs: {endpoints['gateway']}/docs")
        for name in GRPC_SERVICES:
            print(f"  {name:<20} {endpoints[name]} (gRPC, reflection on)")
        print(f"  postgres             {database_url}")
        print(f"  nats                 {nats_url}")
        print(f"  logs                 {state / 'logs'}")
        if not args.no_demo:
            print(f"  demo partners        {state / 'partners.json'} (one of each kind, API "
                  "keys and webhook signing secrets); e.g.\n    curl -H \"Authorization: "
                  "Bearer $(jq -r '.[\"demo-shop\"]"
                  f".apiKey' {state / 'partners.json'})\" {endpoints['gateway']}/v1/orders/ID")
        print(f"  endpoints written to {state / 'endpoints.json'}; Ctrl-C stops everything.\n",
              flush=True)
        Supervisor(stack).run(stopping)
    finally:
        print("stopping OMS...", flush=True)
        if stack is not None:
            stack.stop()
        if nats is not None:
            nats.stop()
        if postgres is not None:
            postgres.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
