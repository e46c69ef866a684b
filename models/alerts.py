"""Clinician alerts, created by the write that triggers them in the same transaction.

An alert belongs to the patient, not to a clinician: every clinician linked to the patient,
now or later, sees it (analytics.md "Alerts").
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from models.accounts import User
from models.base import Base, utcnow, uuid_pk
from models.care import CareLink, visible_link
from models.errors import Conflict, NotFound
from models.outcomes import RuleSet

if TYPE_CHECKING:
    from models.assessments import Assessment
    from models.instruments import Score


class AlertRule(enum.StrEnum):
    """Why an alert was raised."""

    self_harm = "self_harm"
    worsening = "worsening"
    post_session_drop = "post_session_drop"


class AlertPriority(enum.StrEnum):
    """How soon a clinician should look."""

    high = "high"
    medium = "medium"


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
    # Numbers and codes only (never free text), so an alert list cannot leak a note.
    details: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        # The same event cannot raise the same rule twice, even under concurrent retries.
        UniqueConstraint("source_type", "source_id", "rule", name="uq_alerts_source_rule"),
        Index("ix_alerts_patient_created", "patient_id", "created_at"),
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
) -> Alert:
    """Add an alert to the caller's transaction (flushed, not committed)."""
    alert = Alert(
        patient_id=patient_id,
        rule=rule.value,
        priority=priority.value,
        source_type=source_type,
        source_id=source_id,
        ruleset_version=rules.version,
        details=details,
    )
    db.add(alert)
    db.flush()
    return alert


def _previous_phq9(db: Session, assessment: Assessment) -> Assessment | None:
    from models.assessments import Assessment

    # "Previous" by when it was answered, so a late-synced older form is compared rightly.
    earlier = or_(
        Assessment.occurred_at < assessment.occurred_at,
        and_(
            Assessment.occurred_at == assessment.occurred_at,
            Assessment.created_at < assessment.created_at,
        ),
    )
    return db.scalars(
        select(Assessment)
        .where(
            Assessment.patient_id == assessment.patient_id,
            Assessment.instrument == "phq9",
            Assessment.deleted_at.is_(None),
            Assessment.id != assessment.id,
            earlier,
        )
        .order_by(Assessment.occurred_at.desc(), Assessment.created_at.desc())
        .limit(1)
    ).first()


def alerts_for_assessment(
    *, db: Session, assessment: Assessment, result: Score, rules: RuleSet
) -> list[Alert]:
    """Apply the self_harm and worsening rules to a newly stored assessment."""
    alerts: list[Alert] = []
    if result.safety_item is not None and result.safety_value is not None:
        alerts.append(
            raise_alert(
                db=db,
                patient_id=assessment.patient_id,
                rule=AlertRule.self_harm,
                priority=AlertPriority(rules.self_harm_priority(result.safety_value)),
                source_type="assessment",
                source_id=assessment.id,
                rules=rules,
                details={
                    "instrument": assessment.instrument,
                    "item": result.safety_item,
                    "value": result.safety_value,
                    "total": result.total,
                },
            )
        )
    if assessment.instrument == "phq9":
        worsening = _worsening_details(db, assessment, result, rules)
        if worsening is not None:
            alerts.append(
                raise_alert(
                    db=db,
                    patient_id=assessment.patient_id,
                    rule=AlertRule.worsening,
                    priority=AlertPriority.medium,
                    source_type="assessment",
                    source_id=assessment.id,
                    rules=rules,
                    details=worsening,
                )
            )
    return alerts


def _worsening_details(
    db: Session, assessment: Assessment, result: Score, rules: RuleSet
) -> dict[str, Any] | None:
    previous = _previous_phq9(db, assessment)
    severe = result.band is not None and result.band.code == "severe"
    reasons = []
    if previous is not None and rules.is_worsening(previous.total, result.total):
        reasons.append("increase")
    if severe and (previous is None or previous.band != "severe"):
        reasons.append("entered_severe")
    if not reasons:
        return None
    return {
        "instrument": "phq9",
        "reasons": reasons,
        "total": result.total,
        "band": result.band.code if result.band else None,
        "previous_assessment_id": str(previous.id) if previous else None,
        "previous_total": previous.total if previous else None,
        "previous_band": previous.band if previous else None,
        "threshold_points": rules.worsening_points,
    }


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
    row = db.execute(
        select(Alert, User.display_name)
        .join(User, User.id == Alert.patient_id)
        .join(CareLink, _linked_to(clinician_id))
        .where(Alert.id == alert_id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such alert.")
    alert, display_name = row
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
    return alert, display_name
