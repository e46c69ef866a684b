"""Accounts, sessions (refresh-token families) and the actions on them."""

from __future__ import annotations

import enum
import functools
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Enum,
    ForeignKey,
    Index,
    Row,
    Select,
    String,
    Text,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow, uuid_pk
from models.errors import Conflict, InvalidCredentials, RuleViolation, TooManyAttempts
from models.passwords import Passwords, password_problems
from models.throttle import ThrottleKeys, record_failure, record_success, wait_seconds

# Expired deny-list rows a logout deletes on its way (revoke_access_token).
PURGE_BATCH = 100
BAD_LOGIN = "Email or password is incorrect."
TOO_MANY_LOGINS = "Too many failed logins from this address; try again later."


class Role(enum.StrEnum):
    """Who a user is to the service: a patient; a staff account (``clinician``), whose role in
    each organisation is its membership's (models.organisations); or the operator (``admin``),
    who creates organisations and sees no health data."""

    patient = "patient"
    clinician = "clinician"
    admin = "admin"


class User(Base):
    """A person with a login: patient, staff or operator."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased email: uniqueness and lookup are case-insensitive.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, name="user_role", native_enum=False, length=16))
    display_name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    disabled_at: Mapped[datetime | None]

    @property
    def etag(self) -> str:
        """Strong entity tag of the profile's current version."""
        return f'"{self.version}"'

    def bump_version(self) -> None:
        """Mark a change of the profile (login bookkeeping does not count)."""
        self.version = User.version + 1  # in SQL, so concurrent edits both count


class TokenFamily(Base):
    """One login session: the chain of refresh tokens rotated from one login."""

    __tablename__ = "token_families"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_token_families_user_id", "user_id"),)


class RefreshToken(Base):
    """A refresh token, stored only as its SHA-256 digest."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE")
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)


class RevokedAccessToken(Base):
    """An access token revoked before its expiry (logout)."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]

    # The purge deletes by expiry (purge_expired_tokens).
    __table_args__ = (Index("ix_revoked_access_tokens_expires_at", "expires_at"),)


def email_key(email: str) -> str:
    """The case-insensitive form emails are compared by."""
    return email.strip().lower()


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii", "replace")).hexdigest()


def create_user(
    *,
    db: Session,
    passwords: Passwords,
    email: str,
    password: str,
    role: Role,
    display_name: str,
    timezone: str,
) -> User:
    """Create an account after checking the password policy; 409 when the email is taken."""
    problems = password_problems(password, email=email)
    if problems:
        raise RuleViolation({"password": problems})
    user = User(
        email=email.strip(),
        email_key=email_key(email),
        role=role,
        display_name=display_name,
        timezone=timezone,
        password_hash=passwords.hash(password),
    )
    db.add(user)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        raise Conflict("An account with this email already exists.") from None
    return user


def authenticate(
    *,
    db: Session,
    passwords: Passwords,
    email: str,
    password: str,
    throttle: ThrottleKeys,
    now: datetime,
) -> User:
    """Check a login, throttled per (account, address) and per account (models.throttle).

    Unknown emails are counted and answered exactly like existing ones. Commits the failure
    count before raising, so a rejected attempt is never rolled back.
    """
    wait = wait_seconds(db=db, keys=throttle, now=now)
    if wait:
        raise TooManyAttempts(TOO_MANY_LOGINS, retry_after_seconds=wait)
    user = db.scalars(select(User).where(User.email_key == email_key(email))).one_or_none()
    # Verified against a dummy hash when there is no user: the same work either way.
    ok = passwords.verify(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled_at is not None:
        record_failure(db=db, keys=throttle, now=now)
        db.info["audit_outcome"] = "failure"
        db.commit()
        raise InvalidCredentials(BAD_LOGIN)
    record_success(db=db, keys=throttle)
    if passwords.needs_rehash(user.password_hash):
        # Bookkeeping in a plain UPDATE: it is not a profile change, so the ETag stays.
        db.execute(
            update(User)
            .where(User.id == user.id)
            .values(password_hash=passwords.hash(password))
            .execution_options(synchronize_session=False)
        )
    return user


def start_session(*, db: Session, user: User, refresh_ttl: timedelta) -> tuple[TokenFamily, str]:
    """Open a token family for a fresh login and issue its first refresh token."""
    family = TokenFamily(user_id=user.id)
    db.add(family)
    db.flush()
    return family, _issue_refresh_token(db=db, family=family, refresh_ttl=refresh_ttl)


def _issue_refresh_token(*, db: Session, family: TokenFamily, refresh_ttl: timedelta) -> str:
    raw = secrets.token_urlsafe(32)
    db.add(
        RefreshToken(
            family_id=family.id,
            token_hash=_hash_token(raw),
            expires_at=utcnow() + refresh_ttl,
        )
    )
    return raw


def rotate_refresh_token(
    *, db: Session, raw_token: str, now: datetime, refresh_ttl: timedelta
) -> tuple[User, TokenFamily, str]:
    """Trade a live refresh token for a new one in the same family.

    A token that was already rotated means it leaked (or a client replayed it): the
    whole family is revoked and committed before the 401, so the thief's copy dies too.
    """
    row = db.execute(
        select(RefreshToken, TokenFamily, User)
        .join(TokenFamily, TokenFamily.id == RefreshToken.family_id)
        .join(User, User.id == TokenFamily.user_id)
        .where(RefreshToken.token_hash == _hash_token(raw_token))
    ).one_or_none()
    if row is None:
        raise InvalidCredentials("The refresh token is invalid.")
    token, family, user = row
    if family.revoked_at is not None or user.disabled_at is not None:
        raise InvalidCredentials("The refresh token is invalid.")
    if token.rotated_at is not None:
        family.revoked_at = now
        db.info["audit_outcome"] = "failure"
        db.commit()
        raise InvalidCredentials("The refresh token is invalid.")
    if token.expires_at <= now:
        raise InvalidCredentials("The refresh token is invalid.")
    # Conditional update: of two concurrent uses of one token only one wins.
    claimed = db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        family.revoked_at = now
        db.info["audit_outcome"] = "failure"
        db.commit()
        raise InvalidCredentials("The refresh token is invalid.")
    return user, family, _issue_refresh_token(db=db, family=family, refresh_ttl=refresh_ttl)


def revoke_family(*, db: Session, family_id: uuid.UUID, now: datetime) -> None:
    """End one session: its refresh tokens and the access tokens that name it stop working."""
    db.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_other_sessions(
    *, db: Session, user_id: uuid.UUID, keep_family_id: uuid.UUID | None, now: datetime
) -> None:
    """End every session of a user but the one named (used on password change)."""
    stmt = update(TokenFamily).where(
        TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None)
    )
    if keep_family_id is not None:
        stmt = stmt.where(TokenFamily.id != keep_family_id)
    db.execute(stmt.values(revoked_at=now).execution_options(synchronize_session=False))


