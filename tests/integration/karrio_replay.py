"""A local HTTP server that answers as a carrier's API would, from recorded responses.

Each route is (method, path prefix, body must contain) → (status, fixture file); the first
matching route answers. Every request is kept (method, path, headers, body) so a test can
assert what karrio sent. ``hang`` routes accept and never answer, for timeouts; closing the
server lets their connections go."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "karrio"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    fixture: str | None
    status: int = 200
    body_contains: str = ""
    content_type: str = "application/json"
    hang: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class CarrierReplay:
    carrier: str
    routes: list[Route]
    received: list[Received] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> CarrierReplay:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                replay.received.append(Received(self.command, self.path, headers, body))
                route = next((r for r in replay.routes
                              if r.method == self.command and self.path.startswith(r.path)
                              and r.body_contains in body), None)
                if route is None:
                    self.send_error(404, f"no recorded answer for {self.command} {self.path}")
                    return
                if route.hang:
                    replay._release.wait()
                    return
                payload = (FIXTURES / replay.carrier / route.fixture).read_bytes() \
                    if route.fixture else b""
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(path)]
