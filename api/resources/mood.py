"""Mood entries: the phone's daily log, its offline batch and its sync feed."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from marshmallow import ValidationError
from sqlalchemy import select

from api.audit import note_created
from api.auth import current_principal, require_auth, resolve_patient_for_write, resolve_patient_id
from api.db import get_db, settings
from api.errors import from_validation, validation_error
from api.http import (
    created_response,
    empty_response,
    idempotency_key,
    json_response,
    keyset_page,
    load_body,
    page_limit,
    require_if_match,
)
from models.accounts import Role
from models.mood import MoodEntry, get_entry
from models.mood_writes import create_entries, create_entry, delete_entry, update_entry
from schemas.common import SQL_INTEGER_MAX, format_offset, query_whole_number
from schemas.mood import (
    MoodEntryBatchIn,
    MoodEntryBatchOut,
    MoodEntryIn,
    MoodEntryListOut,
    MoodEntryOut,
    MoodEntrySyncOut,
    MoodEntryUpdate,
)

ns = Namespace("mood-entries", path="/patients", description="Mood entries")
_in, _update, _out = MoodEntryIn(), MoodEntryUpdate(), MoodEntryOut()
_list_out, _sync_out = MoodEntryListOut(), MoodEntrySyncOut()
_batch_in, _batch_out = MoodEntryBatchIn(), MoodEntryBatchOut()
# change_seq is an INTEGER column: PostgreSQL refuses a larger parameter.
_MAX_SEQ = SQL_INTEGER_MAX


def entry_data(entry: MoodEntry) -> dict[str, Any]:
    """An entry's fields as MoodEntryOut expects them (not yet serialised)."""
    return {
        "id": entry.id,
        "patient_id": entry.patient_id,
        "occurred_at": entry.occurred_at,
        "utc_offset": format_offset(entry.utc_offset_minutes),
        "local_date": entry.local_date,
        "mood": entry.mood,
        "anxiety": entry.anxiety,
        "energy": entry.energy,
        "sleep_hours": entry.sleep_hours,
        "note": entry.note,
        "session_id": entry.session_id,
        "phase": entry.phase,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "version": entry.version,
    }


def entry_view(entry: MoodEntry) -> dict[str, Any]:
    """An entry as MoodEntryOut renders it."""
    return _out.dump(entry_data(entry))


@ns.route("/<patient_id>/mood-entries")
class MoodEntries(Resource):
    @require_auth(Role.patient, Role.clinician)
    def post(self, patient_id: str) -> Response:
        """Log a mood entry (the patient); a replay of the same id or key returns it (200)."""
        pid = resolve_patient_for_write(patient_id)
        key = idempotency_key()
        data = load_body(_in)
        db = get_db()
        entry, created = create_entry(
            db=db,
            patient_id=pid,
            actor_id=current_principal().user.id,
            data=data,
            rules=settings().rules,
            idempotency_key=key,
        )
        note_created(entry.id)  # the record created, or the one a replay answers with
        db.commit()
        return created_response(
            entry_view(entry), record_id=entry.id, etag=entry.etag, created=created
        )

    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str) -> Response:
        """Entries newest first; with `updated_since`, the sync feed of changes instead."""
        pid = resolve_patient_id(patient_id)
        db = get_db()
        since = request.args.get("updated_since")
        if since is not None:
            return _sync(db, pid, since)
        stmt = (
            select(MoodEntry)
            .where(MoodEntry.patient_id == pid, MoodEntry.deleted_at.is_(None))
            .order_by(MoodEntry.occurred_at.desc(), MoodEntry.id.desc())
        )
        rows, next_cursor = keyset_page(
            db,
            stmt,
            keys=(MoodEntry.occurred_at, MoodEntry.id),
            key_of=lambda row: (row[0].occurred_at, row[0].id),
        )
        items = [entry_data(row[0]) for row in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


def _sync(db: Any, patient_id: uuid.UUID, since_raw: str) -> Response:
    try:
        since = query_whole_number(since_raw, low=0, high=_MAX_SEQ)
    except ValueError:
        raise validation_error(
            {"updated_since": ["Must be 0 or a cursor from an earlier sync."]}
        ) from None
    if "cursor" in request.args:
        raise validation_error({"cursor": ["Sync pages with updated_since alone."]})
    limit = page_limit()
    rows = db.scalars(
        select(MoodEntry)
        .where(MoodEntry.patient_id == patient_id, MoodEntry.change_seq > since)
        .order_by(MoodEntry.change_seq)
        .limit(limit + 1)
    ).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "id": e.id,
            "deleted": e.deleted_at is not None,
            "updated_at": e.updated_at,
            "entry": None if e.deleted_at is not None else entry_data(e),
        }
        for e in rows
    ]
    next_cursor = str(rows[-1].change_seq) if rows else str(since)
    return json_response(
        _sync_out.dump({"items": items, "next_cursor": next_cursor, "has_more": has_more})
    )


