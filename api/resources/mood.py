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
from api.contract import Reply, operation
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
from schemas.common import SQL_INTEGER_MAX, query_whole_number
from schemas.mood import (
    MoodEntryBatchIn,
    MoodEntryBatchItemsIn,
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
_batch_in, _batch_out = MoodEntryBatchItemsIn(), MoodEntryBatchOut()
# change_seq is an INTEGER column: PostgreSQL refuses a larger parameter.
_MAX_SEQ = SQL_INTEGER_MAX


def entry_view(entry: MoodEntry) -> dict[str, Any]:
    """An entry as MoodEntryOut renders it."""
    return _out.dump(entry)


@ns.route("/<patient_id>/mood-entries")
class MoodEntries(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="createMoodEntry",
        tag="mood",
        replies=[
            Reply(
                200,
                "A replay of an earlier create; the entry as stored then.",
                schema=MoodEntryOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
            Reply(
                201,
                "The new entry.",
                schema=MoodEntryOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        parameters=("IdempotencyKey",),
        body=MoodEntryIn,
    )
    def post(self, patient_id: str) -> Response:
        """Log a mood entry

        The patient themself only (`me` or their own id): a linked clinician gets 403, an
        admin 403; anyone else, and `me` for a non-patient, gets 404 as if the patient did
        not exist.

        `occurred_at` must be RFC 3339 with an offset: a naive time, one more than 5 minutes
        in the future, or one more than a year old is 422. The offset is kept and decides
        `local_date`. `mood`, `anxiety` and `energy` are strict integers 0-10 (`2.5`, `"2"`
        and `true` are 422); `sleep_hours` is a JSON number 0-24. `note` is at most 2000
        characters, kept exactly as sent (no trimming; NUL is 422). Unknown fields are 422.
        `session_id` and `phase` link a check-in to a treatment session and go together (one
        without the other is 422); the session must be a live session of this patient (else
        422 on `session_id`), a `pre` check-in must precede its start and a `post` one
        follow it (else 422 on `phase`).

        Idempotent: send a client-chosen `id` and/or an `Idempotency-Key` header. A repeat
        with the same id or key and the same body returns the stored entry with 200 and
        stores nothing; the same id or key with a different body is 409.
        """
        pid = resolve_patient_for_write(patient_id)
        key = idempotency_key()
        data = load_body(_in)
        db = get_db()
        entry, created = create_entry(
            db=db,
            patient_id=pid,
            actor_id=current_principal().id,
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
    @operation(
        operation_id="listMoodEntries",
        tag="mood",
        replies=[
            Reply(
                200,
                "A page of entries, newest first.",
                schema=MoodEntryListOut,
            ),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self, patient_id: str) -> Response:
        """Mood entries

        The patient themself or a linked clinician (admin: 403; anyone else: 404).

        One page of live entries, newest `occurred_at` first, paged with `limit` and
        `cursor`; `next_cursor` is null on the last page. The offline-sync feed is
        `GET .../mood-entries/changes?since=` (`syncMoodEntries`); the older form of it,
        this path with `?updated_since=`, still answers the sync feed for phones that use it.
        """
        pid = resolve_patient_id(patient_id)
        db = get_db()
        since = request.args.get("updated_since")
        if since is not None:  # the sync feed's older form, kept for phones that use it
            return _sync(db, pid, since, field="updated_since")
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
        items = [row[0] for row in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<patient_id>/mood-entries/changes")
class MoodEntryChanges(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="syncMoodEntries",
        tag="mood",
        replies=[
            Reply(200, "Changes after the cursor, oldest first.", schema=MoodEntrySyncOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("SyncSince", "Limit"),
    )
    def get(self, patient_id: str) -> Response:
        """The sync feed: mood entries changed since a cursor

        The patient themself or a linked clinician (admin: 403; anyone else: 404).

        Every entry that changed (created, edited or deleted) after the cursor `since`,
        oldest change first, at most `limit` of them. `since=0` starts from the beginning.
        An entry appears once, in its latest state; a deleted one appears as a tombstone
        (`deleted: true`, `entry: null`, `updated_at` = deletion time). Store `next_cursor`
        and send it as the next `since`; while `has_more` is true there are more changes to
        fetch right away. When nothing changed, `items` is empty and `next_cursor` repeats
        the cursor sent. Changes commit in cursor order, so a stored cursor never skips a
        change. A `since` that is not a number this API issued is 422; `cursor` is not taken
        (422).
        """
        pid = resolve_patient_id(patient_id)
        return _sync(get_db(), pid, request.args.get("since"), field="since")


def _sync(db: Any, patient_id: uuid.UUID, since_raw: str | None, *, field: str) -> Response:
    """One page of the sync feed; ``field`` names the cursor parameter in errors."""
    try:
        if since_raw is None:
            raise ValueError
        since = query_whole_number(since_raw, low=0, high=_MAX_SEQ)
    except ValueError:
        raise validation_error({field: ["Must be 0 or a cursor from an earlier sync."]}) from None
    if "cursor" in request.args:
        raise validation_error({"cursor": [f"Sync pages with {field} alone."]})
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
            "entry": None if e.deleted_at is not None else e,
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
    @operation(
        operation_id="createMoodEntryBatch",
        tag="mood",
        replies=[
            Reply(200, "One result per submitted item, with counts.", schema=MoodEntryBatchOut),
        ],
        problems=(400, 401, 403, 404, 413, 415, 422, 429, 500),
        body=MoodEntryBatchIn,
    )
    def post(self, patient_id: str) -> Response:
        """Upload entries saved offline

        The patient themself only (linked clinician and admin: 403; anyone else: 404).

        `entries` holds 1 to 500 objects; an empty list, more than 500 (e.g. 501), or an item
        that is not a JSON object fails the whole request with 422 and stores nothing.
        Otherwise each item is validated on its own as a `MoodEntryIn` (same rules as a
        single create, including the `session_id`/`phase` rules) and the answer is 200 with one
        result per item, in request order:
        `status` 201 stored, 200 already stored (same `id` and body, including an id
        repeated within the batch), 409 the `id` was used with a different body, 422 the
        item is invalid (`problem.errors` names its fields). A bad item fails only itself.
        `entry` is the stored entry (null for 409 and 422) and `problem` says why an item
        was not stored (null otherwise). Items without `id` get a new one, so send ids to
        make a retried upload safe.
        """
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
            actor_id=current_principal().id,
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
                    "entry": outcome.entry,
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
    @operation(
        operation_id="getMoodEntry",
        tag="mood",
        replies=[
            Reply(
                200,
                "The entry.",
                schema=MoodEntryOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """One mood entry

        The patient themself or a linked clinician (admin: 403). 404 for an entry that is
        unknown, deleted, or another patient's, and for a patient the caller may not see.
        """
        pid = resolve_patient_id(patient_id)
        entry = get_entry(db=get_db(), patient_id=pid, entry_id=entry_id)
        return json_response(entry_view(entry), etag=entry.etag)

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="updateMoodEntry",
        tag="mood",
        replies=[
            Reply(
                200,
                "The updated entry.",
                schema=MoodEntryOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=MoodEntryUpdate,
    )
    def patch(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """Change a mood entry

        The patient themself only (linked clinician and admin: 403; 404 as for GET). Send
        only the fields that change; the same rules as on create apply (unknown fields, a
        naive, future or year-old `occurred_at`, non-integer scales, a bad `session_id` and
        `phase` pairing in the merged result: 422). Needs `If-Match`
        with the current ETag: 428 without it, 412 when stale (checked before the body is
        read). The prior version is kept in the entry's history; `version` and the ETag go
        up by one, and the change appears in the sync feed.
        """
        pid = resolve_patient_for_write(patient_id)
        db = get_db()
        entry = get_entry(db=db, patient_id=pid, entry_id=entry_id)
        require_if_match(entry.etag)
        changes = load_body(_update)
        update_entry(
            db=db,
            entry=entry,
            actor_id=current_principal().id,
            changes=changes,
            rules=settings().rules,
        )
        db.commit()
        return json_response(entry_view(entry), etag=entry.etag)

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="deleteMoodEntry",
        tag="mood",
        replies=[
            Reply(204, "Deleted."),
        ],
        problems=(401, 403, 404, 412, 428, 429, 500),
        parameters=("IfMatch",),
    )
    def delete(self, patient_id: str, entry_id: uuid.UUID) -> Response:
        """Delete a mood entry

        The patient themself only (linked clinician and admin: 403; 404 as for GET). Needs
        `If-Match`: 428 without it, 412 when stale. The entry disappears from reads (404
        afterwards) and the sync feed reports it as a tombstone.
        """
        pid = resolve_patient_for_write(patient_id)
        db = get_db()
        entry = get_entry(db=db, patient_id=pid, entry_id=entry_id)
        require_if_match(entry.etag)
        delete_entry(db=db, entry=entry, actor_id=current_principal().id, rules=settings().rules)
        db.commit()
        return empty_response()
