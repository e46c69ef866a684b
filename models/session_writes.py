"""Writing treatment sessions: the cross-field rules, and the alert rules a session's time
or status can make true for check-ins stored before it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from models.alert_rules import recheck_post_session_drop
from models.base import utcnow
from models.errors import RuleViolation
from models.outcomes import RuleSet
from models.records import fingerprint, insert_once, utc_offset_minutes
from models.sessions import (
    ALLOWED_TRANSITIONS,
    ESKETAMINE_DOSES_MG,
    Drug,
    Route,
    SessionStatus,
    TreatmentSession,
)


def check_session(values: Mapping[str, Any]) -> None:
    """The rules that relate several fields; each failure names its field."""
    errors: dict[str, list[str]] = {}
    drug, route, dose = values.get("drug"), values.get("route"), values.get("dose_mg")
    if drug == Drug.esketamine:
        if route != Route.intranasal:
            errors.setdefault("route", []).append("Esketamine is given intranasally only.")
        if dose is not None and float(dose) not in ESKETAMINE_DOSES_MG:
            errors.setdefault("dose_mg", []).append(
                "Esketamine doses are 28, 56 or 84 mg (28 mg devices)."
            )
    started = values.get("started_at")
    for name in ("ended_at", "discharged_at"):
        later = values.get(name)
        if later is not None and started is not None and later < started:
            errors.setdefault(name, []).append("Must not be before started_at.")
    status = values.get("status")
    now = datetime.now(UTC)
    if status == SessionStatus.completed:
        if dose is None:
            errors.setdefault("dose_mg", []).append("A completed session needs its dose.")
        if started is not None and started > now + timedelta(minutes=5):
            errors.setdefault("started_at", []).append(
                "A completed session cannot start in the future."
            )
    if errors:
        raise RuleViolation(errors)


def create_session(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    data: Mapping[str, Any],
    rules: RuleSet,
    idempotency_key: str | None = None,
) -> tuple[TreatmentSession, bool]:
    """Record a session after checking the cross-field rules; (session, created?).

    A session recorded as completed after the phone synced its check-ins can make them a
    post_session_drop at once, so the rule is evaluated here too."""
    values = dict(data)
    check_session(values)
    session = TreatmentSession(
        id=values.pop("id", None),
        patient_id=patient_id,
        created_by_id=actor_id,
        fingerprint=fingerprint(data),
        idempotency_key=idempotency_key,
        utc_offset_minutes=utc_offset_minutes(values["started_at"]),
        concomitant_medications=values.pop("concomitant_medications", None) or [],
        adverse_events=values.pop("adverse_events", None) or [],
        **values,
    )
    _normalise_instants(session)
    stored, created = insert_once(db=db, record=session, idempotency_key=idempotency_key)
    if created:
        _recheck(db=db, session=stored, rules=rules, instants=[stored.started_at])
    return stored, created


def _normalise_instants(session: TreatmentSession) -> None:
    for name in ("started_at", "ended_at", "discharged_at"):
        value = getattr(session, name)
        if value is not None:
            setattr(session, name, value.astimezone(UTC))


def update_session(
    *, db: Session, session: TreatmentSession, changes: Mapping[str, Any], rules: RuleSet
) -> TreatmentSession:
    """Apply a partial change; status only moves from scheduled to completed or cancelled.
    Completing or moving a session re-evaluates the alert rules around its old and new
    start."""
    new_status = changes.get("status")
    if new_status is not None and new_status not in ALLOWED_TRANSITIONS[session.status]:
        raise RuleViolation(
            {"status": [f"A {session.status.value} session cannot become {new_status.value}."]}
        )
    merged = {
        name: changes.get(name, getattr(session, name))
        for name in (
            "status",
            "drug",
            "route",
            "dose_mg",
            "started_at",
            "ended_at",
            "discharged_at",
        )
    }
    check_session(merged)
    started_before = session.started_at
    for key, value in changes.items():
        if key in ("concomitant_medications", "adverse_events"):
            value = value or []
        setattr(session, key, value)
    if "started_at" in changes:
        session.utc_offset_minutes = utc_offset_minutes(changes["started_at"])
    _normalise_instants(session)
    session.updated_at = utcnow()
    db.flush()
    _recheck(db=db, session=session, rules=rules, instants=[started_before, session.started_at])
    return session


def delete_session(*, db: Session, session: TreatmentSession, rules: RuleSet) -> None:
    """Soft delete: the session stops counting anywhere; linked check-ins stay. The session
    before it now owns its span, which can make a drop of that one true."""
    session.deleted_at = session.updated_at = utcnow()
    db.flush()
    _recheck(db=db, session=session, rules=rules, instants=[session.started_at])


def _recheck(
    *, db: Session, session: TreatmentSession, rules: RuleSet, instants: list[datetime]
) -> None:
    recheck_post_session_drop(
        db=db,
        patient_id=session.patient_id,
        rules=rules,
        instants=instants,
        session_ids=[session.id],
    )
