"""The clinician report (JSON, CSV, FHIR, HTML), the trend chart and the patient's export."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any

from flask import Response, current_app, request, stream_with_context
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth, resolve_patient_id
from api.contract import API_HEADERS, Reply, operation
from api.db import get_db, settings
from api.errors import validation_error
from api.http import encode_json, json_response
from api.query import date_range, metric_arg
from api.render.chart import SVG_MEDIA_TYPE, render_chart
from api.render.page import CONTENT_SECURITY_POLICY, HTML_MEDIA_TYPE, render_report_page
from models.accounts import Role, User
from models.analytics import baseline, completed_sessions
from models.base import utcnow
from models.charts import build_chart
from models.reports import (
    CSV_HEADER,
    MeasurementRow,
    Records,
    export_records,
    fhir_records,
    get_patient,
    measurement_rows,
    report,
)
from models.reports import Report as ComputedReport
from schemas.common import Read, format_offset
from schemas.fhir import FHIR_JSON, bundle
from schemas.reports import ExportOut, ReportOut
from schemas.sessions import session_read

ns = Namespace("reports", path="/patients", description="Clinician reports and charts")
export_ns = Namespace("export", path="/me", description="The patient's own export")
_report_out, _export_out = ReportOut(), ExportOut()
CSV_TYPE = "text/csv"
FORMATS = ("json", "csv", "fhir", "html")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def csv_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet will run as a formula; numbers stay as they are."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.10g}"


def _csv_offset(minutes: int) -> str:
    # "UTC-08:00", not "-08:00": a bare leading sign reads as a formula or a negative time.
    return f"UTC{format_offset(minutes)}"


def csv_record(row: MeasurementRow) -> list[str]:
    """One measurement as CSV cells, in CSV_HEADER's order."""
    return [
        csv_cell(row.local_date.isoformat()),
        csv_cell(row.occurred_at.isoformat().replace("+00:00", "Z")),
        csv_cell(_csv_offset(row.utc_offset_minutes)),
        csv_cell(row.metric),
        csv_cell(_number(row.value)),
        csv_cell("" if row.session_number is None else row.session_number),
        csv_cell(row.phase or ""),
    ]


