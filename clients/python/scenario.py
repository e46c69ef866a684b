"""A phone day and a clinic day through the client openapi-python-client generates from
openapi.yaml, against a live server: proof that the contract is what an app team builds on.

Every HTTP call goes through the generated package ``moodtrack_client``; the only other
inputs are the sign-up email the development server writes to ``<instance>/outbox`` and the
``moodtrack users create`` command for staff, as the README tour does. Every step checks its
status and a value that means something. Run it with clients/python/run.sh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyotp
from moodtrack_client import AuthenticatedClient, Client
from moodtrack_client.api.alerts import acknowledge_alert, list_alerts
from moodtrack_client.api.assessments import create_assessment
from moodtrack_client.api.auth import (
    confirm_registration,
    confirm_second_factor,
    enrol_second_factor,
    login,
    refresh,
    register,
    verify_second_factor,
)
from moodtrack_client.api.care import create_care_link, create_invite
from moodtrack_client.api.me import erase_me, export_me, export_me_fhir, get_me
from moodtrack_client.api.meta import healthz
from moodtrack_client.api.mood import (
    create_mood_entry,
    create_mood_entry_batch,
    delete_mood_entry,
    list_mood_entries,
    sync_mood_entries,
    update_mood_entry,
)
from moodtrack_client.api.patients import list_patients
from moodtrack_client.api.privacy import get_access_log
from moodtrack_client.api.sessions import create_observation, create_session, update_session
from moodtrack_client.api.trends import (
    get_course,
    get_report,
    get_report_csv,
    get_report_fhir,
    get_report_html,
    get_session_effect,
    get_trend,
    get_trend_chart,
)
from moodtrack_client.models import (
    AccountEraseIn,
    AlertAcknowledgeIn,
    AssessmentIn,
    AssessmentInInstrument,
    CareLinkIn,
    GetTrendMetric,
    LoginIn,
    MfaRequiredOut,
    MoodEntryBatchIn,
    MoodEntryIn,
    MoodEntryInPhase,
    MoodEntryUpdate,
    ObservationIn,
    RefreshIn,
    RegisterConfirmIn,
    RegisterIn,
    SecondFactorCodeIn,
    SecondFactorEnrolIn,
    SecondFactorVerifyIn,
    SessionIn,
    SessionInDrug,
    SessionInRoute,
    SessionInSetting,
    SessionInStatus,
    SessionUpdate,
    SessionUpdateStatus,
    TokenPairOut,
)
from moodtrack_client.types import Response

ANA = ("ana@example.org", "a long quiet evening walk")
DR = ("dr@example.org", "a clinic passphrase 2026")


def ok(response: Response[Any], status: int, step: str) -> Any:
    """The parsed body of a response that must have this status."""
    if response.status_code != status:
        body = response.content[:500].decode(errors="replace")
        raise AssertionError(f"{step}: {response.status_code} (expected {status}): {body}")
    print(f"ok  {status}  {step}")
    return response.parsed


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def wait_ready(base_url: str, deadline: float) -> None:
    client = Client(base_url=base_url, timeout=5)
    while True:
        try:
            if healthz.sync_detailed(client=client).status_code == 200:
                return
        except httpx.TransportError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url} did not come up")
        time.sleep(0.2)


def signup_code(outbox: Path, deadline: float) -> str:
    """The code of the sign-up email the development server writes (its delivery worker
    writes it a moment after the request)."""
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")):
            found = re.search(r"code is ([A-Z0-9-]+)", path.read_text(errors="replace"))
            if found:
                return found.group(1)
        time.sleep(0.2)
    raise TimeoutError(f"no sign-up email in {outbox}")


def authed(base_url: str, token: str) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=base_url, token=token, timeout=30)


def at(moment: dt.datetime) -> dt.datetime:
    """An instant as a phone sends it: with the patient's offset (America/Chicago in winter)."""
    return moment.astimezone(dt.timezone(dt.timedelta(hours=-6)))


