"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1, a free port) that keeps what it
receives, and helpers to wait for a message and read a sign-up code from it."""

from __future__ import annotations

import email
import socket
import threading
import time
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from api.mail import SIGNUP_CODE

CODE = SIGNUP_CODE


class _Keeper:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(([r.lower() for r in envelope.rcpt_tos], message))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailSink:
    """aiosmtpd in a thread of this process; ``url`` is its MOODTRACK_SMTP_URL."""

    def __init__(self) -> None:
        self._keeper = _Keeper()
        self._controller = Controller(self._keeper, hostname="127.0.0.1", port=_free_port())

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self._controller.port}"

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def count(self, to: str) -> int:
        with self._keeper.lock:
            return sum(to.lower() in rcpts for rcpts, _ in self._keeper.messages)

    def wait_for(self, to: str, *, after: int = 0, timeout: float = 10.0) -> Message:
        """The (after+1)-th message to ``to``, polling with a deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._keeper.lock:
                mine = [m for rcpts, m in self._keeper.messages if to.lower() in rcpts]
            if len(mine) > after:
                return mine[after]
            time.sleep(0.005)
        raise AssertionError(f"no message to {to} within {timeout} s")


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(message.get_payload())


def code_in(message: Message) -> str | None:
    found = CODE.search(body_of(message))
    return found.group(1) if found else None
