"""Login throttling that slows guessing without letting anyone lock the owner out.

Failures are counted per (account, client address) and per account, by keyed digests of the
email (``MOODTRACK_SIGNING_KEYS``-derived) and the address, whether or not the email has an
account: the answers for an unknown email and an existing one are the same at every stage.

- One address, one account: ``PAIR_THRESHOLD`` wrong passwords in a row, then that address
  waits (30 s, doubling with each further failure, at most an hour) for that account only.
  A right password from the address clears its count.
- One account, all addresses: when the account has collected ``UNDER_ATTACK`` failures within
  ``ACCOUNT_WINDOW``, every address gets only ``UNDER_ATTACK_THRESHOLD`` tries before its own
  wait starts. This slows a guesser spread over many addresses; it never refuses an address
  that has not failed itself, so the owner's right password from their own address still
  passes, whatever an attacker elsewhere does.
Per address across accounts, the limiter (api/limits.py) caps logins further.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base

PAIR_THRESHOLD = 10
UNDER_ATTACK = 20
UNDER_ATTACK_THRESHOLD = 3
ACCOUNT_WINDOW = timedelta(hours=1)
BASE_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600


class LoginThrottle(Base):
    """Failure count of one (account, address) pair or of one account, by keyed digest."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


@dataclass(frozen=True)
class ThrottleKeys:
    """The digests one login attempt is counted under."""

    pair: str
    account: str


def throttle_keys(*, secret: bytes, email_key: str, address: str) -> ThrottleKeys:
    """Keyed digests: neither emails nor addresses are stored in the clear."""

    def digest(text: str) -> str:
        return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    return ThrottleKeys(
        pair=digest(f"pair|{email_key}|{address}"), account=digest(f"account|{email_key}")
    )


def wait_seconds(*, db: Session, keys: ThrottleKeys, now: datetime) -> int:
    """Seconds this address must still wait before trying this account again (0: none)."""
    locked = db.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.key == keys.pair))
    if locked is None or locked <= now:
        return 0
    return max(1, int((locked - now).total_seconds() + 0.999))


def _upsert_failure(db: Session, key: str, now: datetime, *, window: timedelta | None) -> int:
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(LoginThrottle).values(key=key, failures=1, last_failure_at=now)
    table = LoginThrottle.__table__
    count = table.c.failures + 1
    if window is not None:
        # An account's count covers one window: an old run of failures does not add up.
        count = case((table.c.last_failure_at <= now - window, 1), else_=count)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginThrottle.key], set_={"failures": count, "last_failure_at": now}
    ).returning(LoginThrottle.failures)
    return int(db.execute(stmt).scalar_one())


def record_failure(*, db: Session, keys: ThrottleKeys, now: datetime) -> None:
    """Count a failed login (atomically, so concurrent failures all count) and start the
    address's wait once it has used its tries."""
    account_failures = _upsert_failure(db, keys.account, now, window=ACCOUNT_WINDOW)
    pair_failures = _upsert_failure(db, keys.pair, now, window=None)
    threshold = UNDER_ATTACK_THRESHOLD if account_failures >= UNDER_ATTACK else PAIR_THRESHOLD
    if pair_failures >= threshold:
        doublings = min(pair_failures - threshold, 12)
        delay = min(BASE_DELAY_SECONDS * 2**doublings, MAX_DELAY_SECONDS)
        db.execute(
            LoginThrottle.__table__.update()
            .where(LoginThrottle.key == keys.pair)
            .values(locked_until=now + timedelta(seconds=delay))
        )


def record_success(*, db: Session, keys: ThrottleKeys) -> None:
    """A right password clears its address's count (the account's runs out with its window)."""
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == keys.pair))


def purge_stale(*, db: Session, now: datetime) -> int:
    """Drop counts with no failure for a day and no running wait; returns how many."""
    cutoff = now - timedelta(days=1)
    return db.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < cutoff,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
        )
    ).rowcount
