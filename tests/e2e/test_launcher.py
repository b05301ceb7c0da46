"""`make run`'s launcher as a developer runs it: its own PostgreSQL and NATS, every service
as a process. A service that dies is restarted; only SIGTERM (or Ctrl-C) stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from oms_devtools.servers import EmbeddedPostgres
from oms_devtools.testkit import eventually
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e


def serving(endpoint: str) -> bool:
    with grpc.insecure_channel(endpoint) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def postgres_answers(url: str) -> bool:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(libpq, connect_timeout=2) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


class Launcher:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.output = state.parent / "launcher.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "oms_devtools.run", "--state-dir", str(state),
                 "--no-demo"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.children: list[psutil.Process] = []

    def endpoints(self) -> dict[str, Any] | None:
        assert self.process.poll() is None, self.text()
        path = self.state / "endpoints.json"
        return json.loads(path.read_text()) if path.exists() else None

    def child(self, program: str) -> psutil.Process | None:
        """The launcher's live process running `program` (an executable or a module)."""
        for child in psutil.Process(self.process.pid).children():
            try:
                if not gone(child) and any(Path(a).name == program for a in child.cmdline()):
                    self.children.append(child)
                    return child
            except psutil.NoSuchProcess:
                pass
        return None

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "state")
    try:
        yield launcher
    finally:
        if launcher.process.poll() is None:
            launcher.process.send_signal(signal.SIGTERM)
            try:
                launcher.process.wait(30)
            except subprocess.TimeoutExpired:
                launcher.process.kill()
        for child in launcher.children:  # what a failed test may have left behind
            if not gone(child):
                child.kill()
        EmbeddedPostgres(launcher.state / "postgres").stop()


async def test_a_service_that_dies_is_restarted_and_sigterm_stops_everything(
    launcher: Launcher,
) -> None:
    endpoints = await eventually(launcher.endpoints, what="the launcher up", timeout=90)
    nats = launcher.child("nats-server")
    orders = launcher.child("oms_orders")
    assert nats is not None and orders is not None
    postmaster = (launcher.state / "postgres" / "postmaster.pid").read_text().split()[0]

    orders.send_signal(signal.SIGKILL)
    restarted = await eventually(
        lambda: (c := launcher.child("oms_orders")) and c.pid != orders.pid and c,
        what="orders started again", timeout=15)
    await eventually(lambda: serving(endpoints["orders"]), what="orders serving again")

    assert "orders exited (killed by SIGKILL)" in launcher.text()
    assert f"orders restarted (pid {restarted.pid})" in launcher.text()
    assert launcher.process.poll() is None, "the launcher carried on"
    assert not gone(nats), "NATS stayed up"
    assert postgres_answers(endpoints["postgres"]), "PostgreSQL stayed up"
    assert (launcher.state / "postgres" / "postmaster.pid").read_text().split()[0] == postmaster
    for name in ("inventory", "orders"):
        assert serving(endpoints[name]), name

    services = [launcher.child(f"oms_{name}") for name in ("orders", "inventory", "gateway")]
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(60) == 0, launcher.text()
    assert all(p is not None and gone(p) for p in [*services, nats]), launcher.text()
    assert not postgres_answers(endpoints["postgres"]), "PostgreSQL was stopped"
