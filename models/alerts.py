"""Clinician alerts, created by the write that triggers them in the same transaction.

An alert belongs to the patient, not to a clinician: every clinician linked to the patient,
now or later, sees it (analytics.md "Alerts").
"""

from __future__ import annotations

import enum
import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from models.accounts import User
from models.base import Base, utcnow, uuid_pk
from models.care import CareLink, visible_link
from models.errors import Conflict, NotFound
from models.events import EventType, emit_event
from models.outcomes import RuleSet


class AlertRule(enum.StrEnum):
    """Why an alert was raised."""

    self_harm = "self_harm"
    worsening = "worsening"
    post_session_drop = "post_session_drop"


class AlertPriority(enum.StrEnum):
    """How soon a clinician should look."""

    high = "high"
    medium = "medium"


ESCALATION_DUE = "priority = 'high' AND acknowledged_at IS NULL AND escalated_at IS NULL"


class Alert(Base):
    """One alert per triggering record and rule; acknowledged once by a linked clinician."""

    __tablename__ = "alerts"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    # The triggering record: "assessment" or "mood_entry", and its id (no FK: two tables).
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    acknowledgement_note: Mapped[str | None] = mapped_column(Text)
    ruleset_version: Mapped[str] = mapped_column(String(64))
    # When an unacknowledged high-priority alert was escalated (at most once).
    escalated_at: Mapped[datetime | None]
    # Numbers and codes only (never free text), so an alert list cannot leak a note.
    details: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        # The same event cannot raise the same rule twice, even under concurrent retries.
        UniqueConstraint("source_type", "source_id", "rule", name="uq_alerts_source_rule"),
        Index("ix_alerts_patient_created", "patient_id", "created_at"),
        # The escalation job's question every few seconds: open high alerts not escalated.
        Index(
            "ix_alerts_escalation_due",
            "created_at",
            sqlite_where=text(ESCALATION_DUE),
            postgresql_where=text(ESCALATION_DUE),
        ),
        CheckConstraint(
            "rule IN ('self_harm', 'worsening', 'post_session_drop')", name="rule_known"
        ),
        CheckConstraint("priority IN ('high', 'medium')", name="priority_known"),
        CheckConstraint("source_type IN ('assessment', 'mood_entry')", name="source_known"),
    )


def raise_alert(
    *,
    db: Session,
    patient_id: uuid.UUID,
    rule: AlertRule,
    priority: AlertPriority,
    source_type: str,
    source_id: uuid.UUID,
    rules: RuleSet,
    details: dict[str, Any],
) -> Alert | None:
    """Add an alert and its ``alert.raised`` event to the caller's transaction; None when
    this record has already raised this rule (rules are re-evaluated on every write)."""
    alert = Alert(
        id=uuid.uuid4(),
        patient_id=patient_id,
        rule=rule.value,
        priority=priority.value,
        source_type=source_type,
        source_id=source_id,
        created_at=utcnow(),
        ruleset_version=rules.version,
        details=details,
    )
    row = {column.key: getattr(alert, column.key, None) for column in Alert.__table__.columns}
    # The unique key decides, so two writers re-evaluating at once store one alert.
    if db.execute(_insert_statement(db.get_bind().dialect.name), row).first() is None:
        return None
    emit_event(
        db=db,
        type=EventType.alert_raised,
        patient_id=patient_id,
        data=alert_event_data(alert),
        now=alert.created_at,
    )
    return alert


def alert_event_data(alert: Alert, **extra: Any) -> dict[str, Any]:
    """What an event says about an alert: ids, rule, priority and times, nothing else."""
    return {
        "alert_id": str(alert.id),
        "patient_id": str(alert.patient_id),
        "rule": alert.rule,
        "priority": alert.priority,
        "raised_at": alert.created_at.isoformat(),
        **extra,
    }


@functools.cache
def _insert_statement(dialect: str) -> ReturningInsert[Any]:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Alert.__table__
    return insert(table).on_conflict_do_nothing().returning(table.c.id)


# The inbox puts the most urgent first. A rank, not the name: "high" sorts before "medium"
# only by accident of the alphabet, and a new priority would break that.
PRIORITY_RANK = {AlertPriority.high.value: 2, AlertPriority.medium.value: 1}
priority_rank = case(PRIORITY_RANK, value=Alert.priority, else_=0)
ALERT_STATUSES = ("open", "acknowledged", "all")


