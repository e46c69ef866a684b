"""Entities and domain rules of moodtrack: everything that needs no HTTP."""

from models.accounts import RefreshToken, RevokedAccessToken, Role, TokenFamily, User
from models.alerts import Alert
from models.assessments import Assessment, AssessmentVersion
from models.audit import AuditEvent, AuditSubject
from models.base import Base
from models.care import CareLink, Invite
from models.delivery import Delivery, DeliveryAttempt
from models.emergency import EmergencyAccess
from models.events import Event
from models.mood import MoodEntry, MoodEntryVersion
from models.organisations import Membership, Organisation, StaffInvite
from models.reminders import Reminder
from models.second_factor import RecoveryCode, SecondFactor
from models.sessions import Observation, TreatmentSession
from models.signups import Signup
from models.sync import SyncCounter
from models.throttle import LoginThrottle
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
    "EmergencyAccess",
    "Event",
    "Invite",
    "JobLease",
    "LoginThrottle",
    "Membership",
    "MoodEntry",
    "MoodEntryVersion",
    "Observation",
    "Organisation",
    "RecoveryCode",
    "RefreshToken",
    "Reminder",
    "RevokedAccessToken",
    "Role",
    "SecondFactor",
    "Signup",
    "StaffInvite",
    "SyncCounter",
    "TokenFamily",
    "TreatmentSession",
    "User",
    "Webhook",
    "WorkerHeartbeat",
]
