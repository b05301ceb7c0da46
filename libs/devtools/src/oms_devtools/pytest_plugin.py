"""Pytest fixtures giving real PostgreSQL and NATS JetStream servers.

Each server comes from, in order: an explicit URL in the environment (`OMS_TEST_DATABASE_URL`,
`OMS_TEST_NATS_URL`), a testcontainer when a Docker engine answers, or the embedded server from
the pip wheels. The embedded path needs nothing installed, so tests run on a fresh machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from oms_devtools.servers import (
    EmbeddedNats,
    EmbeddedPostgres,
    docker_available,
    drop_database,
    ensure_database,
)

DATABASE_URL_ENV = "OMS_TEST_DATABASE_URL"
NATS_URL_ENV = "OMS_TEST_NATS_URL"


def pytest_configure(config: pytest.Config) -> None:
    """As root, each session gets a temporary directory of its own. The embedded PostgreSQL
    runs as an unprivileged user and needs every directory above its data traversable; pytest
    resets its shared ``/tmp/pytest-of-root`` to 0700 whenever another session starts, which
    would break a server being initialised in a session running beside it."""
    if os.name == "posix" and os.geteuid() == 0 and config.option.basetemp is None:
        basetemp = tempfile.mkdtemp(prefix="oms-pytest-")
        config.option.basetemp = basetemp
        config.add_cleanup(lambda: shutil.rmtree(basetemp, ignore_errors=True))


@dataclass(frozen=True)
class _PostgresBackend:
    url: str
    embedded: EmbeddedPostgres | None


@pytest.fixture(scope="session")
def _postgres_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_PostgresBackend]:
    explicit = os.environ.get(DATABASE_URL_ENV)
    if explicit:
        url = make_url(explicit).set(drivername="postgresql+psycopg")
        yield _PostgresBackend(url.render_as_string(hide_password=False), None)
    elif docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver="psycopg") as container:
            url = make_url(container.get_connection_url()).set(database="postgres")
            yield _PostgresBackend(url.render_as_string(hide_password=False), None)
    else:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data", durable=False)
        with server:
            yield _PostgresBackend(server.url(), server)


@pytest.fixture(scope="session")
def postgres_server_url(_postgres_backend: _PostgresBackend) -> str:
    """SQLAlchemy URL (`postgresql+psycopg://`) of the test server's maintenance database."""
    return _postgres_backend.url


@pytest.fixture(scope="session")
def embedded_postgres(_postgres_backend: _PostgresBackend) -> EmbeddedPostgres | None:
    """The embedded server behind `postgres_server_url`, or None if it is external/Docker."""
    return _postgres_backend.embedded


@pytest.fixture(scope="session")
def database_factory(postgres_server_url: str) -> Iterator[Callable[[str], str]]:
    """`(prefix) -> url`: a fresh, uniquely named database on the test server."""
    created: list[str] = []

    def create(prefix: str) -> str:
        # PostgreSQL silently truncates identifiers beyond 63 bytes.
        name = f"{prefix[:48]}_{secrets.token_hex(6)}".lower()
        created.append(name)
        return ensure_database(postgres_server_url, name)

    yield create
    # Matters only for an external server; embedded and container clusters are thrown away.
    if os.environ.get(DATABASE_URL_ENV):
        for name in created:
            try:
                drop_database(postgres_server_url, name)
            except Exception:
                pass


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a NATS server with JetStream enabled, one per test module.

    Streams and durable consumers are named after the services, so two modules that each
    run a service would otherwise share (and split) one durable consumer's messages.
    """
    explicit = os.environ.get(NATS_URL_ENV)
    if explicit:
        yield explicit
    elif docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.10", jetstream=True) as container:
            yield container.nats_uri()
    else:
        with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
            yield server.url


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of the test's own, which it may stop, restart or kill."""
    server = EmbeddedNats(tmp_path / "nats")
    with server:
        yield server
