"""Query arguments several views read the same way: a metric, a local date range."""

from __future__ import annotations

from datetime import date

from flask import request
from marshmallow import ValidationError

from api.errors import validation_error
from models.analytics import METRICS
from schemas.common import query_date


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
