"""Organisations (clinics), their staff and the one-time codes that bring staff in.

A staff account (``users.role == clinician``) may belong to several organisations; what it may
do in each is its membership's role there: ``clinician`` (sees the patients linked to it in
that organisation) or ``org_admin`` (manages the organisation's staff, reviews emergency
accesses; sees no patient through that role). The operator (``users.role == admin``) creates
organisations and belongs to none.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    ScalarSelect,
    Select,
    String,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User, create_user, email_key
from models.base import Base, utcnow, uuid_pk
from models.errors import Conflict, NotFound, RuleViolation
from models.passwords import Passwords

STAFF_INVITE_LIFETIME = timedelta(days=7)
# Crockford base32 without look-alikes; 12 characters carry 59 random bits.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_LENGTH = 12
DEFAULT_ORGANISATION_NAME = "Default organisation"


class MemberRole(enum.StrEnum):
    """What a staff member is in one organisation."""

    clinician = "clinician"
    org_admin = "org_admin"


class Organisation(Base):
    """A clinic: its staff, and the care links made through them."""

    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    @property
    def etag(self) -> str:
        """Strong entity tag of the organisation's current version."""
        return f'"{self.version}"'


class Membership(Base):
    """A staff account's place in one organisation."""

    __tablename__ = "memberships"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        UniqueConstraint("user_id", "organisation_id", name="uq_memberships_user_organisation"),
        Index("ix_memberships_organisation_id", "organisation_id", "created_at"),
        CheckConstraint("role IN ('clinician', 'org_admin')", name="role_known"),
    )

    @property
    def etag(self) -> str:
        """Strong entity tag of the membership's current version."""
        return f'"{self.version}"'

    @property
    def active(self) -> bool:
        """Not disabled."""
        return self.disabled_at is None


class StaffInvite(Base):
    """A one-time code that makes its holder a member; stored only as a digest."""

    __tablename__ = "staff_invites"

    id: Mapped[uuid.UUID] = uuid_pk()
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (
        Index("ix_staff_invites_organisation_id", "organisation_id"),
        CheckConstraint("role IN ('clinician', 'org_admin')", name="role_known"),
    )


def active_membership(
    *, user_id: uuid.UUID, organisation_id: uuid.UUID, role: MemberRole | None = None
) -> Select[tuple[Membership]]:
    """The user's live membership of the organisation (with that role, when given)."""
    stmt = select(Membership).where(
        Membership.user_id == user_id,
        Membership.organisation_id == organisation_id,
        Membership.disabled_at.is_(None),
    )
    return stmt if role is None else stmt.where(Membership.role == role.value)


def active_member_count() -> ScalarSelect[int]:
    """The number of active members of the organisation of the enclosing query (a correlated
    count, so a page of organisations is one statement)."""
    return (
        select(func.count())
        .where(Membership.organisation_id == Organisation.id, Membership.disabled_at.is_(None))
        .correlate(Organisation)
        .scalar_subquery()
    )