def _linked_to(clinician_id: uuid.UUID) -> ColumnElement[bool]:
    # Scoped to the organisations where the clinician is an active clinician.
    return and_(CareLink.patient_id == Alert.patient_id, visible_link(clinician_id))


def alerts_for_clinician(
    *, clinician_id: uuid.UUID, status: str, patient_id: uuid.UUID | None = None
) -> Select[tuple[Alert, str]]:
    """Alerts of the clinician's linked patients with each patient's display name, in one
    query, most urgent first, then newest; ``status`` is open, acknowledged or all."""
    # At most one live link per pair (uq_care_links_active_pair), so the join adds no rows.
    stmt = (
        select(Alert, User.display_name)
        .join(User, User.id == Alert.patient_id)
        .join(CareLink, _linked_to(clinician_id))
    )
    if patient_id is not None:
        stmt = stmt.where(Alert.patient_id == patient_id)
    if status == "open":
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    elif status == "acknowledged":
        stmt = stmt.where(Alert.acknowledged_at.is_not(None))
    return stmt.order_by(priority_rank.desc(), Alert.created_at.desc(), Alert.id.desc())


def acknowledge_alert(
    *,
    db: Session,
    clinician_id: uuid.UUID,
    alert_id: uuid.UUID,
    note: str | None,
    now: datetime,
) -> tuple[Alert, str]:
    """Acknowledge an alert once; returns it with its patient's display name.

    404 unless the clinician is linked to the alert's patient now; 409 when already done.
    """
    alert, display_name = get_alert_for_clinician(
        db=db, clinician_id=clinician_id, alert_id=alert_id
    )
    already = Conflict("This alert has already been acknowledged.")
    if alert.acknowledged_at is not None:
        raise already
    # Conditional update: of two clinicians acknowledging at once, exactly one wins.
    values = {
        "acknowledged_at": now,
        "acknowledged_by_id": clinician_id,
        "acknowledgement_note": note,
    }
    claimed = db.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.acknowledged_at.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise already
    # Mirror the stored values on the loaded object without a second UPDATE or a reload.
    for key, value in values.items():
        set_committed_value(alert, key, value)
    emit_event(
        db=db,
        type=EventType.alert_acknowledged,
        patient_id=alert.patient_id,
        data=alert_event_data(alert, acknowledged_at=now.isoformat()),
        now=now,
    )
    return alert, display_name


def get_alert_for_clinician(
    *, db: Session, clinician_id: uuid.UUID, alert_id: uuid.UUID
) -> tuple[Alert, str]:
    """One alert with its patient's display name; 404 unless the clinician is linked now."""
    row = db.execute(
        select(Alert, User.display_name)
        .join(User, User.id == Alert.patient_id)
        .join(CareLink, _linked_to(clinician_id))
        .where(Alert.id == alert_id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such alert.")
    return row[0], row[1]


def escalate_overdue_alerts(*, db: Session, now: datetime, after: timedelta) -> int:
    """Escalate each high-priority alert left unacknowledged for ``after``: once, with one
    ``alert.escalated`` event in the same transaction; returns how many."""
    # UPDATE ... RETURNING with the condition repeated: of workers escalating at once, each
    # alert is claimed by exactly one.
    claimed = db.execute(
        update(Alert)
        .where(
            Alert.priority == AlertPriority.high.value,
            Alert.acknowledged_at.is_(None),
            Alert.escalated_at.is_(None),
            Alert.created_at <= now - after,
        )
        .values(escalated_at=now)
        .returning(Alert.id, Alert.patient_id, Alert.rule, Alert.priority, Alert.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    for row in claimed:
        alert = Alert(
            id=row.id,
            patient_id=row.patient_id,
            rule=row.rule,
            priority=row.priority,
            created_at=row.created_at,
        )
        emit_event(
            db=db,
            type=EventType.alert_escalated,
            patient_id=row.patient_id,
            data=alert_event_data(
                alert,
                escalated_at=now.isoformat(),
                unacknowledged_minutes=int(after.total_seconds() // 60),
            ),
            now=now,
        )
    return len(claimed)
