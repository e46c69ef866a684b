"""FHIR R4 on the wire: the one place a patient's records become a FHIR Bundle.

Codes follow clinical.md §5: LOINC only where it lists a verified code (PHQ-9 and GAD-7
totals, PHQ-9 items and answers, the PHQ-9 difficulty item); everything else uses local
code systems under ``urn:moodtrack:``. Instants keep the offset the phone sent, so a
reader sees the patient's own clock time.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from models.accounts import User
from models.assessments import Assessment
from models.instruments import CATALOGUE, Instrument
from models.mood import MOOD_METRICS, MoodEntry
from models.records import local_instant
from models.sessions import Drug, TreatmentSession

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# R4 core extension carrying an answer's score on its Coding (R5 renamed it itemWeight).
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
METRIC_SYSTEM = "urn:moodtrack:metric"
INSTRUMENT_SYSTEM = "urn:moodtrack:instrument"
BAND_SYSTEM = "urn:moodtrack:severity-band"
QUESTIONNAIRE_PREFIX = "urn:moodtrack:questionnaire:"
PATIENT_ID_SYSTEM = "urn:moodtrack:patient"
RECORD_ID_SYSTEM = "urn:moodtrack:record"
# clinical.md §5: Spravato (esketamine nasal spray), RxNorm SCDF.
ESKETAMINE_RXNORM = "2201623"

METRIC_TEXT = {
    "mood": "Mood rating, 0 to 10 (higher is better)",
    "anxiety": "Anxiety rating, 0 to 10 (higher is worse)",
    "energy": "Energy rating, 0 to 10 (higher is better)",
    "sleep_hours": "Hours slept",
}


def _ref(resource_id: uuid.UUID) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}"}


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _derived_id(record_id: uuid.UUID, part: str) -> uuid.UUID:
    # Stable ids for resources derived from one record (a value of an entry, a total).
    return uuid.uuid5(record_id, part)


def _at(instant: datetime, offset_minutes: int) -> str:
    return local_instant(instant, offset_minutes).isoformat()


def _survey() -> list[dict[str, Any]]:
    return [
        {
            "coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}],
        }
    ]


def patient_resource(patient: User) -> dict[str, Any]:
    """The Patient: id and the name the patient chose to show their care team."""
    return {
        "resourceType": "Patient",
        "id": str(patient.id),
        "identifier": [{"system": PATIENT_ID_SYSTEM, "value": str(patient.id)}],
        "active": patient.disabled_at is None,
        "name": [{"text": patient.display_name}],
    }


def _answer(instrument: Instrument, value: int) -> dict[str, Any]:
    option = next((o for o in instrument.answer_options if o.value == value), None)
    if option is None or option.loinc_code is None:
        return {"valueInteger": value}
    return {
        "valueCoding": {
            "extension": [{"url": ORDINAL_VALUE, "valueDecimal": value}],
            "system": LOINC,
            "code": option.loinc_code,
            "display": option.label,
        }
    }


def questionnaire_response(assessment: Assessment, patient_id: uuid.UUID) -> dict[str, Any]:
    """A completed form: one item per answer, linkId the LOINC item code where verified."""
    instrument = CATALOGUE[assessment.instrument]
    items = []
    for item, value in zip(instrument.items, assessment.answers, strict=True):
        entry: dict[str, Any] = {
            "linkId": item.loinc_code or f"{instrument.code}.{item.number}",
            "answer": [_answer(instrument, value)],
        }
        # Item wording only where the licence allows it (the catalogue holds no other).
        if item.text:
            entry["text"] = item.text
        items.append(entry)
    extra = instrument.difficulty_item
    if extra is not None and assessment.difficulty is not None:
        items.append(
            {
                "linkId": extra.loinc_code or f"{instrument.code}.{extra.number}",
                "text": extra.text,
                "answer": [{"valueInteger": assessment.difficulty}],
            }
        )
    return {
        "resourceType": "QuestionnaireResponse",
        "id": str(assessment.id),
        "identifier": {"system": RECORD_ID_SYSTEM, "value": str(assessment.id)},
        "questionnaire": f"{QUESTIONNAIRE_PREFIX}{instrument.code}",
        "status": "completed",
        "subject": _ref(patient_id),
        "authored": _at(assessment.occurred_at, assessment.utc_offset_minutes),
        "item": items,
    }


def total_code(instrument: Instrument) -> dict[str, Any]:
    """The code of an instrument's total: LOINC where verified, else the local system."""
    text = f"{instrument.name} total score"
    if instrument.loinc_total:
        return {"coding": [{"system": LOINC, "code": instrument.loinc_total}], "text": text}
    return {"coding": [{"system": INSTRUMENT_SYSTEM, "code": instrument.code}], "text": text}


