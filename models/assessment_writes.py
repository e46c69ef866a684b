"""Writing questionnaire responses: scored on the server, stored once, alerted in the same
transaction; a deleted form re-evaluates the rules it took part in."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from models.accounts import Role, User
from models.alert_rules import after_assessment_deleted, after_assessment_stored
from models.alerts import Alert
from models.assessments import Assessment, AssessmentVersion
from models.base import utcnow
from models.checkins import check_session_link
from models.errors import Forbidden
from models.instruments import Instrument, get_instrument, score
from models.outcomes import RuleSet
from models.records import fingerprint, insert_once


@dataclass
class Submitted:
    """The outcome of a create: the stored assessment, whether it is new, its alerts."""

    assessment: Assessment
    created: bool
    alerts: list[Alert] = field(default_factory=list)


def check_respondent(*, instrument: Instrument, actor: User, patient_id: uuid.UUID) -> None:
    """Self-report forms only by the patient; clinician-rated ones only by a clinician."""
    # The view has already checked that the actor may see the patient (a clinician through
    # a live care link), so a clinician here is a linked one.
    if instrument.respondent == "patient":
        if actor.role != Role.patient or actor.id != patient_id:
            raise Forbidden(f"Only the patient answers {instrument.name}.")
    elif actor.role != Role.clinician:
        raise Forbidden(f"{instrument.name} is rated by a linked clinician.")


def create_assessment(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor: User,
    data: Mapping[str, Any],
    rules: RuleSet,
    idempotency_key: str | None = None,
) -> Submitted:
    """Score and store a form, or return the stored one for a replay; alerts for a new one."""
    # Nothing is committed here: the caller commits once, so the assessment and its alerts
    # are stored together or not at all.
    instrument = get_instrument(data["instrument"])
    check_respondent(instrument=instrument, actor=actor, patient_id=patient_id)
    result = score(instrument, data["answers"], data.get("difficulty"))
    check_session_link(
        db=db,
        patient_id=patient_id,
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        occurred_at=data["occurred_at"],
    )
    assessment = Assessment(
        id=data.get("id"),
        patient_id=patient_id,
        created_by_id=actor.id,
        rated_by_id=actor.id if instrument.respondent == "clinician" else None,
        instrument=instrument.code,
        answers=list(data["answers"]),
        difficulty=data.get("difficulty"),
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        total=result.total,
        band=result.band.code if result.band else None,
        flags=list(result.flags),
        instrument_version=instrument.instrument_version,
        scoring_version=instrument.scoring_version,
        ruleset_version=rules.version,
        fingerprint=fingerprint(data),
        idempotency_key=idempotency_key,
    )
    assessment.set_occurred_at(data["occurred_at"])
    stored, created = insert_once(db=db, record=assessment, idempotency_key=idempotency_key)
    if not created:
        # A replay: its alerts were raised with the original create.
        return Submitted(stored, False)
    alerts = after_assessment_stored(db=db, assessment=stored, result=result, rules=rules)
    return Submitted(stored, True, alerts)


def _snapshot(assessment: Assessment) -> dict[str, Any]:
    return {
        "instrument": assessment.instrument,
        "occurred_at": assessment.occurred_at_local.isoformat(),
        "answers": list(assessment.answers),
        "difficulty": assessment.difficulty,
        "session_id": str(assessment.session_id) if assessment.session_id else None,
        "phase": assessment.phase,
        "total": assessment.total,
        "band": assessment.band,
        "flags": list(assessment.flags),
        "instrument_version": assessment.instrument_version,
        "scoring_version": assessment.scoring_version,
        "ruleset_version": assessment.ruleset_version,
    }


def delete_assessment(*, db: Session, assessment: Assessment, actor: User, rules: RuleSet) -> None:
    """Soft delete, keeping the prior version; its alerts stay (they record what happened).
    The next PHQ-9 is compared with the one before this from now on, which may worsen it."""
    check_respondent(
        instrument=get_instrument(assessment.instrument),
        actor=actor,
        patient_id=assessment.patient_id,
    )
    db.add(
        AssessmentVersion(
            assessment_id=assessment.id,
            version=assessment.version,
            snapshot=_snapshot(assessment),
            changed_by_id=actor.id,
            change="delete",
        )
    )
    assessment.deleted_at = assessment.updated_at = utcnow()
    db.flush()
    after_assessment_deleted(db=db, assessment=assessment, rules=rules)
