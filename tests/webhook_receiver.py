"""A real HTTP webhook receiver on 127.0.0.1 for tests and the delivery benchmark.

Every request's signature is verified with the `standardwebhooks` package (the receiving
side of the specification); a request that fails verification is recorded as rejected and
answered 401. ``mode`` makes it misbehave: "ok", "fail" (500), "slow" (answers after
``slow_seconds``), "hold" (answers only once ``release`` is set), "trickle" (sends its
answer a byte every 0.1 s: no single read waits long, the whole answer takes seconds),
"redirect" (307 to ``redirect_to``).
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request that verified: its headers, parsed body and arrival time."""

    webhook_id: str
    timestamp: str
    signature: str
    body: dict[str, Any]
    arrived: float  # time.time()


@dataclass
class Receiver:
    """The server and what it saw; start() binds a free port unless ``port`` is given."""

    secrets: list[str] = field(default_factory=list)
    mode: str = "ok"
    slow_seconds: float = 2.0
    redirect_to: str = ""
    delay_seconds: float = 0.0
    port: int = 0
    # Serve https with this context (bench.topology: production refuses http endpoints).
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests += 1
                receiver.arrived.set()
                if receiver.mode == "trickle":
                    receiver._trickle(self)
                    return
                if receiver.mode == "redirect":
                    self.send_response(307)
                    self.send_header("location", receiver.redirect_to)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                status = receiver._answer(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _trickle(self, handler: BaseHTTPRequestHandler) -> None:
        answer = b"HTTP/1.1 204 No Content\r\nx-padding: " + b"." * 40 + b"\r\n\r\n"
        try:
            for byte in answer:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the sender gave up: what the test wants

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        if self.mode == "hold":
            self.release.wait(timeout=120)
        elif self.mode == "slow":
            time.sleep(self.slow_seconds)
        elif self.mode == "fail":
            return 500
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        parsed = self._verify(headers, body)
        if parsed is None:
            with self.lock:
                self.rejected += 1
            return 401
        lower = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            self.received.append(
                Received(
                    webhook_id=lower["webhook-id"],
                    timestamp=lower["webhook-timestamp"],
                    signature=lower["webhook-signature"],
                    body=parsed,
                    arrived=time.time(),
                )
            )
        return 204

    def _verify(self, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
        return None

    def ids(self) -> list[str]:
        with self.lock:
            return [r.webhook_id for r in self.received]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Poll until ``count`` verified requests arrived (no fixed sleeps in tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return True
            time.sleep(0.02)
        return False
