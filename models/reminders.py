"""Reminders: the due list (models.due) turned into ``reminder.due`` events.

A worker holding the scheduler lease walks the patients now and then. An item is reminded
when its window is open and it is not done, once the patient's local time is out of the
quiet hours (and, for the daily mood, past the daily reminder time), at most once per item
and window: the reminders table's unique key decides, so repeated or concurrent walks
raise nothing twice. The event says which item and window, never anything the patient
logged, so a phone app's push relay can notify without seeing health data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User
from models.base import Base, utcnow, uuid_pk
from models.due import DueItem, due_items, last_questionnaire_at
from models.events import EventType, emit_event
from models.webhooks import Webhook


class Reminder(Base):
    """A reminder sent for one item and window of one patient's due list."""

    __tablename__ = "reminders"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("patient_id", "item_key"),)


@dataclass(frozen=True)
class ReminderPolicy:
    """When reminders may go out, in each patient's local time."""

    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    daily_mood_at: time = time(19, 0)

    def is_quiet(self, local: time) -> bool:
        """Inside the quiet hours (which may run across midnight)."""
        if self.quiet_start <= self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end


def item_key(item: DueItem) -> str:
    """One key per item and window: the unique key of a reminder."""
    session = str(item.session_id) if item.session_id else "-"
    return f"{item.kind}:{item.instrument}:{session}:{item.window_start.isoformat()}"


def reminders_wanted(*, db: Session) -> bool:
    """Whether any live endpoint receives reminders (else there is nobody to tell)."""
    hooks = db.scalars(select(Webhook.event_types).where(Webhook.disabled_at.is_(None)))
    return any(EventType.reminder_due.value in types for types in hooks)


def schedule_reminders(
    *,
    db: Session,
    now: datetime,
    policy: ReminderPolicy,
    after: uuid.UUID | None = None,
    page: int = 200,
) -> tuple[int, uuid.UUID | None]:
    """Emit a ``reminder.due`` for every item due now, for one page of patients (by id,
    after ``after``); returns how many were emitted and where the next page starts (None
    after the last). The caller commits each page."""
    if after is None and not reminders_wanted(db=db):
        return 0, None
    stmt = select(User).where(User.role == Role.patient, User.disabled_at.is_(None))
    if after is not None:
        stmt = stmt.where(User.id > after)
    patients = db.scalars(stmt.order_by(User.id).limit(page)).all()
    emitted = sum(_remind(db, patient, now, policy) for patient in patients)
    return emitted, (patients[-1].id if len(patients) == page else None)


def _remind(db: Session, patient: User, now: datetime, policy: ReminderPolicy) -> int:
    local = now.astimezone(ZoneInfo(patient.timezone)).time()
    if policy.is_quiet(local):
        return 0
    items = due_items(
        db=db,
        patient=patient,
        now=now,
        last_questionnaire=lambda code: last_questionnaire_at(
            db=db, patient_id=patient.id, code=code
        ),
    )
    emitted = 0
    for item in items:
        if _remind_now(item, now, local, policy) and _claim(db, patient.id, item, now):
            emit_event(
                db=db,
                type=EventType.reminder_due,
                patient_id=patient.id,
                data=_event_data(patient.id, item),
                now=now,
            )
            emitted += 1
    return emitted


def _remind_now(item: DueItem, now: datetime, local: time, policy: ReminderPolicy) -> bool:
    if item.done or not item.window_start <= now < item.window_end:
        return False
    return item.kind != "daily_mood" or local >= policy.daily_mood_at


def _claim(db: Session, patient_id: uuid.UUID, item: DueItem, now: datetime) -> bool:
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = Reminder.__table__
    stmt = (
        insert(table)
        .values(id=uuid.uuid4(), patient_id=patient_id, item_key=item_key(item), created_at=now)
        .on_conflict_do_nothing()
        .returning(table.c.id)
    )
    return db.execute(stmt).first() is not None


def _event_data(patient_id: uuid.UUID, item: DueItem) -> dict[str, str | None]:
    return {
        "patient_id": str(patient_id),
        "item": item.kind,
        "instrument": item.instrument,
        "session_id": str(item.session_id) if item.session_id else None,
        "window_start": item.window_start.isoformat(),
        "window_end": item.window_end.isoformat(),
    }
