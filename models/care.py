"""The care team: invite codes and the links that let a clinician see a patient."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Select,
    String,
    and_,
    exists,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User
from models.base import Base, utcnow, uuid_pk
from models.errors import Conflict, Forbidden, NotFound, RuleViolation
from models.organisations import MemberRole, Membership, clinician_organisations

INVITE_LIFETIME = timedelta(days=7)
# Crockford base32 without look-alikes; 10 characters carry 50 random bits.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_LENGTH = 10


class Invite(Base):
    """A one-time code a clinician hands a patient; stored only as a digest."""

    __tablename__ = "invites"

    id: Mapped[uuid.UUID] = uuid_pk()
    clinician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The organisation the link will belong to.
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (Index("ix_invites_clinician_id", "clinician_id"),)


class CareLink(Base):
    """A clinician's right to see one patient, from creation until ended."""

    __tablename__ = "care_links"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    clinician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The clinic the patient is cared for in: the clinician sees the patient only while an
    # active clinician of it.
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ended_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (
        # At most one live link per pair; ended links stay as history.
        Index(
            "uq_care_links_active_pair",
            "patient_id",
            "clinician_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_care_links_clinician_id", "clinician_id", "created_at"),
        Index("ix_care_links_organisation_patient", "organisation_id", "patient_id"),
    )


def normalise_code(code: str) -> str:
    """Codes are typed by people: ignore case, spaces and dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _hash_code(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def invite_organisation(
    *, db: Session, clinician: User, organisation_id: uuid.UUID | None
) -> uuid.UUID:
    """The organisation an invite is for: the one named, or the clinician's only one.

    403 for a staff account that is nobody's clinician; 422 when the one named is not theirs
    or when they work in several and named none.
    """
    mine = clinician_organisations(db=db, user_id=clinician.id)
    if not mine:
        raise Forbidden("You are not a clinician of any organisation.")
    if organisation_id is None:
        if len(mine) > 1:
            raise RuleViolation(
                {"organisation_id": ["You work in several organisations: name one."]}
            )
        return mine[0]
    if organisation_id not in mine:
        raise RuleViolation(
            {"organisation_id": ["Not an organisation where you work as a clinician."]}
        )
    return organisation_id


def create_invite(
    *, db: Session, clinician: User, organisation_id: uuid.UUID, now: datetime
) -> tuple[Invite, str]:
    """A new single-use code for this clinician; the plain code is returned only once."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    invite = Invite(
        clinician_id=clinician.id,
        organisation_id=organisation_id,
        code_hash=_hash_code(raw),
        created_at=now,
        expires_at=now + INVITE_LIFETIME,
    )
    db.add(invite)
    db.flush()
    return invite, f"{raw[:5]}-{raw[5:]}"


def accept_invite(*, db: Session, patient: User, code: str, now: datetime) -> CareLink:
    """Link the patient to the clinician who issued the code; the code is then spent."""
    invalid = RuleViolation({"code": ["This code is unknown, used or expired."]})
    invite = db.scalars(select(Invite).where(Invite.code_hash == _hash_code(code))).one_or_none()
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        raise invalid
    # Conditional update: two patients racing for one code cannot both win.
    claimed = db.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.used_at.is_(None))
        .values(used_at=now, used_by_id=patient.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise invalid
    existing = db.scalars(
        select(CareLink).where(
            CareLink.patient_id == patient.id,
            CareLink.clinician_id == invite.clinician_id,
            CareLink.ended_at.is_(None),
        )
    ).one_or_none()
    if existing is not None:
        raise Conflict("You are already linked to this clinician.")
    link = CareLink(
        patient_id=patient.id,
        clinician_id=invite.clinician_id,
        organisation_id=invite.organisation_id,
        created_at=now,
    )
    db.add(link)
    db.flush()
    return link


def active_clinician_in_link_organisation() -> ColumnElement[bool]:
    """The link's clinician is an active clinician of the link's organisation (correlated)."""
    return exists().where(
        Membership.user_id == CareLink.clinician_id,
        Membership.organisation_id == CareLink.organisation_id,
        Membership.role == MemberRole.clinician.value,
        Membership.disabled_at.is_(None),
    )


def visible_link(
    clinician_id: uuid.UUID | Any, *, organisation_id: uuid.UUID | None = None
) -> ColumnElement[bool]:
    """The CareLink rows through which this clinician sees a patient: live, and in an
    organisation (the one given, else any) where the clinician is an active clinician.

    The one rule of organisation scoping: the cohort, the alerts inbox and a patient's record
    all filter by it (join CareLink on the patient, then ``where(visible_link(...))``).
    """
    condition = and_(
        CareLink.clinician_id == clinician_id,
        CareLink.ended_at.is_(None),
        active_clinician_in_link_organisation(),
    )
    if organisation_id is not None:
        condition = and_(condition, CareLink.organisation_id == organisation_id)
    return condition


def patients_visible_to(
    *, clinician_id: uuid.UUID, organisation_id: uuid.UUID | None = None
) -> Select[tuple[uuid.UUID, uuid.UUID]]:
    """(patient id, organisation id) of every patient the clinician sees through a care link,
    in one organisation or in all of theirs."""
    return select(CareLink.patient_id, CareLink.organisation_id).where(
        visible_link(clinician_id, organisation_id=organisation_id)
    )


def links_of(user: User) -> Select[tuple[CareLink]]:
    """Live links the user is a party to (a clinician: those they see through), newest first."""
    if user.role == Role.patient:
        condition = and_(CareLink.patient_id == user.id, CareLink.ended_at.is_(None))
    else:
        condition = visible_link(user.id)
    return (
        select(CareLink).where(condition).order_by(CareLink.created_at.desc(), CareLink.id.desc())
    )


def end_link(*, db: Session, user: User, link_id: uuid.UUID, now: datetime) -> None:
    """End a live link the user is a party to; 404 for anyone else's."""
    party = CareLink.patient_id == user.id if user.role == Role.patient else visible_link(user.id)
    link = db.scalars(
        select(CareLink).where(CareLink.id == link_id, CareLink.ended_at.is_(None), party)
    ).one_or_none()
    if link is None:
        raise NotFound("No such care link.")
    link.ended_at = now
    link.ended_by_id = user.id


def end_clinician_links(
    *,
    db: Session,
    organisation_id: uuid.UUID,
    clinician_id: uuid.UUID,
    ended_by_id: uuid.UUID,
    now: datetime,
) -> None:
    """End the clinician's live links in one organisation (they left it)."""
    db.execute(
        update(CareLink)
        .where(
            CareLink.organisation_id == organisation_id,
            CareLink.clinician_id == clinician_id,
            CareLink.ended_at.is_(None),
        )
        .values(ended_at=now, ended_by_id=ended_by_id)
        .execution_options(synchronize_session=False)
    )
