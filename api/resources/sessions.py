"""Treatment sessions and their observations."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import note_created
from api.auth import current_principal, require_auth, resolve_patient_id
from api.db import get_db, settings
from api.errors import ApiError, validation_error
from api.http import (
    created_response,
    empty_response,
    idempotency_key,
    json_response,
    keyset_page,
    load_body,
    path_id,
    require_if_match,
)
from models.accounts import Role
from models.session_writes import create_session, delete_session, update_session
from models.sessions import (
    Observation,
    Setting,
    TreatmentSession,
    add_observation,
    dose_flags,
    get_session,
    live_sessions,
    monitoring_checklist,
    session_numbers,
)
from schemas.common import format_offset
from schemas.sessions import (
    ObservationIn,
    ObservationListOut,
    ObservationOut,
    SessionIn,
    SessionListOut,
    SessionOut,
    SessionUpdate,
)

ns = Namespace("sessions", path="/patients", description="Treatment sessions")
_in, _update, _out, _list_out = SessionIn(), SessionUpdate(), SessionOut(), SessionListOut()
_obs_in, _obs_out, _obs_list_out = ObservationIn(), ObservationOut(), ObservationListOut()


def _may_write(session_setting: Setting | str) -> None:
    """Clinicians record any session of a linked patient; patients only their home sessions."""
    if current_principal().role == Role.patient and session_setting != Setting.home:
        raise ApiError(403, "Patients record home sessions only.", slug="forbidden")


def _observations(db: Session, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    found: dict[uuid.UUID, list[Any]] = {sid: [] for sid in session_ids}
    if session_ids:
        rows = db.scalars(
            select(Observation)
            .where(Observation.session_id.in_(session_ids))
            .order_by(Observation.observed_at)
        )
        for observation in rows:
            found[observation.session_id].append(observation)
    return found


def session_data(
    session: TreatmentSession, number: int | None, observations: list[Observation]
) -> dict[str, Any]:
    """A session's fields as SessionOut expects them."""
    return {
        "id": session.id,
        "patient_id": session.patient_id,
        "number": number,
        "status": session.status.value,
        "started_at": session.started_at,
        "utc_offset": format_offset(session.utc_offset_minutes),
        "ended_at": session.ended_at,
        "discharged_at": session.discharged_at,
        "drug": session.drug.value,
        "route": session.route.value,
        "dose_mg": session.dose_mg,
        "weight_kg": session.weight_kg,
        "dose_mg_per_kg": session.dose_mg_per_kg,
        "dose_flags": dose_flags(session),
        "setting": session.setting.value,
        "concomitant_medications": session.concomitant_medications or [],
        "adverse_events": session.adverse_events or [],
        "notes": session.notes,
        "monitoring": [vars(item) for item in monitoring_checklist(session, observations)],
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "version": session.version,
    }


def _view(db: Session, session: TreatmentSession) -> dict[str, Any]:
    numbers = session_numbers(session.patient_id).subquery()
    number = db.scalar(select(numbers.c.number).where(numbers.c.session_id == session.id))
    return _out.dump(session_data(session, number, _observations(db, [session.id])[session.id]))


@ns.route("/<patient_id>/sessions")
class Sessions(Resource):
    @require_auth(Role.patient, Role.clinician)
    def post(self, patient_id: str) -> Response:
        """Record a session: clinic sessions by a linked clinician, home ones by the patient."""
        pid = resolve_patient_id(patient_id)
        key = idempotency_key()
        data = load_body(_in)
        _may_write(data["setting"])
        db = get_db()
        session, created = create_session(
            db=db,
            patient_id=pid,
            actor_id=current_principal().user.id,
            data=data,
            rules=settings().rules,
            idempotency_key=key,
        )
        db.commit()
        return created_response(
            _view(db, session), record_id=session.id, etag=session.etag, created=created
        )

    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str) -> Response:
        """The patient's sessions, latest start first, with numbers and checklists."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        status = request.args.get("status")
        numbers = session_numbers(pid).subquery()
        stmt = (
            live_sessions(pid)
            .outerjoin(numbers, numbers.c.session_id == TreatmentSession.id)
            .add_columns(numbers.c.number)
            .order_by(TreatmentSession.started_at.desc(), TreatmentSession.id.desc())
        )
        if status is not None:
            if status not in {"scheduled", "completed", "cancelled"}:
                raise validation_error({"status": ["Must be scheduled, completed or cancelled."]})
            stmt = stmt.where(TreatmentSession.status == status)
        rows, next_cursor = keyset_page(
            db,
            stmt,
            keys=(TreatmentSession.started_at, TreatmentSession.id),
            key_of=lambda row: (row[0].started_at, row[0].id),
        )
        observations = _observations(db, [row[0].id for row in rows])
        items = [session_data(s, n, observations[s.id]) for s, n in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<patient_id>/sessions/<session_id>")
class SessionItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str, session_id: str) -> Response:
        """One session."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        return json_response(_view(db, session), etag=session.etag)

    @require_auth(Role.patient, Role.clinician)
    def patch(self, patient_id: str, session_id: str) -> Response:
        """Change a session (If-Match); e.g. mark a scheduled one completed with its dose."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        _may_write(session.setting)
        require_if_match(session.etag)
        changes = load_body(_update)
        _may_write(changes.get("setting", session.setting))
        update_session(db=db, session=session, changes=changes, rules=settings().rules)
        db.commit()
        return json_response(_view(db, session), etag=session.etag)

    @require_auth(Role.patient, Role.clinician)
    def delete(self, patient_id: str, session_id: str) -> Response:
        """Delete a session (If-Match); later sessions are renumbered."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        _may_write(session.setting)
        require_if_match(session.etag)
        delete_session(db=db, session=session, rules=settings().rules)
        db.commit()
        return empty_response()


def observation_data(observation: Observation) -> dict[str, Any]:
    """An observation's fields as ObservationOut expects them."""
    return {
        "id": observation.id,
        "session_id": observation.session_id,
        "observed_at": observation.observed_at,
        "utc_offset": format_offset(observation.utc_offset_minutes),
        "systolic": observation.systolic,
        "diastolic": observation.diastolic,
        "heart_rate": observation.heart_rate,
        "spo2": observation.spo2,
        "sedation_moaas": observation.sedation_moaas,
        "cadss_total": observation.cadss_total,
        "note": observation.note,
        "created_at": observation.created_at,
    }


_READINGS = ("systolic", "diastolic", "heart_rate", "spo2", "sedation_moaas", "cadss_total")


@ns.route("/<patient_id>/sessions/<session_id>/observations")
class Observations(Resource):
    @require_auth(Role.clinician)
    def post(self, patient_id: str, session_id: str) -> Response:
        """Record readings taken during the session (linked clinician); a replay of the
        same id or key returns them (200)."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        key = idempotency_key()
        data = load_body(_obs_in)
        if all(data.get(name) is None for name in _READINGS):
            raise validation_error({"_body": ["Give at least one reading."]})
        observation, created = add_observation(
            db=db,
            session=session,
            actor_id=current_principal().user.id,
            data=data,
            idempotency_key=key,
        )
        note_created(observation.id)  # the record created, or the one a replay answers with
        db.commit()
        # Observations have no URL of their own and no versions: no Location, no ETag.
        return created_response(
            _obs_out.dump(observation_data(observation)),
            record_id=observation.id,
            etag=None,
            created=created,
            location=False,
        )

    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str, session_id: str) -> Response:
        """The session's readings, oldest first."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        items = [observation_data(o) for o in _observations(db, [session.id])[session.id]]
        return json_response(_obs_list_out.dump({"items": items}))
