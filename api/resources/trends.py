"""Trends, session effects and the course summary (analytics.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource

from api.auth import require_auth, resolve_patient_id
from api.contract import Reply, operation
from api.db import get_db, settings
from api.errors import ApiError, validation_error
from api.http import json_response, path_id
from api.query import date_range, metric_arg
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
from schemas.analytics import CourseOut, EffectOut, TrendOut

ns = Namespace("trends", path="/patients", description="Trend reports")
_trend_out, _effect_out, _course_out = TrendOut(), EffectOut(), CourseOut()


@ns.route("/<patient_id>/trends")
class Trends(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getTrend",
        tag="trends",
        replies=[
            Reply(200, "The trend.", schema=TrendOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("GetTrendMetric", "GetTrendBucket", "GetTrendFrom", "GetTrendTo"),
    )
    def get(self, patient_id: str) -> Response:
        """A metric over time with its summary

        The patient themself or a linked clinician (admin: 403; anyone else 404). Computed
        exactly as the trend definitions say: buckets hold the mean, n, min and max of the
        measurements whose local date (the date in the UTC offset the phone sent) falls in
        them; only buckets with data are listed, oldest first. `rolling7` (day buckets
        only) is the mean of the daily values of the days in [d-6, d] that have data.
        `slope_per_week` is the least-squares slope of daily values against the day number,
        times 7 (null with fewer than two days). The summary's baseline is the mean over the
        14 days before the first completed session (else the last value before it; with no
        completed session, the first 14 days of data); current is the mean over the 7 days up
        to the latest value within the range; labels are null, not false, when an input is
        missing. Unknown metric or bucket, a bad date, or `from` after `to`: 422.
        """
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
        # The long arrays as they are: orjson writes their dataclasses as the objects
        # BucketOut and RollingOut describe (tests/test_analytics.py holds them equal).
        body["series"] = points
        body["rolling7"] = rolling7(days) if bucket == "day" else None
        return json_response(body)


@ns.route("/<patient_id>/sessions/<session_id>/effect")
class SessionEffect(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getSessionEffect",
        tag="trends",
        replies=[
            Reply(200, "The effect.", schema=EffectOut),
        ],
        problems=(401, 403, 404, 409, 422, 503, 500),
        parameters=("GetSessionEffectMetric",),
    )
    def get(self, patient_id: str, session_id: str) -> Response:
        """How much one session helped, and for how long

        For a completed session starting at s. Its span runs to the next completed session
        (scheduled and cancelled sessions never count). `pre` is the mean of check-ins linked
        to the session with phase pre, else the last measurement in [s - 24 h, s).
        Windows: acute (s, s+4h], day1 (s+12h, s+36h], day3 (s+60h, s+84h], day7 (s+6d, s+8d],
        each cut at the span's end; delta = window - pre; improvement is the delta signed so
        that positive is better. Durability walks the local dates after the session's date:
        the first whose mean is no better than pre ends the effect (effect_ended true); if none,
        the last date with data (effect_ended false: still holding). A session that is not
        completed: 409.
        """
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
    @operation(
        operation_id="getCourse",
        tag="trends",
        replies=[
            Reply(200, "The course.", schema=CourseOut),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str) -> Response:
        """The treatment course at a glance

        Sessions completed; baseline, current, change, response and remission for PHQ-9 and
        mood; and a row per completed session (number, start, drug, route, dose in mg and
        mg/kg, and the mood effect: pre, acute, day1, day7, durability).
        """
        pid = resolve_patient_id(patient_id)
        body = course_summary(db=get_db(), patient_id=pid, rules=settings().rules)
        return json_response(_course_out.dump(body))