def revoke_access_token(*, db: Session, jti: str, expires_at: datetime, now: datetime) -> None:
    """Deny one access token until it would have expired anyway.

    Each revocation also deletes a batch of denials whose tokens have expired since: the
    deny list then holds about as many rows as there were logouts in the last access-token
    lifetime, and no logout pays for more than one batch.
    """
    if db.get(RevokedAccessToken, jti) is None:
        db.add(RevokedAccessToken(jti=jti, expires_at=expires_at))
    purge_expired_tokens(db=db, now=now, limit=PURGE_BATCH)


def load_principal(
    *, connection: Connection, user_id: uuid.UUID, family_id: uuid.UUID, jti: str
) -> Row[Any] | None:
    """The profile of the active user behind an access token (``PROFILE_COLUMNS``), or None
    if anything about it is revoked.

    One query: user enabled, session not revoked, token not on the deny list. It runs on
    every authenticated request, so it is a Core query on the request's connection, with no
    Session: a plain row costs a fraction of an ORM object, and most requests need only the
    caller's id and role (views that change the account load the ``User``).
    """
    params = {"user_id": user_id, "family_id": family_id, "jti": jti}
    return connection.execute(_principal_statement(), params).one_or_none()


# What a request knows of its caller without loading the account (never the password hash).
PROFILE_COLUMNS = (
    "id",
    "email",
    "role",
    "display_name",
    "timezone",
    "created_at",
    "version",
    "disabled_at",
)


@functools.cache
def _principal_statement() -> Select[Any]:
    # Built once: every authenticated request runs it, and building it costs more than
    # running it.
    users = User.__table__
    live_family = exists().where(
        TokenFamily.id == bindparam("family_id"),
        TokenFamily.user_id == users.c.id,
        TokenFamily.revoked_at.is_(None),
    )
    revoked = exists().where(RevokedAccessToken.jti == bindparam("jti"))
    return select(*(users.c[name] for name in PROFILE_COLUMNS)).where(
        users.c.id == bindparam("user_id"), users.c.disabled_at.is_(None), live_family, ~revoked
    )


def change_password(
    *,
    db: Session,
    passwords: Passwords,
    user: User,
    current_password: str,
    new_password: str,
    keep_family_id: uuid.UUID,
    now: datetime,
) -> None:
    """Replace the password and end every other session of the user."""
    if not passwords.verify(user.password_hash, current_password):
        raise RuleViolation({"current_password": ["Does not match your current password."]})
    problems = password_problems(new_password, email=user.email)
    if problems:
        raise RuleViolation({"new_password": problems})
    db.execute(
        update(User)
        .where(User.id == user.id)
        .values(password_hash=passwords.hash(new_password))
        .execution_options(synchronize_session=False)
    )
    revoke_other_sessions(db=db, user_id=user.id, keep_family_id=keep_family_id, now=now)


def purge_expired_tokens(*, db: Session, now: datetime, limit: int | None = None) -> int:
    """Delete deny-list rows whose tokens have expired anyway (at most ``limit``); the count."""
    expired = select(RevokedAccessToken.jti).where(RevokedAccessToken.expires_at < now)
    if limit is not None:
        expired = expired.order_by(RevokedAccessToken.expires_at).limit(limit)
    stmt = delete(RevokedAccessToken).where(RevokedAccessToken.jti.in_(expired))
    return db.execute(stmt.execution_options(synchronize_session=False)).rowcount
