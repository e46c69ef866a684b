"""Ketamine and esketamine treatment sessions, their monitoring and their numbering."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow
from models.errors import NotFound
from models.records import (
    ClientRecord,
    IdempotentRecord,
    fingerprint,
    insert_once,
    utc_offset_minutes,
)


class SessionStatus(enum.StrEnum):
    """Where a session stands; only scheduled sessions change status."""

    scheduled = "scheduled"
    completed = "completed"
    cancelled = "cancelled"


class Drug(enum.StrEnum):
    """Racemic ketamine (off-label) or esketamine (Spravato)."""

    ketamine = "ketamine"
    esketamine = "esketamine"


class Route(enum.StrEnum):
    """How the drug was given."""

    iv = "iv"
    im = "im"
    subcutaneous = "subcutaneous"
    intranasal = "intranasal"
    oral = "oral"
    sublingual = "sublingual"


class Setting(enum.StrEnum):
    """Where the session happened."""

    clinic = "clinic"
    home = "home"


ALLOWED_TRANSITIONS = {
    SessionStatus.scheduled: {
        SessionStatus.scheduled,
        SessionStatus.completed,
        SessionStatus.cancelled,
    },
    SessionStatus.completed: {SessionStatus.completed},
    SessionStatus.cancelled: {SessionStatus.cancelled},
}
# Spravato comes in 28 mg devices; a session uses 56 or 84 mg (28 mg is allowed as a single
# device, e.g. a titration or an interrupted dose).
ESKETAMINE_DOSES_MG = (28.0, 56.0, 84.0)

# Usual racemic-ketamine ranges in mg/kg by route: a clinical choice (clinical.md §4 gives
# 0.1-0.75 IV and ~2-2.5 oral); doses outside are flagged, never refused.
USUAL_MG_PER_KG: dict[Route, tuple[float, float]] = {
    Route.iv: (0.1, 0.75),
    Route.im: (0.1, 1.0),
    Route.subcutaneous: (0.1, 1.0),
    Route.intranasal: (0.2, 1.5),
    Route.oral: (0.5, 3.0),
    Route.sublingual: (0.5, 3.0),
}

# Monitoring (esketamine REMS, applied to every session as good practice): blood pressure
# before dosing, around the 40-minute peak and before discharge; esketamine needs 2 h.
PRE_DOSE_BP_WINDOW = timedelta(hours=2)
BP_40_MIN_WINDOW = (timedelta(minutes=25), timedelta(minutes=60))
PRE_DISCHARGE_BP_WINDOW = timedelta(minutes=30)
ESKETAMINE_MIN_OBSERVATION = timedelta(hours=2)


class TreatmentSession(ClientRecord, Base):
    """One dosing session (scheduled, completed or cancelled)."""

    __tablename__ = "treatment_sessions"

    status: Mapped[SessionStatus] = mapped_column(
        Enum(SessionStatus, name="session_status", native_enum=False, length=16)
    )
    started_at: Mapped[datetime]
    utc_offset_minutes: Mapped[int]
    ended_at: Mapped[datetime | None]
    discharged_at: Mapped[datetime | None]
    drug: Mapped[Drug] = mapped_column(
        Enum(Drug, name="session_drug", native_enum=False, length=16)
    )
    route: Mapped[Route] = mapped_column(
        Enum(Route, name="session_route", native_enum=False, length=16)
    )
    dose_mg: Mapped[float | None] = mapped_column(Float)
    weight_kg: Mapped[float | None] = mapped_column(Float)
    setting: Mapped[Setting] = mapped_column(
        Enum(Setting, name="session_setting", native_enum=False, length=16)
    )
    concomitant_medications: Mapped[list[str]] = mapped_column(JSON, default=list)
    adverse_events: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("patient_id", "idempotency_key"),
        Index("ix_treatment_sessions_patient_start", "patient_id", "started_at"),
        CheckConstraint("dose_mg IS NULL OR dose_mg > 0", name="dose_positive"),
        CheckConstraint("weight_kg IS NULL OR weight_kg BETWEEN 20 AND 350", name="weight_range"),
    )

    @property
    def dose_mg_per_kg(self) -> float | None:
        """Dose per kilogram of the weight recorded with the session."""
        if self.dose_mg is None or self.weight_kg is None:
            return None
        return round(self.dose_mg / self.weight_kg, 4)


class Observation(IdempotentRecord, Base):
    """Vital signs and ratings taken during a session; created once per client id or
    Idempotency-Key, like every other record a client creates (a clinic tablet retries)."""

    __tablename__ = "session_observations"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("treatment_sessions.id", ondelete="CASCADE")
    )
    observed_at: Mapped[datetime]
    utc_offset_minutes: Mapped[int]
    systolic: Mapped[int | None] = mapped_column(Integer)
    diastolic: Mapped[int | None] = mapped_column(Integer)
    heart_rate: Mapped[int | None] = mapped_column(Integer)
    spo2: Mapped[int | None] = mapped_column(Integer)
    sedation_moaas: Mapped[int | None] = mapped_column(Integer)
    cadss_total: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("patient_id", "idempotency_key"),
        Index("ix_session_observations_session", "session_id", "observed_at"),
    )

    @property
    def has_blood_pressure(self) -> bool:
        """Both systolic and diastolic were taken."""
        return self.systolic is not None and self.diastolic is not None


def dose_flags(session: TreatmentSession) -> list[str]:
    """Warnings about the dose; shown with the session, never a reason to refuse it."""
    flags: list[str] = []
    per_kg = session.dose_mg_per_kg
    if session.drug == Drug.ketamine and per_kg is not None:
        low, high = USUAL_MG_PER_KG[session.route]
        if per_kg < low:
            flags.append("dose_below_usual_range")
        elif per_kg > high:
            flags.append("dose_above_usual_range")
    if (
        session.status == SessionStatus.completed
        and session.weight_kg is None
        and (session.drug == Drug.ketamine)
    ):
        flags.append("weight_missing")
    return flags


def live_sessions(patient_id: uuid.UUID) -> Select[tuple[TreatmentSession]]:
    """The patient's sessions that are not deleted."""
    return select(TreatmentSession).where(
        TreatmentSession.patient_id == patient_id, TreatmentSession.deleted_at.is_(None)
    )


