"""Outgoing email (sign-up confirmations), sent off the request path.

``MOODTRACK_SMTP_URL`` names the relay: ``smtp://host:25`` (plain, for a local relay),
``smtp+starttls://user:password@host:587`` or ``smtps://user:password@host:465``. Without one
(development only) each message is written to ``instance/outbox/`` as an .eml file.

Messages are queued and sent by one background thread per process: a request never waits on
the relay, so how long sign-up takes says nothing about which message it queued (one to a new
address, another to an existing account), and a slow relay cannot hold a worker. A message
the relay refuses is logged (never its address or content) and dropped: the person signs up
again for a new code.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import smtplib
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("moodtrack")
SCHEMES = ("smtp", "smtp+starttls", "smtps")
# How the sign-up message words its code (api.resources.accounts).
SIGNUP_CODE = re.compile(r"code is ([A-Z0-9]{4}-[A-Z0-9]{4})")
TIMEOUT_SECONDS = 10


class MailConfigError(ValueError):
    """MOODTRACK_SMTP_URL is not a URL this module can send through."""


@dataclass(frozen=True)
class Relay:
    """Where and how to hand messages over."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> Relay:
    """``smtp://``, ``smtp+starttls://`` or ``smtps://`` with optional user:password@."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise MailConfigError("MOODTRACK_SMTP_URL must be smtp://, smtp+starttls:// or smtps://")
    default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise MailConfigError("MOODTRACK_SMTP_URL has an invalid port") from None
    return Relay(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Mailer:
    """Queues messages and sends them from a background thread."""

    def __init__(self, *, url: str | None, sender: str, outbox: Path) -> None:
        self._relay = parse_smtp_url(url) if url else None
        self._sender = sender
        self._outbox = outbox
        self._queue: queue.Queue[EmailMessage] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def send(self, *, to: str, subject: str, body: str) -> None:
        """Queue one plain-text message; returns at once."""
        self._queue.put(build_message(sender=self._sender, to=to, subject=subject, body=body))
        self._ensure_worker()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message has been handled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="mailer", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                self._deliver(message)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("mail not sent", extra={"fields": {"exception": type(exc).__name__}})
            finally:
                self._queue.task_done()

    def _deliver(self, message: EmailMessage) -> None:
        if self._relay is None:
            self._outbox.mkdir(parents=True, exist_ok=True)
            path = self._outbox / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
            # Written aside and renamed in one step: a reader globbing *.eml (the
            # developer, a test) never opens a half-written message.
            partial = path.with_suffix(".partial")
            partial.write_bytes(bytes(message))
            os.replace(partial, path)
            return
        send_message(self._relay, message, timeout=TIMEOUT_SECONDS)


def build_message(*, sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """One plain-text message with the headers relays expect."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="moodtrack")
    message.set_content(body)
    return message


@cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context: loading the CA store costs about 50 ms of CPU,
    too much to pay per message. Shared by the mail threads: smtplib only wraps sockets with it
    and never changes it (unlike httpcore, see api.delivery.senders)."""
    return ssl.create_default_context()


def send_message(relay: Relay, message: EmailMessage, *, timeout: float) -> None:
    """Hand one message to the relay now (raises OSError or SMTPException on failure)."""
    if relay.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            relay.host, relay.port, timeout=timeout, context=tls_context()
        )
    else:
        client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
    with client:
        if relay.scheme == "smtp+starttls":
            client.starttls(context=tls_context())
        if relay.username:
            client.login(relay.username, relay.password or "")
        client.send_message(message)


class MemoryMailer:
    """Keeps messages in memory instead of sending them (in-process benchmarks and fuzzing,
    which read sign-up codes back)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, *, to: str, subject: str, body: str) -> None:
        """Keep one message."""
        self.sent.append((to, subject, body))

    def flush(self, timeout: float = 0.0) -> bool:
        """Nothing is ever pending."""
        return True

    def code_for(self, to: str) -> str:
        """The sign-up code of the latest message to ``to``."""
        for recipient, _subject, body in reversed(self.sent):
            found = SIGNUP_CODE.search(body)
            if recipient.lower() == to.lower() and found:
                return found.group(1)
        raise LookupError("no sign-up code was sent to this address")
