"""Trends, session effects and the course summary (analytics.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from marshmallow import ValidationError

from api.auth import require_auth, resolve_patient_id
from api.db import get_db, settings
from api.errors import ApiError, validation_error
from api.http import json_response, path_id
from models.accounts import Role
from models.analytics import (
    BUCKETS,
    METRICS,
    completed_sessions,
    course_summary,
    effects,
    rolling7,
    series,
    slope_per_week,
    summary,
)
from models.sessions import SessionStatus, get_session
from schemas.analytics import CourseOut, EffectOut, TrendOut, dump_buckets, dump_rolling
from schemas.common import query_date

ns = Namespace("trends", path="/patients", description="Trend reports")
_trend_out, _effect_out, _course_out = TrendOut(), EffectOut(), CourseOut()


def metric_arg(default: str | None = None) -> str:
    """``metric`` query parameter: one of the known metrics, else 422."""
    metric = request.args.get("metric", default)
    if metric not in METRICS:
        raise validation_error({"metric": [f"Must be one of: {', '.join(METRICS)}."]})
    return metric


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return query_date(raw)
    except ValidationError as exc:
        raise validation_error({name: list(exc.messages)}) from None


def date_range() -> tuple[date | None, date | None]:
    """``from`` and ``to`` local dates, both inclusive; from after to is 422."""
    date_from, date_to = _date_arg("from"), _date_arg("to")
    if date_from and date_to and date_from > date_to:
        raise validation_error({"from": ["Must not be after `to`."]})
    return date_from, date_to


@ns.route("/<patient_id>/trends")
class Trends(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str) -> Response:
        """A metric's series, rolling mean, slope and summary."""
        pid = resolve_patient_id(patient_id)
        metric = metric_arg()
        bucket = request.args.get("bucket", "day")
        if bucket not in BUCKETS:
            raise validation_error({"bucket": ["Must be day, week or month."]})
        date_from, date_to = date_range()
        db = get_db()
        points = series(
            db=db,
            patient_id=pid,
            metric=metric,
            bucket=bucket,
            date_from=date_from,
            date_to=date_to,
        )
        days = (
            points
            if bucket == "day"
            else series(
                db=db,
                patient_id=pid,
                metric=metric,
                bucket="day",
                date_from=date_from,
                date_to=date_to,
            )
        )
        report = summary(
            db=db,
            patient_id=pid,
            metric=metric,
            rules=settings().rules,
            date_from=date_from,
            date_to=date_to,
        )
        body = _trend_out.dump(
            {
                "metric": metric,
                "direction": METRICS[metric],
                "bucket": bucket,
                "date_from": date_from,
                "date_to": date_to,
                "series": [],
                "rolling7": None,
                "slope_per_week": slope_per_week(days),
                "summary": report,
            }
        )
        # The long arrays go through the written-out dumps (schemas/analytics.py).
        body["series"] = dump_buckets(points)
        body["rolling7"] = dump_rolling(rolling7(days)) if bucket == "day" else None
        return json_response(body)


@ns.route("/<patient_id>/sessions/<session_id>/effect")
class SessionEffect(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str, session_id: str) -> Response:
        """Pre value, windows after the start, deltas and durability of one session."""
        pid = resolve_patient_id(patient_id)
        metric = metric_arg("mood")
        sid = path_id(session_id)
        db = get_db()
        session = get_session(db=db, patient_id=pid, session_id=sid)
        if session.status != SessionStatus.completed:
            raise ApiError(409, "Only a completed session has an effect.", slug="conflict")
        course = completed_sessions(db=db, patient_id=pid)
        found = effects(db=db, patient_id=pid, metric=metric, sessions=course)
        number = next(i for i, s in enumerate(course, start=1) if s.id == sid)
        effect = found[number - 1]
        body = {**_effect_fields(effect), "number": number, "direction": METRICS[metric]}
        return json_response(_effect_out.dump(body))


def _effect_fields(effect: Any) -> dict[str, Any]:
    fields = asdict(effect)
    fields["windows"] = [asdict(w) for w in effect.windows]
    return fields


@ns.route("/<patient_id>/course")
class Course(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str) -> Response:
        """Sessions completed, PHQ-9 and mood outcomes, and each session's mood effect."""
        pid = resolve_patient_id(patient_id)
        body = course_summary(db=get_db(), patient_id=pid, rules=settings().rules)
        return json_response(_course_out.dump(body))