def session_numbers(patient_id: uuid.UUID) -> Select[Any]:
    """(session id, number) for each completed session: 1 is the earliest by start time.

    Computed by a window function on every read, so a back-dated session renumbers the later
    ones at once and no stored number can go stale.
    """
    return select(
        TreatmentSession.id.label("session_id"),
        func.row_number()
        .over(order_by=(TreatmentSession.started_at, TreatmentSession.id))
        .label("number"),
    ).where(
        TreatmentSession.patient_id == patient_id,
        TreatmentSession.deleted_at.is_(None),
        TreatmentSession.status == SessionStatus.completed,
    )


def get_session(*, db: Session, patient_id: uuid.UUID, session_id: uuid.UUID) -> TreatmentSession:
    """A live session of this patient, else NotFound."""
    session = db.get(TreatmentSession, session_id)
    if session is None or session.patient_id != patient_id or session.deleted_at is not None:
        raise NotFound("No such session.")
    return session


def add_observation(
    *,
    db: Session,
    session: TreatmentSession,
    actor_id: uuid.UUID,
    data: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> tuple[Observation, bool]:
    """Record one set of observations during a session; (observation, created?).

    A repeat with the same id or Idempotency-Key and the same body for the same session
    returns the stored observation; anything else with that id or key is a Conflict.
    """
    values = dict(data)
    observed_at = values.pop("observed_at")
    observation = Observation(
        id=values.pop("id", None),
        session_id=session.id,
        patient_id=session.patient_id,
        # The session is part of what was sent: the same body for another session clashes.
        fingerprint=fingerprint({**data, "session_id": session.id}),
        idempotency_key=idempotency_key,
        observed_at=observed_at.astimezone(UTC),
        utc_offset_minutes=utc_offset_minutes(observed_at),
        recorded_by_id=actor_id,
        **values,
    )
    return insert_once(db=db, record=observation, idempotency_key=idempotency_key)


@dataclass(frozen=True)
class ChecklistItem:
    """One monitoring duty and whether the record shows it was done."""

    item: str
    required: bool
    present: bool


def monitoring_checklist(
    session: TreatmentSession, observations: list[Observation]
) -> list[ChecklistItem]:
    """What the record shows of the monitoring a dosing session needs."""
    start = session.started_at
    bp = [o.observed_at for o in observations if o.has_blood_pressure]
    before = any(start - PRE_DOSE_BP_WINDOW <= t <= start for t in bp)
    around_40 = any(start + BP_40_MIN_WINDOW[0] <= t <= start + BP_40_MIN_WINDOW[1] for t in bp)
    end = session.discharged_at
    before_discharge = end is not None and any(
        end - PRE_DISCHARGE_BP_WINDOW <= t <= end and t > start for t in bp
    )
    esketamine = session.drug == Drug.esketamine
    # Two hours of observation, as the record shows it: a reading taken two hours or more
    # after the start, and no discharge before then (a discharge time alone shows nothing).
    watched = any(o.observed_at >= start + ESKETAMINE_MIN_OBSERVATION for o in observations)
    observed_long_enough = watched and (end is None or end - start >= ESKETAMINE_MIN_OBSERVATION)
    return [
        ChecklistItem("bp_before_dosing", True, before),
        ChecklistItem("bp_at_40_minutes", True, around_40),
        ChecklistItem("bp_before_discharge", True, before_discharge),
        ChecklistItem("observation_2_hours", esketamine, observed_long_enough),
    ]
