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
from api.contract import Reply, operation
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
    get_session,
    live_sessions,
    session_numbers,
)
from schemas.sessions import (
    ObservationIn,
    ObservationListOut,
    ObservationOut,
    SessionIn,
    SessionListOut,
    SessionOut,
    SessionUpdate,
    session_read,
)

ns = Namespace("sessions", path="/patients", description="Treatment sessions")
_in, _update, _out, _list_out = SessionIn(), SessionUpdate(), SessionOut(), SessionListOut()
_obs_in, _obs_out, _obs_list_out = ObservationIn(), ObservationOut(), ObservationListOut()


def _may_write(session_setting: Setting | str) -> None:
    """Clinicians record any session of a linked patient; patients only their home sessions."""
    if current_principal().role == Role.patient and session_setting != Setting.home:
        raise ApiError(403, "Patients record home sessions only.", slug="forbidden")


def _observations(db: Session, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Observation]]:
    found: dict[uuid.UUID, list[Observation]] = {sid: [] for sid in session_ids}
    if session_ids:
        rows = db.scalars(
            select(Observation)
            .where(Observation.session_id.in_(session_ids))
            .order_by(Observation.observed_at)
        )
        for observation in rows:
            found[observation.session_id].append(observation)
    return found


def _view(db: Session, session: TreatmentSession) -> dict[str, Any]:
    numbers = session_numbers(session.patient_id).subquery()
    number = db.scalar(select(numbers.c.number).where(numbers.c.session_id == session.id))
    return _out.dump(session_read(session, number, _observations(db, [session.id])[session.id]))


