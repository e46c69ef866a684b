"""What the phone should ask the patient for now and next.

Windows follow the patient's own time zone for days (so a daylight-saving day is 23 or 25
hours long) and exact hours around sessions. Post-session windows are the effect windows of
analytics.md, so every check-in the phone prompts for counts in the session's effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.accounts import User
from models.assessments import Assessment
from models.mood import MoodEntry
from models.sessions import SessionStatus, TreatmentSession

PHQ9_INTERVAL = timedelta(days=14)
PHQ9_WINDOW = timedelta(days=7)
LOOKAHEAD = timedelta(days=7)
PRE_WINDOW = timedelta(hours=24)
# (kind, start offset, end offset) after a completed session's start: analytics.md windows
# acute (s, s+4h] (asked from +2 h, once the acute effects settle), day1 and day7.
POST_WINDOWS = (
    ("post_session_4h", timedelta(hours=2), timedelta(hours=4)),
    ("post_session_24h", timedelta(hours=12), timedelta(hours=36)),
    ("post_session_7d", timedelta(days=6), timedelta(days=8)),
)


@dataclass(frozen=True)
class DueItem:
    """One thing to ask for: its kind, instrument, window, session and whether it is done."""

    kind: str
    instrument: str
    window_start: datetime
    window_end: datetime
    session_id: uuid.UUID | None
    done: bool


def local_day_bounds(day: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Start and end (exclusive), in UTC, of the local calendar day containing ``day``.

    Converted to UTC on purpose: Python subtracts two datetimes of the same zone by wall
    clock, which would call a daylight-saving day 24 hours long.
    """
    local = day.astimezone(zone).date()
    start = datetime.combine(local, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(local + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
    return start, end


def due_items(
    *,
    db: Session,
    patient: User,
    now: datetime,
    last_questionnaire: Callable[[str], datetime | None],
) -> list[DueItem]:
    """The patient's current and upcoming check-ins, earliest window first."""
    zone = ZoneInfo(patient.timezone)
    horizon = now + LOOKAHEAD
    today_start, _ = local_day_bounds(now, zone)
    items = _mood_check_ins(db=db, patient=patient, now=now, zone=zone, horizon=horizon)
    phq9 = _next_phq9(last_questionnaire("phq9"), now, today_start, horizon)
    if phq9 is not None:
        items.append(phq9)
    return sorted(items, key=lambda i: (i.window_start, i.kind))


# (kind, instrument, window start, window end, session id)
CheckInWindow = tuple[str, str, datetime, datetime, uuid.UUID | None]


def _mood_windows(
    *, db: Session, patient: User, now: datetime, zone: ZoneInfo, horizon: datetime
) -> list[CheckInWindow]:
    """The mood check-ins open now or before ``horizon``: today and tomorrow, and those
    around the patient's sessions."""
    sessions = db.scalars(
        select(TreatmentSession).where(
            TreatmentSession.patient_id == patient.id,
            TreatmentSession.deleted_at.is_(None),
            TreatmentSession.started_at > now - POST_WINDOWS[-1][2],
            TreatmentSession.started_at <= horizon + PRE_WINDOW,
        )
    ).all()
    wanted: list[CheckInWindow] = []
    today_start, today_end = local_day_bounds(now, zone)
    tomorrow_start, tomorrow_end = local_day_bounds(today_end, zone)
    wanted.append(("daily_mood", "mood", today_start, today_end, None))
    wanted.append(("daily_mood", "mood", tomorrow_start, tomorrow_end, None))
    for s in sessions:
        if s.status == SessionStatus.scheduled:
            wanted.append(("pre_session", "mood", s.started_at - PRE_WINDOW, s.started_at, s.id))
        elif s.status == SessionStatus.completed:
            wanted.extend(
                (kind, "mood", s.started_at + a, s.started_at + b, s.id)
                for kind, a, b in POST_WINDOWS
            )
    return [w for w in wanted if w[3] > now and w[2] <= horizon]


def _mood_check_ins(
    *, db: Session, patient: User, now: datetime, zone: ZoneInfo, horizon: datetime
) -> list[DueItem]:
    """The mood check-in windows, each marked done when an entry falls inside it."""
    wanted = _mood_windows(db=db, patient=patient, now=now, zone=zone, horizon=horizon)
    # One query for every mood entry that could fill any window.
    earliest = min(w[2] for w in wanted)
    latest = max(w[3] for w in wanted)
    logged = db.scalars(
        select(MoodEntry.occurred_at).where(
            MoodEntry.patient_id == patient.id,
            MoodEntry.deleted_at.is_(None),
            MoodEntry.occurred_at >= earliest,
            MoodEntry.occurred_at < latest,
        )
    ).all()
    return [
        DueItem(kind, instrument, start, end, session_id, any(start <= t < end for t in logged))
        for kind, instrument, start, end, session_id in wanted
    ]


def _next_phq9(
    last_phq9: datetime | None, now: datetime, today_start: datetime, horizon: datetime
) -> DueItem | None:
    """The PHQ-9 due now (from today) when the last is PHQ9_INTERVAL old, else the next one
    if it falls due before ``horizon``."""
    if last_phq9 is None or last_phq9 <= now - PHQ9_INTERVAL:
        return DueItem("questionnaire", "phq9", today_start, today_start + PHQ9_WINDOW, None, False)
    next_start = last_phq9 + PHQ9_INTERVAL
    if next_start <= horizon:
        return DueItem("questionnaire", "phq9", next_start, next_start + PHQ9_WINDOW, None, False)
    return None


def last_questionnaire_at(*, db: Session, patient_id: uuid.UUID, code: str) -> datetime | None:
    """When the patient last answered this instrument (live forms only)."""
    return db.scalar(
        select(func.max(Assessment.occurred_at)).where(
            Assessment.patient_id == patient_id,
            Assessment.instrument == code,
            Assessment.deleted_at.is_(None),
        )
    )
