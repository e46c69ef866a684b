"""The two ways out: a signed HTTP request to a webhook, an email over SMTP.

Each send returns an Outcome (never raises for a failure of the other side) holding a
status code or a short error name, never a response body.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import anyio
import httpx
from standardwebhooks import Webhook as Signer

from api.mail import build_message, parse_smtp_url, send_message
from models.delivery import Outcome

USER_AGENT = "moodtrack-webhooks/1"


def sign(*, secrets: tuple[str, ...], event_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one v1 signature per secret, space-separated."""
    text = body.decode()
    return " ".join(
        Signer(secret).sign(msg_id=event_id, timestamp=timestamp, data=text) for secret in secrets
    )


async def _is_private_destination(url: str) -> bool:
    """Whether a URL's host is, or resolves to, a loopback, private or link-local address."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await anyio.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # unresolvable: the request fails on its own
    return any(not ipaddress.ip_address(info[4][0]).is_global for info in infos)


class WebhookSender:
    """Signed POSTs (Standard Webhooks) that end by a deadline, whatever the receiver does
    (a receiver that trickles its answer a byte at a time is cut off too); redirects are not
    followed and the receiver's body is never read."""

    def __init__(self, *, timeout: float, allow_private_networks: bool) -> None:
        self.timeout = timeout
        self.allow_private_networks = allow_private_networks
        # One TLS context per sender thread, built on its first send: loading the CA bundle
        # costs about 50 ms of CPU, which a client built per send paid each time (it capped
        # a worker at some 20 deliveries a second). Not one for all threads: httpcore sets
        # the context's ALPN protocols on every connection, a change another thread's
        # handshake could be reading.
        self._local = threading.local()

    def send(
        self, *, url: str, secrets: tuple[str, ...], event_id: str, body: bytes, now: datetime
    ) -> Outcome:
        """POST ``body``; a 2xx answer within the deadline is a delivery, anything else a
        failed attempt."""
        started = time.perf_counter()
        try:
            status = anyio.run(self._post, url, secrets, event_id, body)
        except TimeoutError:
            return _outcome(now, started, error="timeout")
        except httpx.HTTPError as exc:
            return _outcome(now, started, error=type(exc).__name__)
        except PermissionError as refused:
            return _outcome(now, started, error=str(refused))
        ok = 200 <= status < 300
        return _outcome(now, started, status=status, error=None if ok else f"HTTP {status}")

    @property
    def tls(self) -> ssl.SSLContext:
        """This thread's TLS context."""
        context: ssl.SSLContext | None = getattr(self._local, "tls", None)
        if context is None:
            context = self._local.tls = httpx.create_ssl_context()
        return context

    async def _post(self, url: str, secrets: tuple[str, ...], event_id: str, body: bytes) -> int:
        # One deadline over name lookup, connection, request and answer.
        with anyio.fail_after(self.timeout):
            if not self.allow_private_networks and await _is_private_destination(url):
                raise PermissionError("destination not allowed (private network)")
            # The wall clock, not the worker's ``now`` (which a test may drive): receivers
            # compare the signed timestamp with their own clock to refuse replays.
            sent_at = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": event_id,
                "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": sign(
                    secrets=secrets, event_id=event_id, timestamp=sent_at, body=body
                ),
            }
            async with (
                httpx.AsyncClient(
                    timeout=self.timeout, follow_redirects=False, verify=self.tls
                ) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                return response.status_code


class EmailSender:
    """Plain-text email through the relay of MOODTRACK_SMTP_URL (api.mail), sent now: the
    worker records each attempt and retries by the schedule like a webhook's."""

    def __init__(self, *, smtp_url: str, mail_from: str, timeout: float) -> None:
        self.relay = parse_smtp_url(smtp_url)
        self.mail_from = mail_from
        self.timeout = timeout

    def send(self, *, to: str, subject: str, text: str, now: datetime) -> Outcome:
        """Send one message; a refusal or a dropped connection is a failed attempt."""
        started = time.perf_counter()
        message = build_message(sender=self.mail_from, to=to, subject=subject, body=text)
        try:
            send_message(self.relay, message, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            return _outcome(now, started, error=type(exc).__name__)
        return _outcome(now, started)


def _outcome(
    now: datetime, started: float, *, status: int | None = None, error: str | None = None
) -> Outcome:
    return Outcome(
        ok=error is None,
        started_at=now,
        duration_ms=int((time.perf_counter() - started) * 1000),
        response_status=status,
        error=error[:200] if error else None,
    )