@ns.route("/<patient_id>/sessions")
class Sessions(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="createSession",
        tag="sessions",
        replies=[
            Reply(
                200,
                "A replay of an earlier create; the session as stored.",
                schema=SessionOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
            Reply(
                201,
                "The new session.",
                schema=SessionOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        parameters=("IdempotencyKey",),
        body=SessionIn,
    )
    def post(self, patient_id: str) -> Response:
        """Record a treatment session

        A linked clinician records sessions in any `setting`; the patient themself records
        `home` sessions only (a `clinic` one is 403). Admin: 403; anyone else: 404.

        Rules (each failure is 422 on the field named): instants need an offset (naive is
        422); `ended_at` and `discharged_at` must not be before `started_at`; esketamine is
        `intranasal` only, at 28, 56 or 84 mg; a `completed` session needs `dose_mg` and
        cannot start more than 5 minutes in the future; `dose_mg` must be above 0; `notes`
        at most 2000 characters, kept exactly; unknown fields 422.

        A dose outside the usual range is stored, not refused: see `dose_flags`
        (`dose_below_usual_range`, `dose_above_usual_range` against the usual racemic
        ketamine mg/kg range for the route; `weight_missing` for a completed ketamine session
        without `weight_kg`). `monitoring` is the checklist the record shows:
        `bp_before_dosing` (a blood pressure within 2 h before `started_at`),
        `bp_at_40_minutes` (25-60 min after), `bp_before_discharge` (within 30 min before
        `discharged_at`), `observation_2_hours` (`discharged_at` at least 2 h after the
        start; `required` for esketamine only). `number` is the session's place among the
        patient's completed sessions by start time (1 = first), null unless completed;
        it is computed on every read, so back-dating or deleting a session renumbers the
        later ones.

        Idempotent like mood entries: a repeat with the same `id` or `Idempotency-Key` and
        the same body returns the stored session with 200; a different body is 409.
        """
        pid = resolve_patient_id(patient_id)
        key = idempotency_key()
        data = load_body(_in)
        _may_write(data["setting"])
        db = get_db()
        session, created = create_session(
            db=db,
            patient_id=pid,
            actor_id=current_principal().id,
            data=data,
            rules=settings().rules,
            idempotency_key=key,
        )
        db.commit()
        return created_response(
            _view(db, session), record_id=session.id, etag=session.etag, created=created
        )

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="listSessions",
        tag="sessions",
        replies=[
            Reply(200, "One page of sessions.", schema=SessionListOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("SessionStatus", "Limit", "Cursor"),
    )
    def get(self, patient_id: str) -> Response:
        """A patient's sessions

        The patient themself or a linked clinician (admin: 403; anyone else: 404). Live
        sessions, latest `started_at` first, paged, each with its `number`, `dose_flags` and
        `monitoring` checklist; `status` filters.
        """
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
        items = [session_read(s, n, observations[s.id]) for s, n in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<patient_id>/sessions/<session_id>")
class SessionItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getSession",
        tag="sessions",
        replies=[
            Reply(
                200,
                "The session.",
                schema=SessionOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str, session_id: str) -> Response:
        """One session

        The patient themself or a linked clinician (admin: 403). 404 for a session that is
        unknown, deleted, or another patient's, and for a patient the caller may not see.
        """
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        return json_response(_view(db, session), etag=session.etag)

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="updateSession",
        tag="sessions",
        replies=[
            Reply(
                200,
                "The updated session.",
                schema=SessionOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=SessionUpdate,
    )
    def patch(self, patient_id: str, session_id: str) -> Response:
        """Change a session

        A linked clinician for any session; the patient for their `home` sessions only (a
        `clinic` session, or moving one to `clinic`, is 403). Admin: 403; 404 as for GET.
        Needs `If-Match`: 428 without it, 412 when stale (checked before the body is read).
        Send only what changes; the create rules apply to the merged result (422). `status`
        moves only from `scheduled` (to `completed` or `cancelled`); any other change of
        status is 422. Completing or re-dating a session renumbers the course.
        """
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
    @operation(
        operation_id="deleteSession",
        tag="sessions",
        replies=[
            Reply(204, "Deleted."),
        ],
        problems=(401, 403, 404, 412, 428, 429, 500),
        parameters=("IfMatch",),
    )
    def delete(self, patient_id: str, session_id: str) -> Response:
        """Delete a session

        Same roles as PATCH (patients: `home` sessions only, else 403). Needs `If-Match`:
        428 without it, 412 when stale. The session stops counting anywhere and later
        completed sessions are renumbered; check-ins linked to it stay.
        """
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        _may_write(session.setting)
        require_if_match(session.etag)
        delete_session(db=db, session=session, rules=settings().rules)
        db.commit()
        return empty_response()


_READINGS = ("systolic", "diastolic", "heart_rate", "spo2", "sedation_moaas", "cadss_total")


@ns.route("/<patient_id>/sessions/<session_id>/observations")
class Observations(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="createObservation",
        tag="sessions",
        replies=[
            Reply(
                200, "A replay of an earlier create; the readings as stored.", schema=ObservationOut
            ),
            Reply(201, "The stored readings.", schema=ObservationOut),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        parameters=("IdempotencyKey",),
        body=ObservationIn,
    )
    def post(self, patient_id: str, session_id: str) -> Response:
        """Record readings during a session

        Linked clinician only (patient and admin: 403; 404 as for the session). At least
        one reading is required (422 on `_body` otherwise); readings are strict integers in
        their ranges; `observed_at` needs an offset. Blood pressure counts toward the
        session's `monitoring` checklist only when both `systolic` and `diastolic` are given.

        Idempotent like the other creates, so a clinic tablet may retry: a repeat with the
        same `id` or `Idempotency-Key` and the same body for the same session returns the
        stored observation with 200 and stores nothing; the same id or key with a different
        body, or for another session, is 409. Observations are not edited and have no URL
        of their own: no `Location`, no `ETag`.
        """
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
            actor_id=current_principal().id,
            data=data,
            idempotency_key=key,
        )
        note_created(observation.id)  # the record created, or the one a replay answers with
        db.commit()
        # Observations have no URL of their own and no versions: no Location, no ETag.
        return created_response(
            _obs_out.dump(observation),
            record_id=observation.id,
            etag=None,
            created=created,
            location=False,
        )

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="listObservations",
        tag="sessions",
        replies=[
            Reply(200, "The observations.", schema=ObservationListOut),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str, session_id: str) -> Response:
        """A session's readings

        The patient themself or a linked clinician (admin: 403; 404 as for the session).
        All of the session's observations, oldest first (not paged).
        """
        pid = resolve_patient_id(patient_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=path_id(session_id))
        items = _observations(db, [session.id])[session.id]
        return json_response(_obs_list_out.dump({"items": items}))
