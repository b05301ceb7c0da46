"""The gateway's command line::

    python -m oms_gateway [serve]        serve the partner API
    python -m oms_gateway migrate        apply its database migrations
    python -m oms_gateway partners create --id ID --name NAME --kind KIND
                                          [--channel C]... [--carrier C]... [--node N]...
                                          [--scope S]...
    python -m oms_gateway partners list
    python -m oms_gateway partners rotate-key ID [--overlap-hours H]
    python -m oms_gateway partners revoke ID [--key PREFIX]
    python -m oms_gateway partners webhook-secret ID [--overlap-hours H]

``webhook-secret`` issues the secret the partner signs its webhooks with (the old one
valid ``--overlap-hours`` more), printed like a key. ``create`` and ``rotate-key`` print the
new API key once, in a JSON object; it is stored
only as a hash and cannot be shown again. Without ``--scope`` a partner gets its kind's
default scopes. ``list`` prints one JSON object per partner (keys by prefix, never secrets).
Managing partners over gRPC is for a later increment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import uvicorn
from oms_platform.db import create_engine
from oms_platform.logging import configure_logging
from oms_platform.migrations import upgrade
from oms_platform.telemetry import configure_tracing

from oms_gateway.app import MIGRATIONS, create_app
from oms_gateway.partners import store
from oms_gateway.partners.domain import (
    DEFAULT_SCOPES,
    Kind,
    NewKey,
    Partner,
    PartnerError,
    check_partner,
)
from oms_gateway.settings import GatewaySettings
from oms_gateway.webhooks import partner_secrets

KINDS = {kind.value.replace("_", "-"): kind for kind in Kind}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="oms-gateway")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the partner API (the default)")
    commands.add_parser("migrate", help="apply the database migrations")
    partners = commands.add_parser("partners", help="manage partners and their API keys")
    actions = partners.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new partner and its first API key")
    create.add_argument("--id", required=True, help="e.g. shopify-acme")
    create.add_argument("--name", required=True)
    create.add_argument("--kind", required=True, choices=sorted(KINDS))
    create.add_argument("--channel", action="append", default=[],
                        help="a channel id the partner is bound to (repeatable)")
    create.add_argument("--carrier", action="append", default=[],
                        help="a carrier id a carrier partner reports for (repeatable)")
    create.add_argument("--node", action="append", default=[],
                        help="a fulfilment node id a 3PL runs (repeatable)")
    create.add_argument("--scope", action="append", default=None,
                        help="e.g. orders:read (repeatable; default: the kind's)")
    actions.add_parser("list", help="every partner, one JSON object a line")
    rotate = actions.add_parser("rotate-key", help="a new key; the old ones expire later")
    rotate.add_argument("id")
    rotate.add_argument("--overlap-hours", type=float, default=24.0,
                        help="how long the current keys stay valid (default 24; 0: now)")
    revoke = actions.add_parser("revoke", help="revoke the partner, or one of its keys")
    revoke.add_argument("id")
    revoke.add_argument("--key", help="the prefix of the one key to revoke")
    secret = actions.add_parser("webhook-secret", help="a new webhook signing secret")
    secret.add_argument("id")
    secret.add_argument("--overlap-hours", type=float, default=24.0,
                        help="how long the current secrets stay valid (default 24; 0: now)")
    args = parser.parse_args(argv)

    settings = GatewaySettings()  # type: ignore[call-arg]
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
    elif args.command == "partners":
        sys.exit(asyncio.run(_partners(args, settings.database_url)))
    else:
        configure_logging("gateway", settings.log_level, settings.log_format)
        configure_tracing("gateway")
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                    log_level=settings.log_level.lower(), access_log=False,
                    timeout_graceful_shutdown=10,
                    # Longer than the idle timeout of the load balancers in front, so they
                    # (not we) close idle connections and never reuse one we just closed.
                    timeout_keep_alive=75)


def _print(value: dict[str, Any]) -> None:
    print(json.dumps(value, default=str), flush=True)


def _issued(partner_id: str, key: NewKey) -> dict[str, Any]:
    return {"id": partner_id, "keyPrefix": key.prefix, "apiKey": key.secret}


async def _partners(args: argparse.Namespace, database_url: str) -> int:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        if args.action == "create":
            kind = KINDS[args.kind]
            scopes = frozenset(args.scope) if args.scope else DEFAULT_SCOPES[kind]
            try:
                check_partner(args.id, kind, args.name, frozenset(args.channel), scopes,
                              frozenset(args.carrier), frozenset(args.node))
            except PartnerError as error:
                for reason in error.reasons:
                    print(f"error: {reason}", file=sys.stderr)
                return 2
            if await store.get(engine, args.id) is not None:
                print(f"error: partner {args.id} exists", file=sys.stderr)
                return 1
            key = await store.create(engine, Partner(
                partner_id=args.id, kind=kind, name=args.name,
                channels=frozenset(args.channel), scopes=scopes,
                carriers=frozenset(args.carrier), nodes=frozenset(args.node)))
            _print(_issued(args.id, key) | {"kind": kind.value, "scopes": sorted(scopes),
                                           "channels": sorted(args.channel),
                                           "carriers": sorted(args.carrier),
                                           "nodes": sorted(args.node)})
        elif args.action == "list":
            for partner, revoked_at, keys in await store.listing(engine):
                _print({"id": partner.partner_id, "name": partner.name,
                        "kind": partner.kind.value, "channels": sorted(partner.channels),
                        "scopes": sorted(partner.scopes), "carriers": sorted(partner.carriers),
                        "nodes": sorted(partner.nodes), "revokedAt": revoked_at,
                        "keys": [{"prefix": k.prefix, "createdAt": k.created_at,
                                  "expiresAt": k.expires_at, "revokedAt": k.revoked_at}
                                 for k in keys]})
        elif args.action == "rotate-key":
            try:
                key = await store.rotate_key(engine, args.id,
                                             timedelta(hours=max(0.0, args.overlap_hours)))
            except store.UnknownPartner:
                print(f"error: no live partner {args.id}", file=sys.stderr)
                return 1
            _print(_issued(args.id, key))
        elif args.action == "webhook-secret":
            try:
                secret = await partner_secrets.issue(
                    engine, args.id, timedelta(hours=max(0.0, args.overlap_hours)))
            except store.UnknownPartner:
                print(f"error: no live partner {args.id}", file=sys.stderr)
                return 1
            _print({"id": args.id, "webhookSecret": secret})
        else:
            try:
                count = await store.revoke(engine, args.id, args.key)
            except store.UnknownPartner:
                print(f"error: no partner {args.id}", file=sys.stderr)
                return 1
            _print({"id": args.id, "keysRevoked": count})
        return 0
    finally:
        await engine.dispose()