def csv_lines(rows: Iterable[MeasurementRow]) -> Iterator[str]:
    """The header, then one CSV line per row, each produced only when asked for."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    for row in rows:
        writer.writerow(csv_record(row))
        yield flush()


def report_format() -> str:
    """``format`` wins; else the Accept header (text/csv, application/fhir+json, text/html);
    else JSON (also for */*: JSON is listed first, so it wins every tie)."""
    asked = request.args.get("format")
    if asked is not None:
        if asked not in FORMATS:
            raise validation_error({"format": [f"Must be one of: {', '.join(FORMATS)}."]})
        return asked
    offered = ["application/json", CSV_TYPE, FHIR_JSON, HTML_MEDIA_TYPE]
    best = request.accept_mimetypes.best_match(offered)
    return {CSV_TYPE: "csv", FHIR_JSON: "fhir", HTML_MEDIA_TYPE: "html"}.get(best or "", "json")


def fhir_response(document: dict[str, Any]) -> Response:
    """A FHIR resource as application/fhir+json."""
    return current_app.response_class(
        encode_json(document),
        mimetype=FHIR_JSON,
    )


def records_bundle(records: Records) -> dict[str, Any]:
    """The FHIR Bundle of loaded records (completed sessions only)."""
    return bundle(
        patient=records.patient,
        mood_entries=records.mood_entries,
        assessments=records.assessments,
        sessions=records.completed_sessions,
        session_numbers=records.session_numbers,
        generated_at=utcnow(),
    )


def csv_report(patient_id: uuid.UUID, date_from: date | None, date_to: date | None) -> Response:
    """The report's measurements as a streamed CSV attachment."""
    factory = current_app.extensions["moodtrack"].session_factory

    def generate() -> Iterator[str]:
        # Its own session: the request's is closed at teardown, before the body streams;
        # this one is closed when the stream ends or the client goes away.
        with factory() as db:
            rows = measurement_rows(
                db=db, patient_id=patient_id, date_from=date_from, date_to=date_to
            )
            yield from csv_lines(rows)

    stamp = utcnow().date().isoformat()
    return current_app.response_class(
        stream_with_context(generate()),
        mimetype=CSV_TYPE,
        headers={
            # No name in the file name: downloads folders are not private.
            "Content-Disposition": f'attachment; filename="moodtrack-report-{stamp}.csv"',
        },
    )


def report_document(
    patient: User, found: ComputedReport, date_from: date | None, date_to: date | None
) -> dict[str, Any]:
    """The report as ReportOut dumps it: the JSON body, and what the HTML page prints."""
    body = {
        "patient": {
            "id": patient.id,
            "display_name": patient.display_name,
            "timezone": patient.timezone,
        },
        "generated_at": utcnow(),
        "date_from": date_from,
        "date_to": date_to,
        **{name: getattr(found, name) for name in REPORT_PARTS},
    }
    return _report_out.dump(body)


# The parts of models.reports.Report that ReportOut dumps as they are.
REPORT_PARTS = (
    "course",
    "trends",
    "counts",
    "period",
    "questionnaires",
    "adherence",
    "open_alerts",
    "charts",
    "definitions",
)


def html_response(page: str) -> Response:
    """A page of health data: its own CSP (inline styles only, nothing external)."""
    response = current_app.response_class(page, mimetype=HTML_MEDIA_TYPE)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _computed_report(
    pid: uuid.UUID, date_from: date | None, date_to: date | None
) -> tuple[dict[str, Any], ComputedReport]:
    """The report as ReportOut dumps it, and the computed report it came from."""
    db = get_db()
    patient = get_patient(db=db, patient_id=pid)
    found = report(
        db=db,
        patient=patient,
        rules=settings().rules,
        now=utcnow(),
        date_from=date_from,
        date_to=date_to,
        include_alerts=current_principal().role == Role.clinician,
    )
    return report_document(patient, found, date_from, date_to), found


def json_report(pid: uuid.UUID, date_from: date | None, date_to: date | None) -> Response:
    """The report as JSON (ReportOut)."""
    document, _found = _computed_report(pid, date_from, date_to)
    return json_response(document)


def html_report(pid: uuid.UUID, date_from: date | None, date_to: date | None) -> Response:
    """The report as one printable HTML page, drawn from the same computed report."""
    document, found = _computed_report(pid, date_from, date_to)
    page = render_report_page(
        document=document,
        charts=found.charts,
        crisis_text=settings().crisis_text,
        crisis_resources=settings().crisis_resources,
    )
    return html_response(page)


def fhir_report(pid: uuid.UUID, date_from: date | None, date_to: date | None) -> Response:
    """The report as a FHIR R4 Bundle."""
    records = fhir_records(db=get_db(), patient_id=pid, date_from=date_from, date_to=date_to)
    return fhir_response(records_bundle(records))


# Each representation of the report, by its ``format`` name (FORMATS).
REPRESENTATIONS: dict[str, Callable[[uuid.UUID, date | None, date | None], Response]] = {
    "json": json_report,
    "csv": csv_report,
    "fhir": fhir_report,
    "html": html_report,
}
# Every report operation answers only after the access check (404 for an outsider comes
# before 422 for a bad date), with the same audited read of "report" (api.audit).
REPORT_PROBLEMS = (401, 403, 404, 422, 503, 500)
REPORT_RANGE = ("GetReportFrom", "GetReportTo")
# Text bodies as plain strings: a generated client returns the text as it came (a string
# with format: binary would make openapi-python-client wrap text in BytesIO and fail).
TEXT = {"type": "string"}
FHIR_BUNDLE = {"$ref": "#/components/schemas/FhirBundle"}


def _report_in(kind: str, patient_id: str) -> Response:
    """The report in one representation, for a typed operation."""
    pid = resolve_patient_id(patient_id)
    date_from, date_to = date_range()
    return REPRESENTATIONS[kind](pid, date_from, date_to)


@ns.route("/<patient_id>/report")
class Report(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getReport",
        tag="trends",
        replies=[
            Reply(
                200,
                "The report as JSON; in the compatibility forms, as `format` or `Accept` chose.",
                schema=ReportOut,
                more={
                    "text/csv": TEXT,
                    FHIR_JSON: FHIR_BUNDLE,
                    "text/html": TEXT,
                },
                headers=("X-Request-ID", "Cache-Control", "Content-Security-Policy"),
            ),
        ],
        problems=REPORT_PROBLEMS,
        parameters=(*REPORT_RANGE, "GetReportFormat"),
    )
    def get(self, patient_id: str) -> Response:
        """The clinician report as JSON

        The patient themself or a linked clinician (admin: 403; anyone else 404). Every
        representation of the report is a read of health data: audited as a read of
        `report`, `Cache-Control: no-store`.

        `ReportOut`: the patient's id, display name and time zone; the course summary
        exactly as `GET .../course` gives it (not limited by `from`/`to`); for mood,
        anxiety, energy, sleep_hours, phq9, gad7 and qids_sr16 the days with data,
        measurements, mean, slope per week and the trend summary over the range (as
        `GET .../trends`); counts of the records in the range; the `period` the report
        covers (`from`/`to` when given, else the first record's local date to the patient's
        local today); every questionnaire in the range (date, instrument, total, band,
        whether the self-harm item was positive); mood adherence over the last 14 local
        days; `open_alerts` (unacknowledged; null when the patient asks: alerts are the care
        team's); the `charts` the page draws (PHQ-9 over the period, mood over its last 84
        days: each point with its local date, value, the number of measurements behind it
        and, on a session's local date, whether it is before the session's start or from it
        on; the gaps no line crosses, the sessions, the baseline and the latest point); and
        the `definitions` the figures follow (rule-set version, windows, cut-offs, the
        charts' join limits).

        The other representations have operations of their own, each with one media type:
        `.../report.csv` (getReportCsv), `.../report.fhir.json` (getReportFhir) and
        `.../report.html` (getReportHtml); a generated client calls those. Compatibility:
        this path still gives them when `format` (`csv`, `fhir`, `html`, `json`) asks, else
        when the `Accept` header prefers `text/csv`, `application/fhir+json` or `text/html`
        (anything else, `*/*` included, gets JSON), with the same bodies as those
        operations. They stay declared in this 200 because the contract describes every
        answer the server gives (the test client validates each one); a generator reads
        `application/json`, listed first, as this operation's type.

        `from`/`to` (local dates, inclusive) bound the measurements and counts. A bad date,
        `from` after `to` or an unknown `format`: 422.
        """
        pid = resolve_patient_id(patient_id)
        date_from, date_to = date_range()
        return REPRESENTATIONS[report_format()](pid, date_from, date_to)


@ns.route("/<patient_id>/report.csv")
class ReportCsv(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getReportCsv",
        tag="trends",
        replies=[
            Reply(200, "The report's measurements as CSV.", media=CSV_TYPE, body=TEXT),
        ],
        problems=REPORT_PROBLEMS,
        parameters=REPORT_RANGE,
    )
    def get(self, patient_id: str) -> Response:
        """The report's measurements as CSV

        Access, audit and `from`/`to` as for `GET .../report`; the body is the one
        `.../report?format=csv` gives. Streamed, as an attachment: a header row, then one row
        per measurement ordered by `occurred_at`: `local_date`, `occurred_at` (UTC, RFC
        3339), `utc_offset` (the offset the phone sent, written `UTC-08:00` so no
        spreadsheet reads it as a formula), `metric`, `value`, `session_number` (for a
        check-in, the number of its own session, so a pre check-in carries the session it
        precedes, empty if that session is not completed; otherwise the last completed
        session started at or before the measurement, the session whose span holds it;
        empty before the first) and `phase` (`pre`, `post` or empty). No cell starts with
        `=`, `+`, `-` or `@` unless it is a number.
        """
        return _report_in("csv", patient_id)


@ns.route("/<patient_id>/report.fhir.json")
class ReportFhir(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getReportFhir",
        tag="trends",
        replies=[
            Reply(200, "The report as a FHIR R4 Bundle.", media=FHIR_JSON, body=FHIR_BUNDLE),
        ],
        problems=REPORT_PROBLEMS,
        parameters=REPORT_RANGE,
    )
    def get(self, patient_id: str) -> Response:
        """The report as a FHIR R4 Bundle

        Access, audit and `from`/`to` as for `GET .../report` (sessions by the local date
        they started); the body is the one `.../report?format=fhir` gives. An R4 Bundle of
        type `collection` with the Patient; per assessment a QuestionnaireResponse (item
        linkIds are LOINC item codes where verified: PHQ-9 items and difficulty item;
        answers of PHQ-9 and GAD-7 items as LOINC answer codes with their score as
        `ordinalValue`) and an Observation of the total (category `survey`; LOINC 44261-6
        PHQ-9, 70274-6 GAD-7, otherwise `urn:moodtrack:instrument|<code>`; `derivedFrom`
        the QuestionnaireResponse); an Observation per mood-entry value
        (`urn:moodtrack:metric|mood`, `anxiety`, `energy`, `sleep_hours`, the last in UCUM
        hours); and a Procedure per completed session (the drug as code text; esketamine
        with RxNorm 2201623 in `usedCode`). Intra-bundle references are `urn:uuid:` full
        URLs.
        """
        return _report_in("fhir", patient_id)


@ns.route("/<patient_id>/report.html")
class ReportHtml(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getReportHtml",
        tag="trends",
        replies=[
            Reply(
                200,
                "The report as one printable HTML page.",
                media=HTML_MEDIA_TYPE,
                body=TEXT,
                headers=(*API_HEADERS, "Content-Security-Policy"),
            ),
        ],
        problems=REPORT_PROBLEMS,
        parameters=REPORT_RANGE,
    )
    def get(self, patient_id: str) -> Response:
        """The report as one printable HTML page

        Access, audit and `from`/`to` as for `GET .../report`; the body is the one
        `.../report?format=html` gives. One self-contained page a clinician reads or prints
        (headline, the PHQ-9 and mood charts with session markers, the session table, the
        questionnaire table, adherence, definitions, the safety line), drawn from the same
        computed report as the JSON: each figure on it is marked up with the JSON pointer it
        came from (`<data value="12.5" data-key="/course/phq9/current">`). Inline CSS and SVG
        only: no script, no external request, and a `Content-Security-Policy` that allows
        nothing else. A print stylesheet gives A4 or Letter pages with table headers
        repeated and no row cut across pages.
        """
        return _report_in("html", patient_id)


@ns.route("/<patient_id>/chart.svg")
class Chart(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getTrendChart",
        tag="trends",
        replies=[
            Reply(
                200,
                "The chart.",
                body=TEXT,
                media="image/svg+xml",
            ),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("GetTrendChartMetric", "GetTrendChartFrom", "GetTrendChartTo"),
    )
    def get(self, patient_id: str) -> Response:
        """A metric's chart as SVG

        The patient themself or a linked clinician (admin: 403; anyone else 404). The chart
        of `metric` (default `mood`), drawn as the report's charts are (see `ChartOut`):
        - points are what was measured: one per questionnaire for an instrument (titled
          e.g. "PHQ-9 total"); for mood, anxiety, energy and sleep one per local day, the
          day's mean, except on a completed session's local date, where the entries before
          its start (a hollow square left of the session line) and those from its start on
          (a triangle right of it) are separate marks;
        - a line joins consecutive points only when their local dates are at most 1.5 usual
          intervals apart (daily values: consecutive days; PHQ-9 and GAD-7: 21 days, the
          14-day schedule plus the 7 days the phone asks; weekly instruments: 10 days); a
          longer stretch is a hatched gap with no line, labelled with its length;
        - the baseline (analytics.md) is a labelled dash-dot line, the latest point is
          circled and labelled with its value, each completed session in the range is a
          dashed line labelled S and its number, instruments with severity bands have them
          shaded and named; counts use singular and plural ("1 day with data").
        The y axis spans the metric's whole range (mood, anxiety, energy 0-10, sleep 0-24 h,
        PHQ-9 and QIDS-SR16 0-27, GAD-7 0-21, MADRS 0-60, CADSS 0-92); x runs in time
        order. The title says what the points are and whether higher or lower is better.
        Marks differ by shape and lines by dash, so the chart reads in greyscale. The SVG
        has a `viewBox` (it scales to any width), `role="img"`, a `<title>` and a `<desc>`
        summarising it, and names no patient. Unknown metric, a bad date or `from` after
        `to`: 422.
        """
        pid = resolve_patient_id(patient_id)
        metric = metric_arg("mood")
        date_from, date_to = date_range()
        db = get_db()
        chart = build_chart(
            db=db,
            patient_id=pid,
            metric=metric,
            course=completed_sessions(db=db, patient_id=pid),
            baseline=baseline(db=db, patient_id=pid, metric=metric),
            date_from=date_from,
            date_to=date_to,
        )
        return current_app.response_class(render_chart(chart), mimetype=SVG_MEDIA_TYPE)


def _export_body(records: Records) -> dict[str, Any]:
    observations: dict[uuid.UUID, list[Any]] = {}
    for observation in records.observations:
        observations.setdefault(observation.session_id, []).append(observation)
    sessions = []
    for session in records.sessions:
        data = session_read(
            session, records.session_numbers.get(session.id), observations.get(session.id, [])
        )
        sessions.append(data)
    body = {
        "generated_at": utcnow(),
        "profile": {
            "id": records.patient.id,
            "email": records.patient.email,
            "role": records.patient.role.value,
            "display_name": records.patient.display_name,
            "timezone": records.patient.timezone,
            "created_at": records.patient.created_at,
            "disabled": records.patient.disabled_at is not None,
        },
        "mood_entries": records.mood_entries,
        "mood_entry_versions": records.mood_entry_versions,
        "assessments": records.assessments,
        "sessions": sessions,
        "observations": records.observations,
        "alerts": records.alerts,
        "care_links": [
            Read(link, {"patient": records.patient, "clinician": clinician})
            for link, clinician in records.care_links
        ],
    }
    body["counts"] = {
        name: len(body[name])
        for name in (
            "mood_entries",
            "mood_entry_versions",
            "assessments",
            "sessions",
            "observations",
            "alerts",
            "care_links",
        )
    }
    return body


@export_ns.route("/export")
class Export(Resource):
    @require_auth(Role.patient)
    @operation(
        operation_id="exportMe",
        tag="me",
        replies=[
            Reply(
                200,
                "The export as JSON; with `format=fhir` (compatibility), as a FHIR R4 Bundle.",
                schema=ExportOut,
                more={FHIR_JSON: FHIR_BUNDLE},
            ),
        ],
        problems=(401, 403, 422, 503, 500),
        parameters=("ExportMeFormat",),
    )
    def get(self) -> Response:
        """Every record of the calling patient

        Patients only (clinicians and admins: 403); audited as an `export`. JSON
        (`ExportOut`): the profile, every live mood entry with the earlier versions of those
        entries, live assessments, live sessions of any status with their observations, the
        patient's alerts and care links (live and ended), and a count of each. Deleted
        records are not included.

        The FHIR form has an operation of its own with one media type, `GET
        /me/export.fhir.json` (exportMeFhir), which a generated client calls. Compatibility:
        `format=fhir` here still gives the same Bundle, and stays declared in this 200
        because the contract describes every answer the server gives; a generator reads
        `application/json`, listed first, as this operation's type.
        """
        asked = request.args.get("format", "json")
        if asked not in ("json", "fhir"):
            raise validation_error({"format": ["Must be json or fhir."]})
        if asked == "fhir":
            return _export_fhir()
        records = export_records(db=get_db(), patient_id=current_principal().id)
        return json_response(_export_out.dump(_export_body(records)))


def _export_fhir() -> Response:
    records = export_records(db=get_db(), patient_id=current_principal().id)
    return fhir_response(records_bundle(records))


@export_ns.route("/export.fhir.json")
class ExportFhir(Resource):
    @require_auth(Role.patient)
    @operation(
        operation_id="exportMeFhir",
        tag="me",
        replies=[
            Reply(200, "The export as a FHIR R4 Bundle.", media=FHIR_JSON, body=FHIR_BUNDLE),
        ],
        problems=(401, 403, 503, 500),
    )
    def get(self) -> Response:
        """Every record of the calling patient as a FHIR R4 Bundle

        Patients only (clinicians and admins: 403); audited as an `export`, as `GET
        /me/export` is. The same Bundle as the report's FHIR form (getReportFhir), over the
        whole record; the body is the one `/me/export?format=fhir` gives. Observations,
        alerts and care links are in the JSON export only.
        """
        return _export_fhir()