def phone_signs_up(base: str, outbox: Path, deadline: float) -> tuple[AuthenticatedClient, str]:
    public = Client(base_url=base, timeout=30)
    email, password = ANA
    body = RegisterIn(
        email=email, password=password, display_name="Ana", timezone="America/Chicago"
    )
    accepted = ok(register.sync_detailed(client=public, body=body), 202, "register")
    check(accepted.status.value == "confirmation_sent", "register: confirmation sent")
    code = signup_code(outbox, deadline)
    confirm = RegisterConfirmIn(email=email, code=code, password=password)
    user = ok(confirm_registration.sync_detailed(client=public, body=confirm), 201, "confirm")
    check(user.email == email and user.role == "patient", "confirmed as a patient")
    pair = ok(
        login.sync_detailed(client=public, body=LoginIn(email=email, password=password)),
        200,
        "login (patient)",
    )
    check(isinstance(pair, TokenPairOut) and pair.expires_in > 0, "login gives a token pair")
    fresh = ok(
        refresh.sync_detailed(client=public, body=RefreshIn(refresh_token=pair.refresh_token)),
        200,
        "refresh",
    )
    check(fresh.refresh_token != pair.refresh_token, "refresh rotates the refresh token")
    phone = authed(base, fresh.access_token)
    me = ok(get_me.sync_detailed(client=phone), 200, "me")
    check(me.email == email, "me is Ana")
    return phone, str(me.id)


