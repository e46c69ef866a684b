"""Emergency access ("break-glass"): a clinician of an organisation a patient is cared for in,
not linked to that patient, opens the patient's record for a stated reason and a limited time.

The grant is recorded here with its reason (this table is part of the audit trail: the reason
is shown to the organisation's admins who review it, and nowhere else); every request made
under it is audited as emergency access; it ends by itself at ``expires_at``, or earlier when
the clinician leaves the organisation or the patient's last link there ends.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Index, Select, Text, exists, select, update
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from models.accounts import User
from models.base import Base, utcnow, uuid_pk
from models.care import CareLink, visible_link
from models.errors import Conflict, NotFound, RuleViolation
from models.organisations import MemberRole, Membership, clinician_organisations


class EmergencyAccess(Base):
    """One break-glass opening of a patient's record."""

    __tablename__ = "emergency_accesses"

    id: Mapped[uuid.UUID] = uuid_pk()
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    clinician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Free text: never logged, never in a response but the org admins' review list.
    reason: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (
        Index(
            "ix_emergency_accesses_patient_clinician", "patient_id", "clinician_id", "expires_at"
        ),
        Index("ix_emergency_accesses_organisation", "organisation_id", "started_at"),
    )


def _patient_linked_in(organisation_id: Any, patient_id: Any) -> ColumnElement[bool]:
    return exists().where(
        CareLink.patient_id == patient_id,
        CareLink.organisation_id == organisation_id,
        CareLink.ended_at.is_(None),
    )


def live_emergency_access(clinician_id: Any, patient_id: Any, now: Any) -> ColumnElement[bool]:
    """EXISTS: an unexpired grant of this clinician on this patient, in an organisation where
    the clinician is still an active clinician and the patient still has a live link."""
    return exists().where(
        EmergencyAccess.clinician_id == clinician_id,
        EmergencyAccess.patient_id == patient_id,
        EmergencyAccess.expires_at > now,
        _patient_linked_in(EmergencyAccess.organisation_id, patient_id),
        exists().where(
            Membership.user_id == clinician_id,
            Membership.organisation_id == EmergencyAccess.organisation_id,
            Membership.role == MemberRole.clinician.value,
            Membership.disabled_at.is_(None),
        ),
    )


def open_emergency_access(
    *,
    db: Session,
    clinician: User,
    patient_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
    reason: str,
    duration: timedelta,
    now: datetime,
) -> EmergencyAccess:
    """Open the record of a patient of one of the clinician's organisations.

    404 unless the patient has a live care link in an organisation where the caller is an
    active clinician (the one named, when named); 409 when the caller sees the patient
    already (a link, or a grant still running); 422 when several organisations qualify and
    none is named.
    """
    mine = clinician_organisations(db=db, user_id=clinician.id)
    candidates = list(
        db.scalars(
            select(CareLink.organisation_id)
            .where(
                CareLink.patient_id == patient_id,
                CareLink.ended_at.is_(None),
                CareLink.organisation_id.in_(mine),
            )
            .distinct()
        )
    )
    if organisation_id is not None:
        candidates = [o for o in candidates if o == organisation_id]
    if not candidates:
        raise NotFound("The requested resource was not found.")
    if len(candidates) > 1:
        raise RuleViolation(
            {"organisation_id": ["The patient is cared for in several of your organisations."]}
        )
    linked = select(CareLink.id).where(
        CareLink.patient_id == patient_id, visible_link(clinician.id)
    )
    running = select(live_emergency_access(clinician.id, patient_id, now))
    if db.scalar(linked.limit(1)) is not None or db.scalar(running):
        raise Conflict("You can already see this patient.")
    grant = EmergencyAccess(
        organisation_id=candidates[0],
        clinician_id=clinician.id,
        patient_id=patient_id,
        reason=reason,
        started_at=now,
        expires_at=now + duration,
    )
    db.add(grant)
    db.flush()
    return grant


def review_list(
    *, organisation_id: uuid.UUID, reviewed: bool | None
) -> Select[tuple[EmergencyAccess, str, str]]:
    """The organisation's grants with the patient's and the clinician's names, newest first."""
    patient, clinician = aliased(User), aliased(User)
    stmt = (
        select(EmergencyAccess, patient.display_name, clinician.display_name)
        .join(patient, patient.id == EmergencyAccess.patient_id)
        .join(clinician, clinician.id == EmergencyAccess.clinician_id)
        .where(EmergencyAccess.organisation_id == organisation_id)
        .order_by(EmergencyAccess.started_at.desc(), EmergencyAccess.id.desc())
    )
    if reviewed is True:
        stmt = stmt.where(EmergencyAccess.reviewed_at.is_not(None))
    elif reviewed is False:
        stmt = stmt.where(EmergencyAccess.reviewed_at.is_(None))
    return stmt


def mark_reviewed(
    *, db: Session, organisation_id: uuid.UUID, access_id: uuid.UUID, reviewer: User, now: datetime
) -> tuple[EmergencyAccess, str, str]:
    """An org admin marks a grant of their organisation reviewed, once (409 the second time)."""
    row = db.execute(
        review_list(organisation_id=organisation_id, reviewed=None).where(
            EmergencyAccess.id == access_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound("No such emergency access.")
    grant = row[0]
    claimed = db.execute(
        update(EmergencyAccess)
        .where(EmergencyAccess.id == grant.id, EmergencyAccess.reviewed_at.is_(None))
        .values(reviewed_at=now, reviewed_by_id=reviewer.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise Conflict("This emergency access has already been reviewed.")
    grant.reviewed_at, grant.reviewed_by_id = now, reviewer.id
    return grant, row[1], row[2]
