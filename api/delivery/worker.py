"""``moodtrack worker``: expands outbox events into deliveries and sends them.

One process runs a main thread and a few sender threads:
- main: fans out new events, runs the periodic jobs under a lease (escalations, endpoints
  that fail for a day, reminders, old history), records a heartbeat, and sleeps until
  PostgreSQL notifies a new event (LISTEN) or the poll interval passes (SQLite);
- senders: each claims one due delivery at a time (a lease, committed), sends it outside
  any transaction within a deadline, records the outcome.
Any number of workers may run against one database; see models.delivery for why each
delivery goes to one of them at a time and why a killed worker loses nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.config import Settings
from api.db import make_engine, make_session_factory
from api.delivery.messages import email_text, webhook_body
from api.delivery.senders import EmailSender, WebhookSender
from models.alerts import escalate_overdue_alerts
from models.base import utcnow
from models.delivery import (
    Channel,
    Claimed,
    Outcome,
    Routing,
    claim_deliveries,
    disable_failing_webhooks,
    fan_out,
    purge_history,
    record_outcome,
)
from models.events import NOTIFY_CHANNEL
from models.reminders import schedule_reminders
from models.workers import beat, forget_worker, take_job_lease

log = logging.getLogger("moodtrack")
T = TypeVar("T")

JOB_INTERVAL = timedelta(seconds=15)
REMINDER_INTERVAL = timedelta(seconds=60)
HEARTBEAT_INTERVAL = timedelta(seconds=5)
# Events whose deliveries are all done are deleted after this (ids and times only; the
# audit trail is the record of who saw what).
DELIVERY_HISTORY = timedelta(days=90)


@dataclass
class JobsRun:
    """What one run of the periodic jobs did."""

    escalated: int = 0
    disabled: int = 0
    reminded: int = 0
    purged: int = 0


class DeliveryWorker:
    """The delivery loop; its steps take ``now`` so tests can drive time."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine | None = None,
        session_factory: sessionmaker[Session] | None = None,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.delivery = settings.delivery
        self.engine = engine or make_engine(settings.database_url, writer=True)
        self.sessions = session_factory or make_session_factory(self.engine)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.routing = Routing(
            email_enabled=bool(settings.smtp_url),
            escalation_addresses=self.delivery.escalation_emails,
        )
        self.webhooks = WebhookSender(
            timeout=self.delivery.webhook_timeout_seconds,
            allow_private_networks=self.delivery.allow_private_networks,
        )
        self.mailer = (
            EmailSender(
                smtp_url=settings.smtp_url,
                mail_from=settings.mail_from,
                timeout=self.delivery.webhook_timeout_seconds,
            )
            if settings.smtp_url
            else None
        )
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.started_at = utcnow()
        self._last_reminders: datetime | None = None

    # ------------------------------------------------------------------ steps

    def fan_out(self, now: datetime) -> int:
        """Expand waiting events into deliveries (one batch); returns how many events."""
        with self.sessions() as db:
            count = fan_out(db=db, now=now, routing=self.routing)
            db.commit()
        return count

    def run_jobs(self, now: datetime, *, reminders: bool = True) -> JobsRun:
        """Escalations, failing endpoints, old history and reminders, if this worker holds
        the scheduler lease; each job commits on its own (reminders page by page, so
        SQLite's write lock is never held for a whole walk)."""
        done = JobsRun()
        with self.sessions() as db:
            held = take_job_lease(
                db=db, name="scheduler", holder=self.name, now=now, ttl=JOB_INTERVAL * 4
            )
            db.commit()
            if not held:
                return done
            done.escalated = escalate_overdue_alerts(
                db=db, now=now, after=self.delivery.escalation_after
            )
            db.commit()
            done.disabled = disable_failing_webhooks(
                db=db, now=now, after=self.delivery.disable_after
            )
            db.commit()
            done.purged = purge_history(db=db, now=now, keep=DELIVERY_HISTORY)
            db.commit()
            after = None
            while reminders:
                emitted, after = schedule_reminders(
                    db=db, now=now, policy=self.delivery.reminders, after=after
                )
                db.commit()
                done.reminded += emitted
                if after is None:
                    break
        return done

    def deliver(self, now: datetime, *, limit: int = 1) -> int:
        """Claim up to ``limit`` due deliveries, send them, record each; returns how many."""
        with self.sessions() as db:
            claimed = claim_deliveries(
                db=db, now=now, worker=self.name, lease=self.delivery.lease, limit=limit
            )
            db.commit()
        for item in claimed:
            outcome = self._send(item, now)
            with self.sessions() as db:
                status = record_outcome(
                    db=db,
                    claimed=item,
                    outcome=outcome,
                    worker=self.name,
                    now=now + timedelta(milliseconds=outcome.duration_ms),
                    schedule=self.delivery.retry_schedule,
                )
                db.commit()
            if not outcome.ok:
                log.warning(
                    "delivery attempt failed",
                    extra={
                        "fields": {
                            "delivery_id": str(item.delivery_id),
                            "channel": item.channel,
                            "attempt": item.attempts + 1,
                            "error": outcome.error,
                            "status": status,
                        }
                    },
                )
        return len(claimed)

    def drain(self, now: datetime) -> int:
        """Fan out and deliver until nothing is due at ``now`` (tests and benchmarks)."""
        sent = 0
        while self.fan_out(now):
            pass
        while batch := self.deliver(now, limit=20):
            sent += batch
        return sent

    def _send(self, item: Claimed, now: datetime) -> Outcome:
        public_url = self.delivery.public_url
        if item.channel == Channel.webhook and item.url is not None:
            return self.webhooks.send(
                url=item.url,
                secrets=item.secrets,
                event_id=str(item.event_id),
                body=webhook_body(item, public_url),
                now=now,
            )
        if item.channel == Channel.email and self.mailer is not None and item.email:
            subject, text = email_text(item, public_url)
            return self.mailer.send(to=item.email, subject=subject, text=text, now=now)
        # Email turned off since the fan-out, or a recipient without an address.
        return Outcome(ok=False, started_at=now, duration_ms=0, error="no way to send")

    # ------------------------------------------------------------------ the loop

    def run(self, *, exit_with_parent: bool = False) -> None:
        """Deliver until SIGTERM or SIGINT (or, if asked, until the parent process exits)."""
        parent = os.getppid()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())
        senders = [
            threading.Thread(target=self._sender_loop, name=f"sender-{i}", daemon=True)
            for i in range(self.delivery.worker_threads)
        ]
        for thread in senders:
            thread.start()
        log.info("worker started", extra={"fields": {"worker": self.name}})
        listener: psycopg.Connection[Any] | None = None
        last_beat = last_jobs = self.started_at - JOB_INTERVAL
        try:
            while not self.stopping.is_set():
                if exit_with_parent and os.getppid() != parent:
                    break
                now = utcnow()
                if now - last_beat >= HEARTBEAT_INTERVAL:
                    self._safely(self._beat, now)
                    last_beat = now
                if now - last_jobs >= JOB_INTERVAL:
                    self._safely(self._jobs, now)
                    last_jobs = now
                if self._safely(self.fan_out, now):
                    self._notify()
                    continue
                listener = listener or self._listener()
                if not self._wait(listener):
                    listener = None  # the database went away: listen again later
        finally:
            self.stop()
            for thread in senders:
                thread.join(timeout=self.delivery.webhook_timeout_seconds + 5)
            self._safely(self._forget, utcnow())
            if listener is not None:
                listener.close()
            log.info("worker stopped", extra={"fields": {"worker": self.name}})

    def stop(self) -> None:
        """Ask every thread to finish its current delivery and stop."""
        self.stopping.set()
        self._notify()

    def _sender_loop(self) -> None:
        while not self.stopping.is_set():
            if not self._safely(self.deliver, utcnow()):
                with self.wake:
                    self.wake.wait(timeout=self.delivery.poll_seconds)

    def _notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def _jobs(self, now: datetime) -> int:
        due = self._last_reminders is None or now - self._last_reminders >= REMINDER_INTERVAL
        done = self.run_jobs(now, reminders=due)
        if due:
            self._last_reminders = now
        if done.escalated or done.disabled or done.reminded:
            self._notify()
        return done.escalated + done.disabled + done.reminded

    def _beat(self, now: datetime) -> int:
        with self.sessions() as db:
            beat(db=db, name=self.name, started_at=self.started_at, now=now)
            db.commit()
        return 1

    def _forget(self, _now: datetime) -> int:
        with self.sessions() as db:
            forget_worker(db=db, name=self.name)
            db.commit()
        return 1

    def _listener(self) -> psycopg.Connection[Any] | None:
        """A PostgreSQL connection LISTENing for new events; None on SQLite or when the
        database cannot be reached (polling covers it)."""
        url = self.settings.database_url
        if not url.startswith("postgresql"):
            return None
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            return None
        return connection

    def _wait(self, listener: psycopg.Connection[Any] | None) -> bool:
        """Sleep until notified or the poll interval passes; False when the listener broke."""
        timeout = self.delivery.poll_seconds
        if listener is None:
            self.stopping.wait(timeout)
            return True
        try:
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            listener.close()
            self.stopping.wait(timeout)
            return False
        return True

    def _safely(self, step: Callable[[datetime], T], now: datetime) -> T | int:
        """Run one step; a failure (the database restarting, say) is logged, not fatal."""
        try:
            return step(now)
        except Exception as exc:  # the loop must outlive any one failure
            log.error(
                "worker step failed",
                extra={
                    "fields": {
                        "step": getattr(step, "__name__", "?"),
                        "error": type(exc).__name__,
                    }
                },
            )
            self.stopping.wait(self.delivery.poll_seconds)
            return 0


def run_worker(settings: Settings, *, exit_with_parent: bool = False) -> int:
    """Entry point of ``moodtrack worker``."""
    worker = DeliveryWorker(settings=settings)
    try:
        worker.run(exit_with_parent=exit_with_parent)
    finally:
        worker.engine.dispose()
    return 0
