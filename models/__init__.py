"""Entities and domain rules of moodtrack: everything that needs no HTTP."""

from models.accounts import RefreshToken, RevokedAccessToken, Role, TokenFamily, User
from models.alerts import Alert
from models.assessments import Assessment, AssessmentVersion
from models.audit import AuditEvent, AuditSubject
from models.base import Base
from models.care import CareLink, Invite
from models.delivery import Delivery, DeliveryAttempt
from models.events import Event
from models.mood import MoodEntry, MoodEntryVersion
from models.reminders import Reminder
from models.sessions import Observation, TreatmentSession
from models.sync import SyncCounter
from models.webhooks import Webhook
from models.workers import JobLease, WorkerHeartbeat

__all__ = [
    "Alert",
    "Assessment",
    "AssessmentVersion",
    "AuditEvent",
    "AuditSubject",
    "Base",
    "CareLink",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "Invite",
    "JobLease",
    "MoodEntry",
    "MoodEntryVersion",
    "Observation",
    "RefreshToken",
    "Reminder",
    "RevokedAccessToken",
    "Role",
    "SyncCounter",
    "TokenFamily",
    "TreatmentSession",
    "User",
    "Webhook",
    "WorkerHeartbeat",
]
