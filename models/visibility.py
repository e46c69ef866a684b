"""The one rule of visibility: who may see a patient's record, and on what grounds."""

from __future__ import annotations

import enum
import functools
import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, exists, select

from models.accounts import Role
from models.care import CareLink, visible_link
from models.emergency import live_emergency_access


class Viewer(Protocol):
    """Who looks: a ``User``, or a request's principal (its id and role)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def role(self) -> Role: ...


class Access(enum.StrEnum):
    """Why the viewer may see the patient."""

    self = "self"
    care_link = "care_link"
    emergency = "emergency"


def patient_access(
    *, db: Any, viewer: Viewer, patient_id: uuid.UUID, now: datetime
) -> Access | None:
    """A patient sees themself; a clinician the patients linked to them in an organisation where
    they are an active clinician, or, failing that, one they hold a running emergency access
    to. None for everyone else (the operator included)."""
    if viewer.role == Role.patient:
        return Access.self if viewer.id == patient_id else None
    if viewer.role != Role.clinician:
        return None
    linked, emergency = db.execute(
        _access_statement(), {"patient_id": patient_id, "clinician_id": viewer.id, "now": now}
    ).one()
    if linked:
        return Access.care_link
    return Access.emergency if emergency else None


@functools.cache
def _access_statement() -> Select[tuple[bool, bool]]:
    # Built once, one round trip: every clinician request about a patient runs it.
    patient, clinician, now = bindparam("patient_id"), bindparam("clinician_id"), bindparam("now")
    linked = exists().where(CareLink.patient_id == patient, visible_link(clinician))
    return select(linked, live_emergency_access(clinician, patient, now))
