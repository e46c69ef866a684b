"""Delivery of alerts, escalations and reminders: a real HTTP receiver that verifies every
signature with `standardwebhooks`, a real SMTP server (aiosmtpd), and the worker's steps
driven with an explicit clock so retries a day apart take no time."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from api.config import DeliverySettings
from api.delivery.worker import DeliveryWorker
from models.accounts import Role
from models.alerts import Alert
from models.delivery import Delivery, DeliveryAttempt
from models.events import Event
from models.reminders import ReminderPolicy
from tests.conftest import auth, link, make_staff, register_patient
from tests.webhook_receiver import Receiver

SCHEDULE = (5.0, 30.0, 120.0)


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture
def receiver():
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(app, client, smtp):
    controller, _inbox = smtp
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    clinician = make_staff(app)
    ch = auth(client, clinician["email"])
    link(client, ch, ph)
    admin = make_staff(app, role=Role.admin)
    services = app.extensions["moodtrack"]
    delivery = DeliverySettings(
        public_url="https://moodtrack.test",
        escalation_emails=("oncall@clinic.test",),
        # Room for a loaded CI machine to answer a healthy receiver; the slow and trickling
        # receivers below take well beyond it.
        webhook_timeout_seconds=2.0,
        retry_schedule=SCHEDULE,
        lease=timedelta(seconds=5),
        reminders=ReminderPolicy(),
    )
    worker = DeliveryWorker(
        settings=services.settings.with_overrides(
            delivery=delivery,
            smtp_url=f"smtp://127.0.0.1:{controller.port}",
            mail_from="alerts@moodtrack.test",
        ),
        engine=services.engine,
        session_factory=services.session_factory,
        name="test-worker",
    )
    yield {
        "patient": patient,
        "ph": ph,
        "clinician": clinician,
        "ch": ch,
        "ah": auth(client, admin["email"]),
        "admin": admin,
        "worker": worker,
    }


def _register(client, world, url, types=("alert.raised",)):
    response = client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": list(types)}, headers=world["ah"]
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _self_harm(client, world, item9=2):
    answers = [1, 1, 1, 1, 0, 0, 0, 0, item9]
    response = client.post(
        "/api/v1/patients/me/assessments",
        json={"instrument": "phq9", "answers": answers, "occurred_at": _iso(_now())},
        headers=world["ph"],
    )
    assert response.status_code == 201
    return response.get_json()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(instant: datetime) -> str:
    return instant.isoformat()


def _alert(db, world) -> Alert:
    return db.scalars(
        select(Alert).where(Alert.patient_id == uuid.UUID(world["patient"]["id"]))
    ).one()


def test_an_alert_reaches_a_webhook_signed_once_with_ids_and_codes_only(
    client, db, world, receiver
):
    hook = _register(client, world, receiver.url)
    receiver.secrets = [hook["secret"]]
    _self_harm(client, world)
    now = _now()
    # A high-priority alert goes to the webhook and by email to the linked clinician.
    assert world["worker"].drain(now) == 2
    assert receiver.rejected == 0 and len(receiver.received) == 1
    got = receiver.received[0]
    alert = _alert(db, world)
    event = db.scalars(select(Event).where(Event.type == "alert.raised")).one()
    assert got.webhook_id == str(event.id) == got.body["id"]
    assert got.body["type"] == "alert.raised"
    assert got.body["data"] == {
        "alert_id": str(alert.id),
        "patient_id": world["patient"]["id"],
        "rule": "self_harm",
        "priority": "high",
        "raised_at": alert.created_at.isoformat(),
        "link": f"https://moodtrack.test/api/v1/alerts/{alert.id}",
    }
    assert "Pat" not in str(got.body) and world["patient"]["email"] not in str(got.body)
    # Nothing more to do: a healthy receiver gets each event once.
    assert world["worker"].drain(now + timedelta(hours=1)) == 0
    assert len(receiver.received) == 1


def test_high_priority_alert_emails_each_linked_clinician_without_health_data(
    app, client, world, smtp, receiver
):
    _controller, inbox = smtp
    second = make_staff(app)
    link(client, auth(client, second["email"]), world["ph"])
    _self_harm(client, world, item9=3)
    world["worker"].drain(_now())
    recipients = sorted(to[0] for to, _ in inbox.messages)
    assert recipients == sorted([world["clinician"]["email"], second["email"]])
    for _to, content in inbox.messages:
        assert "Subject: moodtrack: high-priority alert" in content
        assert "Rule: self_harm" in content and "/api/v1/alerts/" in content
        assert "not monitored in real time" in content
        assert not any(word in content for word in ("Pat", world["patient"]["email"], "answers"))


def test_medium_priority_alerts_are_not_emailed(client, world, smtp):
    _controller, inbox = smtp
    _self_harm(client, world, item9=1)  # medium
    world["worker"].drain(_now())
    assert inbox.messages == []


def test_a_failing_receiver_gets_everything_once_it_answers(client, db, world, receiver):
    hook = _register(client, world, receiver.url)
    receiver.secrets = [hook["secret"]]
    receiver.mode = "fail"
    _self_harm(client, world)
    now = _now()
    world["worker"].drain(now)
    delivery = db.scalars(select(Delivery).where(Delivery.channel == "webhook")).one()
    db.refresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_response_status) == (
        "pending",
        1,
        500,
    )
    # The next try waits its back-off (5 s +-20 %): not at 3 s, by 7 s.
    assert world["worker"].drain(now + timedelta(seconds=3)) == 0
    receiver.mode = "ok"
    assert world["worker"].drain(now + timedelta(seconds=7)) == 1
    db.refresh(delivery)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver.received) == 1
    log = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=world["ah"]).get_json()
    item = log["items"][0]
    assert item["status"] == "delivered" and item["event_type"] == "alert.raised"
    assert [(a["number"], a["response_status"]) for a in item["attempt_log"]] == [
        (1, 500),
        (2, 204),
    ]


def test_a_receiver_that_times_out_or_is_down_gets_it_later(client, db, world, receiver):
    hook = _register(client, world, receiver.url)
    receiver.secrets = [hook["secret"]]
    receiver.mode, receiver.slow_seconds = "slow", 5.0  # beyond the 2 s timeout
    _self_harm(client, world)
    now = _now()
    world["worker"].drain(now)
    webhook_errors = (
        select(DeliveryAttempt.error)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(Delivery.channel == "webhook")
        .order_by(DeliveryAttempt.number)
    )
    assert db.scalars(webhook_errors).all() == ["timeout"]
    port = receiver.port
    receiver.stop()  # down for a while
    world["worker"].drain(now + timedelta(seconds=10))  # the first retry: 5 s after the attempt
    assert db.scalars(webhook_errors).all() == ["timeout", "ConnectError"]
    back = Receiver(secrets=[hook["secret"]], port=port).start()
    try:
        assert world["worker"].drain(now + timedelta(seconds=60)) == 1
        assert [r.body["type"] for r in back.received] == ["alert.raised"]
    finally:
        back.stop()


def test_retries_end_in_a_dead_letter_and_a_day_of_failures_disables_the_endpoint(
    client, db, world, smtp, receiver
):
    _controller, inbox = smtp
    hook = _register(client, world, receiver.url)
    receiver.mode = "fail"
    _self_harm(client, world)
    now = _now()
    worker = world["worker"]
    for step in range(len(SCHEDULE) + 1):
        worker.drain(now + timedelta(seconds=200 * step))
    delivery = db.scalars(select(Delivery).where(Delivery.channel == "webhook")).one()
    db.refresh(delivery)
    assert (delivery.status, delivery.attempts) == ("failed", len(SCHEDULE) + 1)
    assert worker.run_jobs(now + timedelta(hours=23)).disabled == 0
    assert worker.run_jobs(now + timedelta(hours=25)).disabled == 1
    shown = client.get(f"/api/v1/webhooks/{hook['id']}", headers=world["ah"]).get_json()
    assert shown["enabled"] is False and shown["disabled_reason"] == "failing"
    worker.drain(now + timedelta(hours=25))
    admin_mail = [c for to, c in inbox.messages if to == [world["admin"]["email"]]]
    assert len(admin_mail) == 1 and "webhook endpoint was disabled" in admin_mail[0]
    # An operator turns it back on and redelivers the dead letter.
    etag = client.get(f"/api/v1/webhooks/{hook['id']}", headers=world["ah"]).headers["ETag"]
    enabled = client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"enabled": True},
        headers={**world["ah"], "If-Match": etag},
    )
    assert enabled.status_code == 200 and enabled.get_json()["enabled"] is True
    receiver.mode, receiver.secrets = "ok", [hook["secret"]]
    again = client.post(
        f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery.id}/redeliver", headers=world["ah"]
    )
    assert again.status_code == 202 and again.get_json()["status"] == "pending"
    assert worker.drain(_now() + timedelta(seconds=1)) == 1
    assert [r.webhook_id for r in receiver.received] == [str(delivery.event_id)]


def test_rotation_signs_with_both_secrets_for_a_day(client, world, receiver):
    hook = _register(client, world, receiver.url)
    rotated = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=world["ah"])
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["secret"]
    assert new_secret != hook["secret"] and new_secret.startswith("whsec_")
    receiver.secrets = [hook["secret"]]  # a receiver not yet switched over
    _self_harm(client, world)
    world["worker"].drain(_now())
    assert len(receiver.received) == 1
    assert len(receiver.received[0].signature.split(" ")) == 2


def test_escalation_once_for_an_unacknowledged_high_alert(client, db, world, smtp, receiver):
    _controller, inbox = smtp
    hook = _register(client, world, receiver.url, types=("alert.escalated",))
    receiver.secrets = [hook["secret"]]
    _self_harm(client, world)
    worker, now = world["worker"], _now()
    assert worker.run_jobs(now + timedelta(minutes=29)).escalated == 0
    assert worker.run_jobs(now + timedelta(minutes=31)).escalated == 1
    assert worker.run_jobs(now + timedelta(minutes=45)).escalated == 0
    worker.drain(now + timedelta(minutes=31))
    assert [r.body["type"] for r in receiver.received] == ["alert.escalated"]
    assert receiver.received[0].body["data"]["unacknowledged_minutes"] == 30
    escalations = [to for to, c in inbox.messages if "ESCALATION" in c]
    assert sorted(t[0] for t in escalations) == sorted(
        [world["clinician"]["email"], "oncall@clinic.test"]
    )


def test_an_acknowledged_alert_is_not_escalated_and_its_acknowledgement_is_sent(
    client, db, world, receiver
):
    hook = _register(client, world, receiver.url, types=("alert.acknowledged",))
    receiver.secrets = [hook["secret"]]
    _self_harm(client, world)
    alert = _alert(db, world)
    acked = client.post(f"/api/v1/alerts/{alert.id}/acknowledge", headers=world["ch"])
    assert acked.status_code == 200
    worker, now = world["worker"], _now()
    assert worker.run_jobs(now + timedelta(hours=2)).escalated == 0
    worker.drain(now)
    assert [r.body["type"] for r in receiver.received] == ["alert.acknowledged"]
    assert receiver.received[0].body["data"]["alert_id"] == str(alert.id)


def test_reminders_at_the_patients_local_time_once_per_window(client, db, world, receiver):
    hook = _register(client, world, receiver.url, types=("reminder.due",))
    receiver.secrets = [hook["secret"]]
    worker = world["worker"]
    # The patient lives in America/Chicago (UTC-6 in winter).
    evening = datetime(2026, 12, 2, 20, 30, tzinfo=UTC) + timedelta(hours=6)  # 20:30 local
    late = evening + timedelta(hours=2)  # 22:30 local: quiet hours
    morning = datetime(2026, 12, 3, 7, 0, tzinfo=UTC) + timedelta(hours=6)  # 07:00 local
    noon = morning + timedelta(hours=5)  # 12:00 local, before the daily reminder time
    assert worker.run_jobs(late).reminded == 0
    assert worker.run_jobs(morning).reminded == 0
    first = worker.run_jobs(evening).reminded
    assert first >= 1
    assert worker.run_jobs(evening + timedelta(minutes=30)).reminded == 0  # once per window
    worker.drain(evening)
    kinds = [r.body["data"]["item"] for r in receiver.received]
    assert "daily_mood" in kinds and len(kinds) == first
    for got in receiver.received:
        assert set(got.body["data"]) <= {
            "patient_id",
            "item",
            "instrument",
            "session_id",
            "window_start",
            "window_end",
            "link",
        }
    # Tomorrow at noon: the PHQ-9 still overdue is reminded again (a new window), the daily
    # mood not before 19:00.
    receiver.received.clear()
    worker.run_jobs(noon)
    worker.drain(noon)
    assert [r.body["data"]["item"] for r in receiver.received] == ["questionnaire"]


def test_no_reminder_for_an_item_already_done(client, world, receiver):
    _register(client, world, receiver.url, types=("reminder.due",))
    # 02:30 UTC is 20:30 (21:30 in summer) in Chicago: past the daily reminder time, before
    # the quiet hours. The patient logged a mood and answered a PHQ-9 half an hour before.
    evening = datetime.now(UTC).replace(hour=2, minute=30, second=0, microsecond=0)
    if evening > datetime.now(UTC):
        evening -= timedelta(days=1)
    logged = _iso(evening - timedelta(minutes=30))
    headers = world["ph"]
    mood = {"occurred_at": logged, "mood": 6}
    form = {"instrument": "phq9", "answers": [0] * 9, "occurred_at": logged}
    for path, body in (("mood-entries", mood), ("assessments", form)):
        response = client.post(f"/api/v1/patients/me/{path}", json=body, headers=headers)
        assert response.status_code == 201
    assert world["worker"].run_jobs(evening).reminded == 0


def test_delivery_health_for_operators_only(client, world, receiver):
    receiver.mode = "fail"
    _register(client, world, receiver.url)
    _self_harm(client, world)
    world["worker"].drain(_now())
    health = client.get("/api/v1/delivery-health", headers=world["ah"])
    assert health.status_code == 200
    body = health.get_json()
    assert body["deliveries_retrying"] == 1 and body["webhooks_failing"] == 1
    assert body["deliveries_pending"] >= 1 and body["oldest_pending_delivery_age_seconds"] >= 0
    assert world["patient"]["id"] not in health.get_data(as_text=True)
    assert client.get("/api/v1/delivery-health", headers=world["ch"]).status_code == 403


def test_erasure_removes_the_patients_events_and_deliveries(client, db, world, receiver):
    _register(client, world, receiver.url)
    _self_harm(client, world)
    world["worker"].fan_out(_now())
    pid = uuid.UUID(world["patient"]["id"])
    assert db.scalar(select(func.count()).where(Event.patient_id == pid)) == 1
    erased = client.delete(
        "/api/v1/me", json={"password": world["patient"]["password"]}, headers=world["ph"]
    )
    assert erased.status_code == 204
    assert db.scalar(select(func.count()).where(Event.patient_id == pid)) == 0
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0


def test_webhook_management_rules(client, world):
    created = _register(client, world, "https://relay.example.org/hook")
    assert "secret" in created
    listed = client.get("/api/v1/webhooks", headers=world["ah"]).get_json()
    assert [h["id"] for h in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]
    bad = client.post(
        "/api/v1/webhooks",
        json={"url": "ftp://example.org", "event_types": ["alert.raised"]},
        headers=world["ah"],
    )
    assert bad.status_code == 422 and "url" in bad.get_json()["errors"]
    unknown = client.post(
        "/api/v1/webhooks",
        json={"url": "https://example.org", "event_types": ["alert.deleted"]},
        headers=world["ah"],
    )
    assert unknown.status_code == 422
    url = f"/api/v1/webhooks/{created['id']}"
    assert client.patch(url, json={"description": "x"}, headers=world["ah"]).status_code == 428
    assert client.delete(url, headers={**world["ah"], "If-Match": '"9"'}).status_code == 412
    assert client.delete(url, headers={**world["ah"], "If-Match": '"1"'}).status_code == 204
    assert client.get(url, headers=world["ah"]).status_code == 404
    assert client.get("/api/v1/webhooks", headers=world["ch"]).status_code == 403


# ---------------------------------------------------------------- what the review found


def _claim(db, worker, now):
    from models.delivery import claim_deliveries

    claimed = claim_deliveries(
        db=db, now=now, worker=worker.name, lease=worker.delivery.lease, limit=10
    )
    db.commit()
    return claimed


def test_a_late_report_after_the_lease_ran_out_changes_nothing(client, db, world, receiver):
    from models.delivery import Outcome, record_outcome

    _register(client, world, receiver.url)
    _self_harm(client, world, item9=1)  # medium: the webhook only
    worker, now = world["worker"], _now()
    worker.fan_out(now)
    (first,) = _claim(db, worker, now)
    later = now + worker.delivery.lease + timedelta(seconds=1)
    (second,) = _claim(db, worker, later)  # the first worker's lease has run out
    assert second.delivery_id == first.delivery_id and second.lease_token != first.lease_token
    failed = Outcome(ok=False, started_at=now, duration_ms=9000, error="timeout")
    status = record_outcome(
        db=db, claimed=first, outcome=failed, worker="late", now=later, schedule=SCHEDULE
    )
    db.commit()
    delivery = db.get(Delivery, first.delivery_id)
    db.refresh(delivery)
    # Recorded as an attempt, nothing more: the second claim still holds the lease.
    assert status == "pending" and delivery.lease_token == second.lease_token
    assert delivery.attempts == 0 and delivery.retry_step == 0
    assert _claim(db, worker, later) == []  # nobody else may take it meanwhile
    done = Outcome(ok=True, started_at=later, duration_ms=5, response_status=204)
    assert (
        record_outcome(
            db=db, claimed=second, outcome=done, worker="w2", now=later, schedule=SCHEDULE
        )
        == "delivered"
    )


def test_a_pending_delivery_or_a_disabled_endpoint_cannot_be_redelivered(
    client, db, world, receiver
):
    hook = _register(client, world, receiver.url)
    receiver.mode = "fail"
    _self_harm(client, world, item9=1)
    world["worker"].drain(_now())
    delivery = db.scalars(select(Delivery).where(Delivery.channel == "webhook")).one()
    url = f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery.id}/redeliver"
    pending = client.post(url, headers=world["ah"])
    assert pending.status_code == 409  # it is being retried already
    etag = client.get(f"/api/v1/webhooks/{hook['id']}", headers=world["ah"]).headers["ETag"]
    client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"enabled": False},
        headers={**world["ah"], "If-Match": etag},
    )
    assert client.post(url, headers=world["ah"]).status_code == 409


def test_an_endpoint_turned_off_holds_its_deliveries_until_it_is_back(client, db, world, receiver):
    hook = _register(client, world, receiver.url)
    receiver.secrets = [hook["secret"]]
    url = f"/api/v1/webhooks/{hook['id']}"
    etag = client.get(url, headers=world["ah"]).headers["ETag"]
    off = client.patch(url, json={"enabled": False}, headers={**world["ah"], "If-Match": etag})
    assert off.status_code == 200 and off.get_json()["disabled_reason"] == "operator"
    _self_harm(client, world, item9=1)
    worker, now = world["worker"], _now()
    assert worker.drain(now + timedelta(days=3)) == 0  # paused: not sent, not failed
    health = client.get("/api/v1/delivery-health", headers=world["ah"]).get_json()
    assert health["deliveries_paused"] == 1 and health["deliveries_pending"] == 0
    on = client.patch(
        url, json={"enabled": True}, headers={**world["ah"], "If-Match": off.headers["ETag"]}
    )
    assert on.status_code == 200
    assert worker.drain(now + timedelta(days=3)) == 1
    assert [r.body["type"] for r in receiver.received] == ["alert.raised"]


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(
    client, db, world, receiver
):
    hook = _register(client, world, receiver.url)
    receiver.secrets, receiver.mode = [hook["secret"]], "trickle"
    _self_harm(client, world, item9=1)
    world["worker"].drain(_now())
    attempt = db.scalars(select(DeliveryAttempt)).one()
    # Each byte comes within the 2 s timeout; the whole answer would take 6 s.
    assert attempt.error == "timeout"


def test_redirects_are_not_followed(client, db, world, receiver):
    elsewhere = Receiver().start()
    try:
        hook = _register(client, world, receiver.url)
        receiver.mode, receiver.redirect_to = "redirect", elsewhere.url
        elsewhere.secrets = [hook["secret"]]
        _self_harm(client, world, item9=1)
        world["worker"].drain(_now())
        attempt = db.scalars(select(DeliveryAttempt)).one()
        assert (attempt.response_status, attempt.error) == (307, "HTTP 307")
        assert elsewhere.requests == 0
    finally:
        elsewhere.stop()


def test_production_refuses_private_destinations(app, client, world, monkeypatch):
    from api.delivery.senders import WebhookSender

    services = app.extensions["moodtrack"]
    production = services.settings.with_overrides(
        env="production",
        delivery=services.settings.delivery.__class__(allow_private_networks=False),
    )
    monkeypatch.setattr(services, "settings", production)
    for url in (
        "http://relay.example.org/hook",  # not https
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://localhost/hook",
        "https://user:pw@relay.example.org/hook",
    ):
        refused = client.post(
            "/api/v1/webhooks",
            json={"url": url, "event_types": ["alert.raised"]},
            headers=world["ah"],
        )
        assert refused.status_code == 422 and "url" in refused.get_json()["errors"], url
    # A name that resolves to loopback is refused when sending, whatever was registered.
    sender = WebhookSender(timeout=1, allow_private_networks=False)
    outcome = sender.send(
        url="https://localhost:9/hook",
        secrets=("whsec_" + "A" * 44,),
        event_id="x",
        body=b"{}",
        now=_now(),
    )
    assert not outcome.ok and outcome.error.startswith("destination not allowed")


def test_reminders_follow_the_local_clock_across_the_daylight_saving_change(
    client, world, receiver
):
    from zoneinfo import ZoneInfo

    _register(client, world, receiver.url, types=("reminder.due",))
    chicago = ZoneInfo("America/Chicago")
    worker = world["worker"]
    # Sunday 1 November 2026: clocks go back at 02:00 in Chicago (UTC-5 to UTC-6).
    for day in (31, 1, 2):
        month = 10 if day == 31 else 11
        quiet = datetime(2026, month, day, 22, 30, tzinfo=chicago).astimezone(UTC)
        evening = datetime(2026, month, day, 20, 0, tzinfo=chicago).astimezone(UTC)
        assert worker.run_jobs(quiet).reminded == 0
        first = worker.run_jobs(evening).reminded
        assert first >= 1  # the day's mood (and the PHQ-9 never answered)
        assert worker.run_jobs(evening + timedelta(minutes=45)).reminded == 0


def test_an_organisations_endpoint_hears_of_its_own_patients_only(app, client, db, world):
    from models.organisations import MemberRole
    from tests.conftest import make_organisation

    clinic_b = make_organisation(app)
    admin_b = make_staff(app, organisation_id=clinic_b, member_role=MemberRole.org_admin)
    clinician_b = make_staff(app, organisation_id=clinic_b)
    patient_b = register_patient(client)
    pbh = auth(client, patient_b["email"])
    link(client, auth(client, clinician_b["email"]), pbh)
    bh = auth(client, admin_b["email"])
    receiver_b = Receiver().start()
    try:
        hook = client.post(
            "/api/v1/webhooks",
            json={"url": receiver_b.url, "event_types": ["alert.raised"]},
            headers=bh,
        )
        assert hook.status_code == 201 and hook.get_json()["organisation_id"] == clinic_b
        receiver_b.secrets = [hook.get_json()["secret"]]
        # Another organisation's id is not theirs to register for.
        other = client.post(
            "/api/v1/webhooks",
            json={
                "url": receiver_b.url,
                "event_types": ["alert.raised"],
                "organisation_id": str(uuid.uuid4()),
            },
            headers=bh,
        )
        assert other.status_code == 422 and "organisation_id" in other.get_json()["errors"]
        _self_harm(client, world, item9=1)  # the shared clinic's patient
        _self_harm(client, {**world, "ph": pbh}, item9=1)  # clinic B's patient
        world["worker"].drain(_now())
        assert [r.body["data"]["patient_id"] for r in receiver_b.received] == [patient_b["id"]]
        listed = client.get("/api/v1/webhooks", headers=bh).get_json()["items"]
        assert [h["id"] for h in listed] == [hook.get_json()["id"]]
    finally:
        receiver_b.stop()


def test_sends_share_one_tls_context_and_need_no_failed_imports(receiver, monkeypatch):
    """Loading a CA bundle costs ~50 ms of CPU: built per send, it capped a worker at ~20
    deliveries a second (one context per sender thread now). And httpcore asks sniffio
    which loop runs on every request; if sniffio were missing, each ask would be a failed
    import walking sys.path."""
    import ssl

    import sniffio  # noqa: F401  (a dependency of ours: see setup.cfg)

    from api.delivery.senders import WebhookSender

    secret = "whsec_" + "A" * 44
    receiver.secrets = [secret]
    sender = WebhookSender(timeout=2, allow_private_networks=True)
    # The first send builds this thread's context; the next ones build none.
    assert sender.send(url=receiver.url, secrets=(secret,), event_id="e", body=b"{}", now=_now()).ok
    built: list[object] = []
    original = ssl.SSLContext.__new__

    def counting(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(cls)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "__new__", counting)
    outcomes = [
        sender.send(url=receiver.url, secrets=(secret,), event_id=f"e{i}", body=b"{}", now=_now())
        for i in range(3)
    ]
    assert [o.ok for o in outcomes] == [True, True, True]
    assert built == []