def clinician_organisations(*, db: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The organisations where the user is an active clinician, oldest membership first."""
    return list(
        db.scalars(
            select(Membership.organisation_id)
            .where(
                Membership.user_id == user_id,
                Membership.role == MemberRole.clinician.value,
                Membership.disabled_at.is_(None),
            )
            .order_by(Membership.created_at, Membership.organisation_id)
        )
    )


def administered_organisations(*, db: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The organisations where the user is an active org admin."""
    return list(
        db.scalars(
            select(Membership.organisation_id).where(
                Membership.user_id == user_id,
                Membership.role == MemberRole.org_admin.value,
                Membership.disabled_at.is_(None),
            )
        )
    )


def create_organisation(*, db: Session, name: str) -> Organisation:
    """A new, empty organisation (flushed)."""
    organisation = Organisation(name=name.strip())
    db.add(organisation)
    db.flush()
    return organisation


def rename_organisation(*, organisation: Organisation, name: str) -> None:
    """Change the name; the version moves on."""
    organisation.name = name.strip()
    organisation.version = Organisation.version + 1


def add_member(
    *, db: Session, user: User, organisation_id: uuid.UUID, role: MemberRole
) -> Membership:
    """Make a staff account a member; 409 when it is one already."""
    if user.role != Role.clinician:
        raise Conflict("Only a staff account can join an organisation.")
    existing = db.scalars(
        select(Membership).where(
            Membership.user_id == user.id, Membership.organisation_id == organisation_id
        )
    ).one_or_none()
    if existing is not None:
        raise Conflict("This account is already a member of the organisation.")
    membership = Membership(user_id=user.id, organisation_id=organisation_id, role=role.value)
    db.add(membership)
    db.flush()
    return membership


def _hash_code(code: str) -> str:
    normalised = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(b"staff:" + normalised.encode()).hexdigest()


def create_staff_invite(
    *,
    db: Session,
    organisation_id: uuid.UUID,
    email: str,
    role: MemberRole,
    created_by: User | None,
    now: datetime,
) -> tuple[StaffInvite, str]:
    """A single-use code for one person (by email) to join as ``role``; shown only once."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    invite = StaffInvite(
        organisation_id=organisation_id,
        email=email.strip(),
        email_key=email_key(email),
        role=role.value,
        code_hash=_hash_code(raw),
        created_by_id=created_by.id if created_by is not None else None,
        created_at=now,
        expires_at=now + STAFF_INVITE_LIFETIME,
    )
    db.add(invite)
    db.flush()
    return invite, "-".join(raw[i : i + 4] for i in range(0, _CODE_LENGTH, 4))


def claim_staff_invite(*, db: Session, code: str, now: datetime) -> StaffInvite:
    """Spend a live code (a conditional UPDATE: two holders racing cannot both win)."""
    invalid = RuleViolation({"code": ["This code is unknown, used or expired."]})
    invite = db.scalars(
        select(StaffInvite).where(StaffInvite.code_hash == _hash_code(code))
    ).one_or_none()
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        raise invalid
    claimed = db.execute(
        update(StaffInvite)
        .where(StaffInvite.id == invite.id, StaffInvite.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise invalid
    return invite


def organisation_admin_count(*, db: Session, organisation_id: uuid.UUID) -> int:
    """Active org admins of the organisation."""
    return (
        db.scalar(
            select(func.count()).where(
                Membership.organisation_id == organisation_id,
                Membership.role == MemberRole.org_admin.value,
                Membership.disabled_at.is_(None),
            )
        )
        or 0
    )


def change_member(
    *,
    db: Session,
    membership: Membership,
    role: MemberRole | None,
    disabled: bool | None,
    now: datetime,
) -> None:
    """Change a member's role or disable/enable them; the last active org admin stays one."""
    demoted = role is not None and role != MemberRole.org_admin
    leaves_admin = membership.role == MemberRole.org_admin.value and (demoted or bool(disabled))
    if leaves_admin and membership.active:
        _keep_an_admin(db=db, organisation_id=membership.organisation_id)
    if role is not None:
        membership.role = role.value
    if disabled is True and membership.disabled_at is None:
        membership.disabled_at = now
    elif disabled is False:
        membership.disabled_at = None
    membership.version = Membership.version + 1


def remove_member(*, db: Session, membership: Membership) -> None:
    """Take a member out of the organisation (the last active org admin stays)."""
    if membership.role == MemberRole.org_admin.value and membership.active:
        _keep_an_admin(db=db, organisation_id=membership.organisation_id)
    db.delete(membership)


def _keep_an_admin(*, db: Session, organisation_id: uuid.UUID) -> None:
    if organisation_admin_count(db=db, organisation_id=organisation_id) <= 1:
        raise Conflict("An organisation keeps at least one active org admin.")


def member_or_404(
    *, db: Session, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Membership, User]:
    """One membership of the organisation with its user, else 404."""
    row = db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organisation_id == organisation_id, Membership.user_id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such member.")
    return row[0], row[1]


def accept_staff_invite(
    *,
    db: Session,
    passwords: Passwords,
    code: str,
    password: str,
    display_name: str | None,
    timezone: str,
    now: datetime,
) -> tuple[Membership, User]:
    """Take up a staff invite: a new staff account for its email, or the existing one.

    The code proves the right to join; an existing account must also give its password.
    """
    invite = claim_staff_invite(db=db, code=code, now=now)
    user = db.scalars(select(User).where(User.email_key == invite.email_key)).one_or_none()
    if user is None:
        if not display_name:
            raise RuleViolation({"display_name": ["A new account needs a display name."]})
        user = create_user(
            db=db,
            passwords=passwords,
            email=invite.email,
            password=password,
            role=Role.clinician,
            display_name=display_name,
            timezone=timezone,
        )
    elif user.role != Role.clinician or user.disabled_at is not None:
        raise Conflict("This email belongs to an account that cannot join an organisation.")
    elif not passwords.verify(user.password_hash, password):
        raise RuleViolation({"password": ["Does not match the password of your account."]})
    membership = add_member(
        db=db, user=user, organisation_id=invite.organisation_id, role=MemberRole(invite.role)
    )
    invite.used_by_id = user.id
    return membership, user


def organisation_for_cli(*, db: Session, name: str | None) -> Organisation:
    """The organisation ``moodtrack users create`` puts staff in: the one of that name (made
    when there is none), else the only one (or a new default one when there is none)."""
    if name is not None:
        found = db.scalars(select(Organisation).where(Organisation.name == name.strip())).first()
        return found or create_organisation(db=db, name=name)
    existing = list(db.scalars(select(Organisation).limit(2)))
    if len(existing) > 1:
        raise RuleViolation({"organisation": ["Several organisations exist: name one."]})
    return existing[0] if existing else create_organisation(db=db, name=DEFAULT_ORGANISATION_NAME)