@ns.route("/<patient_id>/mood-entries/batch")
class MoodEntryBatch(Resource):
    @require_auth(Role.patient, Role.clinician)
    def post(self, patient_id: str) -> Response:
        """Store up to 500 offline entries; one result per item, a bad item fails alone."""
        pid = resolve_patient_for_write(patient_id)
        raw_items = load_body(_batch_in)["entries"]
        valid: list[tuple[int, dict[str, Any]]] = []
        problems: dict[int, dict[str, Any]] = {}
        for index, raw in enumerate(raw_items):
            try:
                valid.append((index, _in.load(raw)))
            except ValidationError as exc:
                error = from_validation(exc)
                problems[index] = {
                    "status": 422,
                    "title": error.title,
                    "detail": error.detail,
                    "errors": error.errors,
                }
        db = get_db()
        outcomes = create_entries(
            db=db,
            patient_id=pid,
            actor_id=current_principal().user.id,
            items=valid,
            rules=settings().rules,
        )
        db.commit()
        results = []
        for index in range(len(raw_items)):
            if index in problems:
                results.append(
                    {"index": index, "status": 422, "entry": None, "problem": problems[index]}
                )
                continue
            outcome = outcomes[index]
            problem = None
            if outcome.status == 409:
                problem = {"status": 409, "title": "Conflict", "detail": outcome.detail or ""}
            elif outcome.status == 422:
                problem = {
                    "status": 422,
                    "title": "Validation failed",
                    "detail": outcome.detail or "",
                    "errors": outcome.errors or {},
                }
            results.append(
                {
                    "index": index,
                    "status": outcome.status,
                    "entry": entry_data(outcome.entry) if outcome.entry is not None else None,
                    "problem": problem,
                }
            )
        counts = {s: sum(1 for r in results if r["status"] == s) for s in (200, 201)}
        body = {
            "results": results,
            "created": counts[201],
            "duplicates": counts[200],
            "failed": len(results) - counts[200] - counts[201],
        }
        return json_response(_batch_out.dump(body))


# uuid: else "batch" would match <entry_id> too, and OPTIONS and 405 on /batch would
# advertise GET, PATCH and DELETE.
@ns.route("/<patient_id>/mood-entries/<uuid:entry_id>")
class MoodEntryItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """One entry."""
        pid = resolve_patient_id(patient_id)
        entry = get_entry(db=get_db(), patient_id=pid, entry_id=entry_id)
        return json_response(entry_view(entry), etag=entry.etag)

    @require_auth(Role.patient, Role.clinician)
    def patch(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """Change an entry (If-Match); the prior version is kept."""
        pid = resolve_patient_for_write(patient_id)
        db = get_db()
        entry = get_entry(db=db, patient_id=pid, entry_id=entry_id)
        require_if_match(entry.etag)
        changes = load_body(_update)
        update_entry(
            db=db,
            entry=entry,
            actor_id=current_principal().user.id,
            changes=changes,
            rules=settings().rules,
        )
        db.commit()
        return json_response(entry_view(entry), etag=entry.etag)

    @require_auth(Role.patient, Role.clinician)
    def delete(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """Delete an entry (If-Match); sync reports it as a tombstone."""
        pid = resolve_patient_for_write(patient_id)
        db = get_db()
        entry = get_entry(db=db, patient_id=pid, entry_id=entry_id)
        require_if_match(entry.etag)
        delete_entry(
            db=db, entry=entry, actor_id=current_principal().user.id, rules=settings().rules
        )
        db.commit()
        return empty_response()
