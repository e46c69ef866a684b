"""Writing mood entries: create once, change with history, delete softly; each write
re-evaluates the alert rules it can change, in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.alert_rules import recheck_post_session_drop
from models.base import utcnow
from models.checkins import check_session_link
from models.errors import Conflict, RuleViolation
from models.mood import MoodEntry, MoodEntryVersion
from models.outcomes import RuleSet
from models.records import check_replay, fingerprint, insert_synced_row_once
from models.sync import take_change_numbers


def _snapshot(entry: MoodEntry) -> dict[str, Any]:
    return {
        "occurred_at": entry.occurred_at_local.isoformat(),
        "mood": entry.mood,
        "anxiety": entry.anxiety,
        "energy": entry.energy,
        "sleep_hours": entry.sleep_hours,
        "note": entry.note,
        "session_id": str(entry.session_id) if entry.session_id else None,
        "phase": entry.phase,
    }


def _new_entry(
    *,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    data: Mapping[str, Any],
    idempotency_key: str | None,
) -> MoodEntry:
    entry = MoodEntry(
        id=data.get("id"),
        patient_id=patient_id,
        created_by_id=actor_id,
        mood=data["mood"],
        anxiety=data.get("anxiety"),
        energy=data.get("energy"),
        sleep_hours=data.get("sleep_hours"),
        note=data.get("note"),
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        fingerprint=fingerprint(data),
        idempotency_key=idempotency_key,
    )
    entry.set_occurred_at(data["occurred_at"])
    return entry


def create_entry(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    data: Mapping[str, Any],
    rules: RuleSet,
    idempotency_key: str | None = None,
) -> tuple[MoodEntry, bool]:
    """Store one entry, or return the stored one for a replay; (entry, created?).

    A new entry may raise a post_session_drop alert, in the same transaction.
    """
    check_session_link(
        db=db,
        patient_id=patient_id,
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        occurred_at=data["occurred_at"],
    )
    entry = _new_entry(
        patient_id=patient_id, actor_id=actor_id, data=data, idempotency_key=idempotency_key
    )
    # Every column given, so one Core INSERT stores it: no ORM unit of work on this path.
    if entry.id is None:
        entry.id = uuid.uuid4()
    entry.created_at = entry.updated_at = utcnow()
    entry.version = 1
    stored, created = insert_synced_row_once(
        db=db, record=entry, row=_row(entry), idempotency_key=idempotency_key
    )
    if not created:
        return stored, False
    _recheck(db=db, patient_id=patient_id, entries=[stored], rules=rules)
    return stored, True


@dataclass
class BatchResult:
    """What happened to one item of a batch."""

    index: int
    status: int  # 201 created, 200 replay, 409 clash, 422 invalid
    entry: MoodEntry | None = None
    errors: dict[str, list[str]] | None = None
    detail: str | None = None


def create_entries(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    items: Sequence[tuple[int, Mapping[str, Any]]],
    rules: RuleSet,
) -> dict[int, BatchResult]:
    """Store many valid entries in one round trip where possible; a result per index.

    Replays and clashes are sorted out with one lookup of the supplied ids; the new rows go
    in with one multi-row INSERT. If a concurrent writer wins a race for one of the ids, the
    batch falls back to item-by-item inserts, each in its own savepoint.
    """
    batch = _sort_batch(db=db, patient_id=patient_id, actor_id=actor_id, items=items)
    if batch.fresh:
        _store_fresh(
            db=db,
            patient_id=patient_id,
            actor_id=actor_id,
            fresh=batch.fresh,
            results=batch.results,
            rules=rules,
        )
    _answer_repeats(batch.results, batch.repeats)
    return batch.results


@dataclass
class _SortedBatch:
    """A batch sorted by what each item needs before anything is stored."""

    # Answered already: invalid session links, replays and clashes with stored entries.
    results: dict[int, BatchResult] = field(default_factory=dict)
    # New entries, each id once: (index, entry).
    fresh: list[tuple[int, MoodEntry]] = field(default_factory=list)
    # Ids used again within the batch: (index, index of the first use, fingerprint).
    repeats: list[tuple[int, int, str]] = field(default_factory=list)


def _sort_batch(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    items: Sequence[tuple[int, Mapping[str, Any]]],
) -> _SortedBatch:
    batch = _SortedBatch()
    first_seen: dict[uuid.UUID, tuple[int, str]] = {}
    supplied = [data["id"] for _, data in items if data.get("id") is not None]
    stored = (
        {e.id: e for e in db.scalars(select(MoodEntry).where(MoodEntry.id.in_(supplied)))}
        if supplied
        else {}
    )
    for index, data in items:
        try:
            check_session_link(
                db=db,
                patient_id=patient_id,
                session_id=data.get("session_id"),
                phase=data.get("phase"),
                occurred_at=data["occurred_at"],
            )
        except RuleViolation as invalid:
            batch.results[index] = BatchResult(
                index, 422, errors=invalid.errors, detail=invalid.detail
            )
            continue
        entry = _new_entry(
            patient_id=patient_id, actor_id=actor_id, data=data, idempotency_key=None
        )
        if entry.id is None:
            entry.id = uuid.uuid4()
        if entry.id in stored:
            try:
                check_replay(stored[entry.id], patient_id=patient_id, digest=entry.fingerprint)
                batch.results[index] = BatchResult(index, 200, stored[entry.id])
            except Conflict as clash:
                batch.results[index] = BatchResult(index, 409, detail=clash.detail)
        elif entry.id in first_seen:
            batch.repeats.append((index, first_seen[entry.id][0], entry.fingerprint))
        else:
            first_seen[entry.id] = (index, entry.fingerprint)
            batch.fresh.append((index, entry))
    return batch


def _store_fresh(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor_id: uuid.UUID,
    fresh: list[tuple[int, MoodEntry]],
    results: dict[int, BatchResult],
    rules: RuleSet,
) -> None:
    """One multi-row INSERT, numbered in one step; item by item if an id was taken since."""
    try:
        with db.begin_nested():
            last = take_change_numbers(db=db, patient_id=patient_id, count=len(fresh))
            now = utcnow()
            for offset, (_, entry) in enumerate(fresh):
                entry.change_seq = last - len(fresh) + 1 + offset
                entry.created_at = entry.updated_at = now
                entry.version = 1
            db.execute(insert(MoodEntry), [_row(entry) for _, entry in fresh])
        for index, entry in fresh:
            results[index] = BatchResult(index, 201, entry)
        _recheck(db=db, patient_id=patient_id, entries=[e for _, e in fresh], rules=rules)
    except IntegrityError:
        for index, entry in fresh:
            try:
                stored_entry, created = create_entry(
                    db=db,
                    patient_id=patient_id,
                    actor_id=actor_id,
                    data=_data_of(entry),
                    rules=rules,
                )
                results[index] = BatchResult(index, 201 if created else 200, stored_entry)
            except Conflict as clash:
                results[index] = BatchResult(index, 409, detail=clash.detail)


def _answer_repeats(
    results: dict[int, BatchResult], repeats: Sequence[tuple[int, int, str]]
) -> None:
    """An id repeated within the batch: a replay of its first occurrence, or a clash."""
    for index, first_index, digest in repeats:
        first = results[first_index]
        if first.entry is not None and first.entry.fingerprint == digest:
            results[index] = BatchResult(index, 200, first.entry)
        else:
            results[index] = BatchResult(
                index, 409, detail="This id was already used with a different body."
            )


def _row(entry: MoodEntry) -> dict[str, Any]:
    return {column.key: getattr(entry, column.key) for column in MoodEntry.__table__.columns}


def _data_of(entry: MoodEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "occurred_at": entry.occurred_at_local,
        "mood": entry.mood,
        "anxiety": entry.anxiety,
        "energy": entry.energy,
        "sleep_hours": entry.sleep_hours,
        "note": entry.note,
        "session_id": entry.session_id,
        "phase": entry.phase,
    }


def _keep_history(*, db: Session, entry: MoodEntry, actor_id: uuid.UUID, change: str) -> None:
    db.add(
        MoodEntryVersion(
            entry_id=entry.id,
            version=entry.version,
            snapshot=_snapshot(entry),
            changed_by_id=actor_id,
            change=change,
        )
    )


def update_entry(
    *,
    db: Session,
    entry: MoodEntry,
    actor_id: uuid.UUID,
    changes: Mapping[str, Any],
    rules: RuleSet,
) -> MoodEntry:
    """Apply a partial change, keeping the prior version; re-evaluates the alert rules."""
    merged = {
        name: changes.get(name, getattr(entry, name))
        for name in ("session_id", "phase", "occurred_at")
    }
    check_session_link(db=db, patient_id=entry.patient_id, **merged)
    before = (entry.occurred_at, entry.session_id)
    # Number first: the counter statement autoflushes, and one UPDATE means one version.
    change_seq = take_change_numbers(db=db, patient_id=entry.patient_id)
    _keep_history(db=db, entry=entry, actor_id=actor_id, change="update")
    for key, value in changes.items():
        if key == "occurred_at":
            entry.set_occurred_at(value)
        else:
            setattr(entry, key, value)
    entry.updated_at = utcnow()
    entry.change_seq = change_seq
    db.flush()
    # Where it was matters as much as where it is: it may have been a session's pre value.
    recheck_post_session_drop(
        db=db,
        patient_id=entry.patient_id,
        rules=rules,
        instants=[before[0], entry.occurred_at],
        session_ids=[s for s in (before[1], entry.session_id) if s is not None],
    )
    return entry


def delete_entry(*, db: Session, entry: MoodEntry, actor_id: uuid.UUID, rules: RuleSet) -> None:
    """Soft delete: the row stays as a tombstone that sync reports. A deleted pre check-in
    changes its session's pre value, so the alert rules are re-evaluated."""
    change_seq = take_change_numbers(db=db, patient_id=entry.patient_id)
    _keep_history(db=db, entry=entry, actor_id=actor_id, change="delete")
    entry.deleted_at = entry.updated_at = utcnow()
    entry.change_seq = change_seq
    db.flush()
    _recheck(db=db, patient_id=entry.patient_id, entries=[entry], rules=rules)


def _recheck(
    *, db: Session, patient_id: uuid.UUID, entries: Sequence[MoodEntry], rules: RuleSet
) -> None:
    recheck_post_session_drop(
        db=db,
        patient_id=patient_id,
        rules=rules,
        instants=[e.occurred_at for e in entries],
        session_ids={e.session_id for e in entries if e.session_id is not None},
    )