def total_observation(assessment: Assessment, patient_id: uuid.UUID) -> dict[str, Any]:
    """The form's total score, derived from its QuestionnaireResponse."""
    instrument = CATALOGUE[assessment.instrument]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(_derived_id(assessment.id, "total")),
        "status": "final",
        "category": _survey(),
        "code": total_code(instrument),
        "subject": _ref(patient_id),
        "effectiveDateTime": _at(assessment.occurred_at, assessment.utc_offset_minutes),
        "valueInteger": assessment.total,
        "derivedFrom": [_ref(assessment.id)],
    }
    band = next((b for b in instrument.bands if b.code == assessment.band), None)
    if band is not None:
        resource["interpretation"] = [
            {
                "coding": [{"system": f"{BAND_SYSTEM}:{instrument.code}", "code": band.code}],
                "text": band.label,
            }
        ]
    return resource


def mood_observations(entry: MoodEntry, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    """One Observation per value the entry holds (mood, and anxiety, energy, sleep if given)."""
    out = []
    for metric in MOOD_METRICS:
        value = getattr(entry, metric)
        if value is None:
            continue
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": str(_derived_id(entry.id, metric)),
            "identifier": [{"system": RECORD_ID_SYSTEM, "value": f"{entry.id}/{metric}"}],
            "status": "final",
            "category": _survey(),
            "code": {
                "coding": [{"system": METRIC_SYSTEM, "code": metric}],
                "text": METRIC_TEXT[metric],
            },
            "subject": _ref(patient_id),
            "effectiveDateTime": _at(entry.occurred_at, entry.utc_offset_minutes),
        }
        if metric == "sleep_hours":
            resource["valueQuantity"] = {
                "value": value,
                "unit": "h",
                "system": UCUM,
                "code": "h",
            }
        else:
            resource["valueInteger"] = value
        # The patient's note travels once, with the entry's mood value.
        if metric == "mood" and entry.note:
            resource["note"] = [{"text": entry.note}]
        out.append(resource)
    return out


def procedure(
    session: TreatmentSession, number: int | None, patient_id: uuid.UUID
) -> dict[str, Any]:
    """A completed dosing session; the drug is the code's text (esketamine also RxNorm)."""
    drug = session.drug.value
    used: dict[str, Any] = {"text": f"{drug} {session.route.value}"}
    if session.drug == Drug.esketamine:
        used["coding"] = [{"system": RXNORM, "code": ESKETAMINE_RXNORM}]
    period = {"start": _at(session.started_at, session.utc_offset_minutes)}
    if session.ended_at is not None:
        period["end"] = _at(session.ended_at, session.utc_offset_minutes)
    dose = "dose not recorded" if session.dose_mg is None else f"{session.dose_mg:g} mg"
    if session.dose_mg_per_kg is not None:
        dose += f" ({session.dose_mg_per_kg:g} mg/kg at {session.weight_kg:g} kg)"
    facts = [
        f"Session {number} of the course" if number else "Completed session",
        f"{drug}, {session.route.value}, {dose}, {session.setting.value}",
    ]
    notes = [{"text": "; ".join(facts)}]
    if session.notes:
        notes.append({"text": session.notes})
    return {
        "resourceType": "Procedure",
        "id": str(session.id),
        "identifier": [{"system": RECORD_ID_SYSTEM, "value": str(session.id)}],
        "status": "completed",
        "code": {"text": f"{drug} treatment session"},
        "subject": _ref(patient_id),
        "performedPeriod": period,
        "usedCode": [used],
        "note": notes,
    }


def bundle(
    *,
    patient: User,
    mood_entries: Iterable[MoodEntry],
    assessments: Iterable[Assessment],
    sessions: Sequence[TreatmentSession],
    session_numbers: Mapping[uuid.UUID, int],
    generated_at: datetime,
) -> dict[str, Any]:
    """A Bundle of type collection: the Patient, then per assessment a QuestionnaireResponse
    and its total Observation, an Observation per mood-entry value, a Procedure per session.

    ``sessions`` must be completed sessions only; scheduled and cancelled ones never count.
    """
    entries = [_entry(patient_resource(patient))]
    for assessment in assessments:
        entries.append(_entry(questionnaire_response(assessment, patient.id)))
        entries.append(_entry(total_observation(assessment, patient.id)))
    for entry in mood_entries:
        entries.extend(_entry(r) for r in mood_observations(entry, patient.id))
    for session in sessions:
        entries.append(_entry(procedure(session, session_numbers.get(session.id), patient.id)))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": generated_at.isoformat(),
        "entry": entries,
    }


def resource_counts(document: Mapping[str, Any]) -> Counter[str]:
    """How many resources of each type a bundle holds."""
    return Counter(e["resource"]["resourceType"] for e in document.get("entry", []))
