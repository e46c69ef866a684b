"""Erasure of a patient's account and every record about them (the right to be forgotten).

One transaction deletes, children first, everything that names the patient; the audit trail
is kept, pseudonymised. Deleting rows is not enough for "no trace": SQLite keeps deleted
bytes in free pages and in the write-ahead log, so every connection runs with
``secure_delete`` (api.db) and the caller truncates the WAL after the commit
(``scrub_sqlite_files``). PostgreSQL keeps dead tuples until VACUUM reclaims them.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.accounts import RefreshToken, Role, TokenFamily, User
from models.alerts import Alert
from models.assessments import Assessment, AssessmentVersion
from models.audit import forget_pseudonym
from models.care import CareLink, Invite
from models.delivery import Delivery, DeliveryAttempt
from models.emergency import EmergencyAccess
from models.errors import RuleViolation
from models.events import Event
from models.mood import MoodEntry, MoodEntryVersion
from models.passwords import Passwords
from models.reminders import Reminder
from models.sessions import Observation, TreatmentSession
from models.sync import SyncCounter

log = logging.getLogger("moodtrack")


def erase_patient(*, db: Session, passwords: Passwords, user: User, password: str) -> None:
    """Delete the patient and all their data in the caller's transaction (the caller commits).

    422 on ``password`` when it is wrong. Explicit deletes rather than trusting ON DELETE
    CASCADE, so the order and the reach of an erasure can be read here.
    """
    if user.role != Role.patient:
        raise RuleViolation({"_body": ["Only a patient account can be erased this way."]})
    if not passwords.verify(user.password_hash, password):
        raise RuleViolation({"password": ["Does not match your password."]})
    uid = user.id
    # The audit trail keeps its rows; deleting the user deletes their pseudonym mapping
    # (ON DELETE CASCADE), which is what pseudonymises them.
    forget_pseudonym(db=db, user_id=uid)

    entries = select(MoodEntry.id).where(MoodEntry.patient_id == uid)
    assessments = select(Assessment.id).where(Assessment.patient_id == uid)
    sessions = select(TreatmentSession.id).where(TreatmentSession.patient_id == uid)
    families = select(TokenFamily.id).where(TokenFamily.user_id == uid)
    events = select(Event.id).where(Event.patient_id == uid)
    deliveries = select(Delivery.id).where(Delivery.event_id.in_(events))
    statements = [
        # Outbox events about the patient, and their deliveries, pending or done.
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)),
        delete(Delivery).where(Delivery.event_id.in_(events)),
        delete(Event).where(Event.patient_id == uid),
        delete(Reminder).where(Reminder.patient_id == uid),
        # Version snapshots hold the old notes and answers.
        delete(MoodEntryVersion).where(MoodEntryVersion.entry_id.in_(entries)),
        delete(AssessmentVersion).where(AssessmentVersion.assessment_id.in_(assessments)),
        delete(Observation).where(
            or_(Observation.patient_id == uid, Observation.session_id.in_(sessions))
        ),
        delete(Alert).where(Alert.patient_id == uid),
        delete(MoodEntry).where(MoodEntry.patient_id == uid),
        delete(Assessment).where(Assessment.patient_id == uid),
        delete(TreatmentSession).where(TreatmentSession.patient_id == uid),
        delete(SyncCounter).where(SyncCounter.patient_id == uid),
        delete(CareLink).where(CareLink.patient_id == uid),
        # Their reasons may describe the patient.
        delete(EmergencyAccess).where(EmergencyAccess.patient_id == uid),
        # A spent invite names who spent it; it is of no further use to the clinician.
        delete(Invite).where(Invite.used_by_id == uid),
        # Without its families and the user row, every token of the patient fails next time.
        delete(RefreshToken).where(RefreshToken.family_id.in_(families)),
        delete(TokenFamily).where(TokenFamily.user_id == uid),
        # Idempotency keys live on the records above and go with them.
        delete(User).where(User.id == uid),
    ]
    for statement in statements:
        db.execute(statement.execution_options(synchronize_session=False))
    db.expunge(user)


def scrub_sqlite_files(engine: Engine) -> bool:
    """After an erasure's commit, copy the WAL into the database and truncate it to 0 bytes.

    ``secure_delete`` zeroes the deleted cells in the new page images, but the WAL still
    holds the pages as they were before; a TRUNCATE checkpoint writes the zeroed pages back
    and empties the log. Returns False when another connection kept it from finishing (the
    next checkpoint does it); True on success or on other databases.
    """
    if engine.dialect.name != "sqlite":
        return True
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # Outside any transaction (the connection is in autocommit, see api.db).
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, _log_frames, _done = cursor.fetchone()
        cursor.close()
    finally:
        raw.close()
    if busy:
        log.warning("wal checkpoint after erasure did not complete")
    return not busy
