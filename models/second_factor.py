"""Two-factor sign-in: TOTP (RFC 6238) with one-time recovery codes.

The TOTP seed is stored encrypted (models.secretbox), bound to its user. A code is accepted for
the time-step before, at or after now (clock drift), and only for a step later than the last
one accepted: a code seen once cannot be replayed, not even within its 30 seconds. Recovery
codes carry 50 random bits each and are stored as argon2id hashes with cheap parameters
(RECOVERY_CODE_ARGON2): cost is what protects a low-entropy password from an offline search;
for 2^50 candidates per code even a 1 ms hash is centuries of work, while a check tries up to
ten hashes and must stay quick.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
from sqlalchemy import (
    BigInteger,
    Exists,
    ForeignKey,
    Index,
    String,
    Text,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import User, revoke_other_sessions
from models.base import Base, utcnow, uuid_pk
from models.errors import Conflict, InvalidCredentials, RuleViolation
from models.passwords import Argon2Params, Passwords
from models.secretbox import SecretBox

ISSUER = "moodtrack"
STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
RECOVERY_CODE_ARGON2 = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_RECOVERY_LENGTH = 10
BAD_CODE = "The code is not valid."


class SecondFactor(Base):
    """A user's TOTP seed (encrypted); in force once confirmed with a first code."""

    __tablename__ = "second_factors"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    # The latest time-step (Unix time // 30) a code was accepted for.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A one-time code for when the authenticator is lost; stored only as a hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)


@dataclass(frozen=True)
class Enrolment:
    """What an authenticator app needs: the seed, and the otpauth:// URI that carries it."""

    secret: str
    otpauth_uri: str


def _context(user_id: uuid.UUID) -> bytes:
    return b"totp:" + user_id.bytes


def second_factor_on(user_id: Any) -> Exists:
    """EXISTS: the user (an id or a correlated column) has a confirmed second factor."""
    return exists().where(SecondFactor.user_id == user_id, SecondFactor.confirmed_at.is_not(None))


def has_second_factor(*, db: Session, user_id: uuid.UUID) -> bool:
    """True when the user has a confirmed second factor."""
    return bool(db.scalar(select(second_factor_on(user_id))))


def begin_enrolment(
    *, db: Session, box: SecretBox, passwords: Passwords, user: User, password: str
) -> Enrolment:
    """A new seed for the user (replacing an unconfirmed one); 409 when 2FA is already on."""
    if not passwords.verify(user.password_hash, password):
        raise RuleViolation({"password": ["Does not match your password."]})
    current = db.get(SecondFactor, user.id)
    if current is not None and current.confirmed_at is not None:
        raise Conflict("Two-factor sign-in is already on; turn it off first.")
    secret = pyotp.random_base32()
    sealed = box.encrypt(secret.encode(), context=_context(user.id))
    if current is None:
        db.add(SecondFactor(user_id=user.id, secret=sealed))
    else:
        current.secret, current.created_at, current.last_used_step = sealed, utcnow(), None
    db.flush()
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user.email, issuer_name=ISSUER
    )
    return Enrolment(secret=secret, otpauth_uri=uri)


def confirm_enrolment(
    *, db: Session, box: SecretBox, hasher: Passwords, user: User, code: str, now: datetime
) -> list[str]:
    """Turn 2FA on with a first code; returns the ten recovery codes (shown only this once)."""
    factor = db.get(SecondFactor, user.id)
    if factor is None:
        raise Conflict("Start with POST /api/v1/auth/2fa/enrol.")
    if factor.confirmed_at is not None:
        raise Conflict("Two-factor sign-in is already on.")
    if not _accept_totp(db=db, box=box, factor=factor, code=code, now=now):
        raise RuleViolation({"code": [BAD_CODE]})
    factor.confirmed_at = now
    return _new_recovery_codes(db=db, hasher=hasher, user_id=user.id)


