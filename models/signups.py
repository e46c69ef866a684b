"""Self sign-up with email confirmation, answering alike whether or not the email has an account.

``start_signup`` does the same work for every well-formed request: check the password policy,
hash the password (argon2id), store a pending sign-up with a fresh code, and say which message
to send. Only the message differs: a new address gets a code; an address with an account gets
a note that it already has one (and no code). The response, its status and its timing do not
differ, so sign-up tells nobody who uses the service.

``confirm_signup`` creates the account. It needs the code (proof of the mailbox) and the
password chosen at sign-up (proof of being the person who signed up): someone who signs up
with another person's address cannot finish it, and the address's owner cannot be tricked into
finishing a sign-up whose password someone else chose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, String, Text, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User, email_key
from models.base import Base, uuid_pk
from models.errors import Conflict, RuleViolation
from models.passwords import Passwords, password_problems

SIGNUP_LIFETIME = timedelta(hours=24)
MAX_ATTEMPTS = 5
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_LENGTH = 8
INVALID_CODE = "This code is unknown, used or expired."


class Signup(Base):
    """A sign-up waiting for its code; one per email (the latest sign-up wins)."""

    __tablename__ = "signups"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (Index("ix_signups_expires_at", "expires_at"),)


@dataclass(frozen=True)
class Notice:
    """The message a sign-up sends: a code for a new address, else a note."""

    to: str
    code: str | None


def _hash_code(code: str) -> str:
    normalised = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(b"signup:" + normalised.encode()).hexdigest()


def start_signup(
    *,
    db: Session,
    passwords: Passwords,
    email: str,
    password: str,
    display_name: str,
    timezone: str,
    now: datetime,
) -> Notice:
    """Store a pending sign-up (flushed); returns the message to send. Same work either way."""
    problems = password_problems(password, email=email)
    if problems:
        raise RuleViolation({"password": problems})
    key = email_key(email)
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    values = {
        "email": email.strip(),
        "password_hash": passwords.hash(password),
        "display_name": display_name,
        "timezone": timezone,
        "code_hash": _hash_code(code),
        "attempts": 0,
        "created_at": now,
        "expires_at": now + SIGNUP_LIFETIME,
    }
    # Expired sign-ups go; then one upsert: a repeat sign-up replaces the pending one.
    db.execute(delete(Signup).where(Signup.expires_at <= now))
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.execute(
        insert(Signup)
        .values(id=uuid.uuid4(), email_key=key, **values)
        .on_conflict_do_update(index_elements=[Signup.email_key], set_=values)
    )
    exists = db.scalar(select(User.id).where(User.email_key == key)) is not None
    return Notice(to=email.strip(), code=None if exists else f"{code[:4]}-{code[4:]}")


def confirm_signup(
    *, db: Session, passwords: Passwords, email: str, code: str, password: str, now: datetime
) -> User:
    """Create the account of a pending sign-up; 422 on ``code`` for anything but a live
    sign-up with this code (five wrong codes void it), 422 on ``password`` when it is not
    the one chosen at sign-up."""
    invalid = RuleViolation({"code": [INVALID_CODE]})
    signup = db.scalars(select(Signup).where(Signup.email_key == email_key(email))).one_or_none()
    if signup is None or signup.expires_at <= now or signup.attempts >= MAX_ATTEMPTS:
        raise invalid
    if not hmac.compare_digest(signup.code_hash, _hash_code(code)):
        db.execute(
            update(Signup)
            .where(Signup.id == signup.id)
            .values(attempts=Signup.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        db.commit()  # the count must survive the 422
        raise invalid
    if not passwords.verify(signup.password_hash, password):
        raise RuleViolation({"password": ["Does not match the password you signed up with."]})
    # The hash made at sign-up is the account's: no second argon2 run.
    user = User(
        email=signup.email,
        email_key=signup.email_key,
        role=Role.patient,
        display_name=signup.display_name,
        timezone=signup.timezone,
        password_hash=signup.password_hash,
    )
    db.add(user)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        # Only the mailbox's owner gets this far; telling them is no leak.
        raise Conflict("An account with this email already exists; log in.") from None
    db.delete(signup)
    return user
