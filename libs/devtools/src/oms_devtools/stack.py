"""The whole suite as local processes: what ``make run``, the end-to-end tests and the
benchmark start. Each service runs as its own process, configured only through environment
variables, exactly as in its container."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oms_devtools.servers import ensure_database, free_port

GRPC_SERVICES = ("orders", "inventory")


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    endpoint: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

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
        for service in GRPC_SERVICES:
            env = self._env(OMS_DATABASE_URL=self.database_url(service), OMS_NATS_URL=self.nats_url)
            subprocess.run([sys.executable, "-m", f"oms_{service}", "migrate"], env=env, check=True)
            port = free_port()
            self.services[service] = ServiceProcess(
                name=service,
                argv=[sys.executable, "-m", f"oms_{service}"],
                env={**env, "OMS_GRPC_HOST": "127.0.0.1", "OMS_GRPC_PORT": str(port)},
                log_path=self.state_dir / "logs" / f"{service}.log",
                endpoint=f"127.0.0.1:{port}",
            )
        http_port = self.gateway_port or free_port()
        self.services["gateway"] = ServiceProcess(
            name="gateway",
            argv=[sys.executable, "-m", "oms_gateway"],
            env=self._env(
                OMS_GATEWAY_HTTP_PORT=str(http_port),
                OMS_GATEWAY_ORDERS_TARGET=self.services["orders"].endpoint,
                OMS_GATEWAY_LOG_FORMAT="console",
            ),
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

    def endpoints(self) -> dict[str, str]:
        return {name: service.endpoint for name, service in self.services.items()}

    def stop(self) -> None:
        for name in ("gateway", *reversed(GRPC_SERVICES)):
            if name in self.services:
                self.services[name].stop()

    def write_endpoints(self, path: Path, **extra: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.endpoints(), **extra}, indent=2) + "\n")
