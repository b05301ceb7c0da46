"""The whole suite as local processes: what ``make run``, the end-to-end tests and the
benchmark start. Each service runs as its own process, configured only through environment
variables, exactly as in its container."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oms_devtools.servers import ensure_database, free_port

GRPC_SERVICES = ("orders", "inventory", "shipping", "fulfilment", "returns")
# The gateway's per-partner rate limits out of the way, for runs that measure or stress what
# lies behind them (the bench, the end-to-end tests); their own tests set them small.
UNTHROTTLED = {"OMS_GATEWAY_RATE_LIMITS": json.dumps(
    dict.fromkeys(("sales_channel", "3pl", "carrier", "payment_provider"), "100000/second"))}


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    endpoint: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the last start

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """Orders, inventory and the gateway against one PostgreSQL server and one NATS."""

    state_dir: Path
    database_server_url: str
    nats_url: str
    database_prefix: str = "oms"
    gateway_port: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def database_url(self, service: str) -> str:
        return ensure_database(self.database_server_url, f"{self.database_prefix}_{service}")

    def _env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
        env.update({"PYTHONUNBUFFERED": "1", "OMS_LOG_FORMAT": "console"}, **self.extra_env)
        env.update(values)
        return env

    def prepare(self) -> None:
        migrations = {}
        for service in GRPC_SERVICES:
            env = self._env(OMS_DATABASE_URL=self.database_url(service), OMS_NATS_URL=self.nats_url)
            # Side by side: each service migrates its own database, and most of a migration's
            # time is the interpreter importing its packages.
            migrations[service] = subprocess.Popen(
                [sys.executable, "-m", f"oms_{service}", "migrate"], env=env)
            port = free_port()
            self.services[service] = ServiceProcess(
                name=service,
                argv=[sys.executable, "-m", f"oms_{service}"],
                env={**env, "OMS_GRPC_HOST": "127.0.0.1", "OMS_GRPC_PORT": str(port)},
                log_path=self.state_dir / "logs" / f"{service}.log",
                endpoint=f"127.0.0.1:{port}",
            )
        # Fulfilment reads nodes and their bins from inventory and buys labels from shipping.
        self.services["fulfilment"].env["OMS_FULFILMENT_INVENTORY_TARGET"] = (
            self.services["inventory"].endpoint)
        self.services["fulfilment"].env["OMS_FULFILMENT_SHIPPING_TARGET"] = (
            self.services["shipping"].endpoint)
        # Returns reads orders (what was delivered) and buys return labels from shipping.
        self.services["returns"].env["OMS_RETURNS_ORDERS_TARGET"] = (
            self.services["orders"].endpoint)
        self.services["returns"].env["OMS_RETURNS_SHIPPING_TARGET"] = (
            self.services["shipping"].endpoint)
        gateway_env = self._env(OMS_DATABASE_URL=self.database_url("gateway"))
        migrations["gateway"] = subprocess.Popen(
            [sys.executable, "-m", "oms_gateway", "migrate"], env=gateway_env)
        failed = [service for service, migration in migrations.items() if migration.wait()]
        if failed:
            raise RuntimeError(f"migrations failed: {', '.join(failed)}")
        http_port = self.gateway_port or free_port()
        self.services["gateway"] = ServiceProcess(
            name="gateway",
            argv=[sys.executable, "-m", "oms_gateway"],
            env={
                **gateway_env,
                "OMS_GATEWAY_HTTP_PORT": str(http_port),
                "OMS_GATEWAY_ORDERS_TARGET": self.services["orders"].endpoint,
                "OMS_GATEWAY_INVENTORY_TARGET": self.services["inventory"].endpoint,
                "OMS_GATEWAY_SHIPPING_TARGET": self.services["shipping"].endpoint,
                "OMS_NATS_URL": self.nats_url,
                # Local receivers of outbound webhooks listen on this machine.
                "OMS_GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
                "OMS_GATEWAY_LOG_FORMAT": "console",
            },
            log_path=self.state_dir / "logs" / "gateway.log",
            endpoint=f"http://127.0.0.1:{http_port}",
        )

    def start(self, timeout: float = 60.0) -> None:
        if not self.services:
            self.prepare()
        for service in self.services.values():
            service.start()
        for name in self.services:
            self.wait_ready(name, timeout)

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        service = self.services[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{name} exited:\n{service.log_tail()}")
            if self._ready(service):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout}s:\n{service.log_tail()}")

    @staticmethod
    def _ready(service: ServiceProcess) -> bool:
        if service.name == "gateway":
            try:
                return httpx.get(f"{service.endpoint}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False
        with grpc.insecure_channel(service.endpoint) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        self.services[name].start()
        self.wait_ready(name, timeout)

    def create_partner(self, partner_id: str, kind: str, *, channels: tuple[str, ...] = (),
                       scopes: tuple[str, ...] = ()) -> str:
        """A gateway partner made as an operator makes one (the gateway's CLI, against its
        database); returns its API key."""
        argv = [sys.executable, "-m", "oms_gateway", "partners", "create", "--id", partner_id,
                "--name", partner_id, "--kind", kind]
        argv += [arg for channel in channels for arg in ("--channel", channel)]
        argv += [arg for scope in scopes for arg in ("--scope", scope)]
        done = subprocess.run(argv, env=self.services["gateway"].env, capture_output=True,
                              text=True, check=True)
        return str(json.loads(done.stdout)["apiKey"])

    def endpoints(self) -> dict[str, str]:
        return {name: service.endpoint for name, service in self.services.items()}

    def stop(self) -> None:
        for name in ("gateway", *reversed(GRPC_SERVICES)):
            if name in self.services:
                self.services[name].stop()

    def write_endpoints(self, path: Path, **extra: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.endpoints(), **extra}, indent=2) + "\n")


@dataclass(frozen=True)
class RestartPolicy:
    """When a service that exited is started again, the way Kubernetes restarts a crashed
    container: the delay doubles with every crash up to a cap, and starts over once the
    service had stayed up for a while (so one crash a day never waits long)."""

    initial_delay: float = 1.0
    max_delay: float = 30.0
    reset_after: float = 60.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.reset_after:
            return self.initial_delay
        return min(previous * 2, self.max_delay)


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


@dataclass
class Supervisor:
    """Keeps every service of a stack running: a service that exits is started again after
    the policy's delay, and said so, while the others (and PostgreSQL and NATS) carry on."""

    stack: Stack
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    say: Callable[[str], None] = _say
    clock: Callable[[], float] = time.monotonic
    _delays: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _due: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def run(self, stopping: threading.Event, poll_seconds: float = 0.5) -> None:
        """Until `stopping` is set; the caller then stops the stack."""
        while not stopping.wait(poll_seconds):
            self.check()

    def check(self) -> None:
        now = self.clock()
        for name, service in self.stack.services.items():
            if name in self._due:
                if now >= self._due[name]:
                    del self._due[name]
                    service.start()
                    assert service.process is not None
                    self.say(f"{name} restarted (pid {service.process.pid})")
            elif not service.alive():
                assert service.process is not None
                uptime = now - service.started_at
                delay = self.policy.next_delay(self._delays.get(name), uptime)
                self._delays[name] = delay
                self._due[name] = now + delay
                self.say(f"{name} exited ({_exit_reason(service.process.returncode)}) after "
                         f"{uptime:.0f}s up; restarting in {delay:g}s; see {service.log_path}")