def clinician_signs_in(base: str, moodtrack: str) -> AuthenticatedClient:
    """Staff from the CLI, as in the README tour, then two-factor sign-in (TOTP)."""
    email, password = DR
    command = [moodtrack, "users", "create", "--email", email, "--role", "clinician"]
    subprocess.run(
        [*command, "--organisation", "Riverside Clinic", "--password-stdin"],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    public = Client(base_url=base, timeout=30)
    pair = ok(
        login.sync_detailed(client=public, body=LoginIn(email=email, password=password)),
        200,
        "login (clinician)",
    )
    dr = authed(base, pair.access_token)
    enrolment = ok(
        enrol_second_factor.sync_detailed(client=dr, body=SecondFactorEnrolIn(password=password)),
        200,
        "2fa enrol",
    )
    check(enrolment.otpauth_uri.startswith("otpauth://totp/"), "enrolment gives a TOTP URI")
    now = pyotp.TOTP(enrolment.secret).now()
    codes = ok(
        confirm_second_factor.sync_detailed(client=dr, body=SecondFactorCodeIn(code=now)),
        200,
        "2fa confirm",
    )
    check(len(codes.recovery_codes) == 10, "ten recovery codes")
    step = ok(
        login.sync_detailed(client=public, body=LoginIn(email=email, password=password)),
        200,
        "login asks for the second factor",
    )
    check(isinstance(step, MfaRequiredOut) and step.mfa_required, "login answers mfa_required")
    # The current step's code was used by confirm: a recovery code signs in now.
    verify = SecondFactorVerifyIn(mfa_token=step.mfa_token, code=codes.recovery_codes[0])
    pair = ok(verify_second_factor.sync_detailed(client=public, body=verify), 200, "2fa verify")
    return authed(base, pair.access_token)


def link(phone: AuthenticatedClient, dr: AuthenticatedClient) -> None:
    invite = ok(create_invite.sync_detailed(client=dr), 201, "invite")
    care = ok(
        create_care_link.sync_detailed(client=phone, body=CareLinkIn(code=invite.code)),
        201,
        "care link",
    )
    check(care.organisation_id == invite.organisation_id, "linked in the clinic of the invite")


def phone_day(phone: AuthenticatedClient, now: dt.datetime) -> None:
    entry_id = uuid.uuid4()
    entry = MoodEntryIn(
        id=entry_id,
        occurred_at=at(now - dt.timedelta(hours=20)),
        mood=4,
        anxiety=6,
        sleep_hours=6.5,
        note="tired",
    )
    made = ok(create_mood_entry.sync_detailed("me", client=phone, body=entry), 201, "entry")
    check(made.id == entry_id and made.utc_offset == "-06:00", "the entry keeps id and offset")
    again = ok(create_mood_entry.sync_detailed("me", client=phone, body=entry), 200, "replay")
    check(again.version == 1, "a replay stores nothing new")
    batch = MoodEntryBatchIn(
        entries=[
            MoodEntryIn(occurred_at=at(now - dt.timedelta(hours=40)), mood=5),
            MoodEntryIn(occurred_at=at(now - dt.timedelta(hours=30)), mood=11),
        ]
    )
    results = ok(
        create_mood_entry_batch.sync_detailed("me", client=phone, body=batch), 200, "batch"
    )
    check([r.status for r in results.results] == [201, 422], "one bad item fails alone")
    check(results.results[1].problem is not None, "the bad item says why")
    check(results.results[0].entry is not None and results.results[0].entry.mood == 5, "stored")
    first_sync = ok(sync_mood_entries.sync_detailed("me", client=phone, since="0"), 200, "sync")
    check(len(first_sync.items) == 2 and not first_sync.has_more, "sync: two changes")
    changed = update_mood_entry.sync_detailed(
        "me", entry_id, client=phone, body=MoodEntryUpdate(mood=5), if_match='"1"'
    )
    check(ok(changed, 200, "PATCH entry").mood == 5, "PATCH changed mood")
    check(changed.headers["etag"] == '"2"', "the ETag goes up")
    extra = results.results[0].entry
    gone = delete_mood_entry.sync_detailed("me", extra.id, client=phone, if_match='"1"')
    ok(gone, 204, "DELETE entry")
    sync = sync_mood_entries.sync_detailed("me", client=phone, since=first_sync.next_cursor)
    later = ok(sync, 200, "sync since the cursor")
    check(
        [(c.id, c.deleted) for c in later.items] == [(entry_id, False), (extra.id, True)],
        "sync: the edit, then the tombstone",
    )
    page = ok(list_mood_entries.sync_detailed("me", client=phone), 200, "list entries")
    check([e.id for e in page.items] == [entry_id], "one live entry")
    phq9 = AssessmentIn(
        instrument=AssessmentInInstrument.PHQ9,
        answers=[2, 2, 1, 2, 1, 1, 1, 0, 1],
        difficulty=1,
        occurred_at=at(now - dt.timedelta(hours=19)),
    )
    scored = ok(create_assessment.sync_detailed("me", client=phone, body=phq9), 201, "PHQ-9")
    check(scored.total == 11 and scored.band == "moderate", "PHQ-9 11, moderate")
    check(scored.crisis is not None, "a positive item 9 brings the crisis block")


def clinic_day(
    phone: AuthenticatedClient, dr: AuthenticatedClient, ana_id: str, now: dt.datetime
) -> str:
    start = (now - dt.timedelta(hours=5)).replace(microsecond=0)
    planned = SessionIn(
        status=SessionInStatus.SCHEDULED,
        started_at=start,
        drug=SessionInDrug.KETAMINE,
        route=SessionInRoute.IV,
        weight_kg=70,
        setting=SessionInSetting.CLINIC,
    )
    made = create_session.sync_detailed(ana_id, client=dr, body=planned)
    session = ok(made, 201, "schedule session")
    check(session.status == "scheduled", "scheduled")
    pre = MoodEntryIn(
        occurred_at=at(start - dt.timedelta(hours=1)),
        mood=3,
        session_id=session.id,
        phase=MoodEntryInPhase.PRE,
    )
    checked_in = ok(create_mood_entry.sync_detailed("me", client=phone, body=pre), 201, "pre")
    check(checked_in.session_id == session.id and checked_in.phase == "pre", "a pre check-in")
    for minutes in (-10, 40, 120):
        vitals = ObservationIn(
            observed_at=start + dt.timedelta(minutes=minutes),
            systolic=132,
            diastolic=84,
            heart_rate=76,
            spo2=98,
            sedation_moaas=5,
        )
        seen = create_observation.sync_detailed(ana_id, session.id, client=dr, body=vitals)
        check(ok(seen, 201, f"observation {minutes:+} min").systolic == 132, "vitals kept")
    done = SessionUpdate(
        status=SessionUpdateStatus.COMPLETED,
        dose_mg=35,
        ended_at=start + dt.timedelta(minutes=40),
        discharged_at=start + dt.timedelta(minutes=125),
    )
    patched = update_session.sync_detailed(
        ana_id, session.id, client=dr, body=done, if_match=made.headers["etag"]
    )
    completed = ok(patched, 200, "PATCH session to completed")
    check(completed.number == 1 and completed.dose_mg_per_kg == 0.5, "number 1, 0.5 mg/kg")
    post = MoodEntryIn(
        occurred_at=at(start + dt.timedelta(hours=3, minutes=30)),
        mood=7,
        session_id=session.id,
        phase=MoodEntryInPhase.POST,
    )
    after = ok(create_mood_entry.sync_detailed("me", client=phone, body=post), 201, "post")
    check(after.session_id == session.id and after.phase == "post", "a post check-in")
    effect = ok(
        get_session_effect.sync_detailed(ana_id, session.id, client=dr), 200, "session effect"
    )
    check(effect.pre == 3 and effect.session_id == session.id, "pre mood 3")
    acute = [w for w in effect.windows if w.value is not None]
    check(any(w.value == 7 for w in acute), f"the post check-in counts: {effect.windows}")
    return str(session.id)


def clinician_views(dr: AuthenticatedClient, ana_id: str) -> None:
    trend = ok(get_trend.sync_detailed(ana_id, client=dr, metric=GetTrendMetric.MOOD), 200, "trend")
    check(len(trend.series) >= 2, "mood over the days")
    course = ok(get_course.sync_detailed(ana_id, client=dr), 200, "course")
    check(course.sessions_completed == 1, "one completed session in the course")
    cohort = ok(
        list_patients.sync_detailed(client=dr, sort="-open_alerts", needs_attention=True),
        200,
        "cohort (needs attention)",
    )
    check([str(row.id) for row in cohort.items] == [ana_id], "Ana needs attention")
    check(cohort.items[0].open_alerts >= 1, "with an open alert")
    inbox = ok(list_alerts.sync_detailed(client=dr), 200, "alerts")
    check([a.rule.value for a in inbox.items] == ["self_harm"], "one open self-harm alert")
    alert = inbox.items[0]
    ack = acknowledge_alert.sync_detailed(
        alert.id, client=dr, body=AlertAcknowledgeIn(note="called")
    )
    check(ok(ack, 200, "acknowledge alert").acknowledged_at is not None, "acknowledged")
    still_open = ok(list_alerts.sync_detailed(client=dr), 200, "alerts after")
    check(alert.id not in {a.id for a in still_open.items}, "no longer open")
    report = ok(get_report.sync_detailed(ana_id, client=dr), 200, "report (JSON)")
    check(report.course.sessions_completed == 1, "the report holds the course")
    csv = ok(get_report_csv.sync_detailed(ana_id, client=dr), 200, "report.csv")
    check("session_number" in csv.splitlines()[0], "the CSV's header names session_number")
    fhir = ok(get_report_fhir.sync_detailed(ana_id, client=dr), 200, "report.fhir.json")
    check(fhir.resource_type == "Bundle", "the FHIR report is a Bundle")
    page = ok(get_report_html.sync_detailed(ana_id, client=dr), 200, "report.html")
    check(page.lstrip().lower().startswith("<!doctype html"), "the report page is HTML")
    chart = ok(get_trend_chart.sync_detailed(ana_id, client=dr), 200, "chart.svg")
    check("<svg" in chart, "the chart is SVG")


def patient_rights(phone: AuthenticatedClient, base: str) -> None:
    export = ok(export_me.sync_detailed(client=phone), 200, "export (JSON)")
    check(len(export.mood_entries) == 3, "the export holds the three live entries")
    bundle = ok(export_me_fhir.sync_detailed(client=phone), 200, "export (FHIR)")
    check(bundle.resource_type == "Bundle", "the FHIR export is a Bundle")
    log = ok(get_access_log.sync_detailed("me", client=phone), 200, "access log")
    check(any(item.actor_role == "clinician" for item in log.items), "the clinician's reads")
    erased = erase_me.sync_detailed(client=phone, body=AccountEraseIn(password=ANA[1]))
    ok(erased, 204, "erasure (DELETE /me)")
    public = Client(base_url=base, timeout=30)
    gone = login.sync_detailed(client=public, body=LoginIn(email=ANA[0], password=ANA[1]))
    ok(gone, 401, "login after erasure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--instance", required=True, type=Path)
    parser.add_argument("--moodtrack", required=True, help="the moodtrack command")
    parser.add_argument("--deadline", type=float, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline
    wait_ready(args.base_url, deadline)
    now = dt.datetime.now(dt.UTC)
    phone, ana_id = phone_signs_up(args.base_url, args.instance / "outbox", deadline)
    dr = clinician_signs_in(args.base_url, args.moodtrack)
    link(phone, dr)
    phone_day(phone, now)
    clinic_day(phone, dr, ana_id, now)
    clinician_views(dr, ana_id)
    patient_rights(phone, args.base_url)
    print("scenario passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