def _new_recovery_codes(*, db: Session, hasher: Passwords, user_id: uuid.UUID) -> list[str]:
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        db.add(RecoveryCode(user_id=user_id, code_hash=hasher.hash(raw)))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.flush()
    return codes


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _accept_totp(
    *, db: Session, box: SecretBox, factor: SecondFactor, code: str, now: datetime
) -> bool:
    """Accept a TOTP code once: the matching step must be later than the last accepted."""
    code = _normalise(code)
    if len(code) != DIGITS or not code.isdigit():
        return False
    seed = box.decrypt(factor.secret, context=_context(factor.user_id))
    if not box.is_current(factor.secret):
        # Encrypted with a key that is being rotated out: move it to the active key.
        factor.secret = box.encrypt(seed, context=_context(factor.user_id))
    totp = pyotp.TOTP(seed.decode(), digits=DIGITS, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    last = factor.last_used_step if factor.last_used_step is not None else -1
    for step in (current - 1, current, current + 1):
        if step > last and hmac.compare_digest(totp.generate_otp(step), code):
            # Conditional: of two requests with the same code, one wins.
            won = db.execute(
                update(SecondFactor)
                .where(
                    SecondFactor.user_id == factor.user_id,
                    (SecondFactor.last_used_step.is_(None)) | (SecondFactor.last_used_step < step),
                )
                .values(last_used_step=step)
                .execution_options(synchronize_session=False)
            ).rowcount
            factor.last_used_step = step
            return won == 1
    return False


def _accept_recovery_code(
    *, db: Session, hasher: Passwords, user_id: uuid.UUID, code: str, now: datetime
) -> bool:
    code = _normalise(code)
    if len(code) != _RECOVERY_LENGTH:
        return False
    unused = db.execute(
        select(RecoveryCode.id, RecoveryCode.code_hash).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
    ).all()
    for code_id, code_hash in unused:
        if hasher.verify(code_hash, code):
            return (
                db.execute(
                    update(RecoveryCode)
                    .where(RecoveryCode.id == code_id, RecoveryCode.used_at.is_(None))
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )
    return False


def check_second_factor(
    *, db: Session, box: SecretBox, hasher: Passwords, user_id: uuid.UUID, code: str, now: datetime
) -> str:
    """Accept a TOTP code or an unused recovery code; returns which ("totp", "recovery").

    401 for anything else, including a code already used.
    """
    factor = db.get(SecondFactor, user_id)
    if factor is None or factor.confirmed_at is None:
        raise InvalidCredentials(BAD_CODE)
    if _accept_totp(db=db, box=box, factor=factor, code=code, now=now):
        return "totp"
    if _accept_recovery_code(db=db, hasher=hasher, user_id=user_id, code=code, now=now):
        return "recovery"
    raise InvalidCredentials(BAD_CODE)


def disable_second_factor(
    *,
    db: Session,
    box: SecretBox,
    passwords: Passwords,
    hasher: Passwords,
    user: User,
    password: str,
    code: str,
    now: datetime,
) -> None:
    """Turn 2FA off with the password and a code (TOTP or recovery)."""
    if not has_second_factor(db=db, user_id=user.id):
        raise Conflict("Two-factor sign-in is not on.")
    if not passwords.verify(user.password_hash, password):
        raise RuleViolation({"password": ["Does not match your password."]})
    try:
        check_second_factor(db=db, box=box, hasher=hasher, user_id=user.id, code=code, now=now)
    except InvalidCredentials:
        raise RuleViolation({"code": [BAD_CODE]}) from None
    remove_second_factor(db=db, user_id=user.id)


def remove_second_factor(*, db: Session, user_id: uuid.UUID) -> None:
    """Delete the seed and the recovery codes."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    db.execute(delete(SecondFactor).where(SecondFactor.user_id == user_id))


def reset_second_factor(*, db: Session, user_id: uuid.UUID, now: datetime) -> None:
    """An org admin's reset: 2FA off and every session of the member ended."""
    remove_second_factor(db=db, user_id=user_id)
    revoke_other_sessions(db=db, user_id=user_id, keep_family_id=None, now=now)
