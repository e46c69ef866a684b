"""Render the marshmallow wire schemas as OpenAPI 3.0.3 components, the way the contract has them.

Usage: ``python tools/render_schemas.py [Name ...]`` prints ``components.schemas`` YAML for the
named schema classes (default: every class the contract uses, see ``CONTRACT_SCHEMAS``) for
pasting into openapi.yaml. tests/test_contract.py compares openapi.yaml against
``render_schemas()`` so the two cannot drift.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

OPENAPI_VERSION = "3.0.3"

# Schemas openapi.yaml references; bases such as PageOut are left out unless used directly.
CONTRACT_SCHEMAS = (
    "ReportOut",
    "ExportOut",
    "AlertListOut",
    "AlertAcknowledgeIn",
    "AccountEraseIn",
    "AccessLogOut",
    "AuditEventListOut",
    "TrendOut",
    "EffectOut",
    "CourseOut",
    "DueListOut",
    "RegisterIn",
    "LoginIn",
    "RefreshIn",
    "TokenPairOut",
    "UserOut",
    "MeUpdate",
    "PasswordChangeIn",
    "UserCreateIn",
    "UserUpdate",
    "PatientOut",
    "CohortOut",
    "InviteOut",
    "CareLinkIn",
    "PersonOut",
    "CareLinkOut",
    "CareLinkListOut",
    "MoodEntryIn",
    "MoodEntryUpdate",
    "MoodEntryOut",
    "MoodEntryListOut",
    "MoodEntrySyncOut",
    "MoodEntryBatchIn",
    "MoodEntryBatchOut",
    "SessionIn",
    "SessionUpdate",
    "SessionOut",
    "SessionListOut",
    "ObservationIn",
    "ObservationOut",
    "ObservationListOut",
    "AssessmentIn",
    "AssessmentOut",
    "AssessmentListOut",
    "InstrumentOut",
    "InstrumentListOut",
    "WebhookIn",
    "WebhookUpdate",
    "WebhookOut",
    "WebhookSecretOut",
    "WebhookListOut",
    "DeliveryOut",
    "DeliveryListOut",
    "DeliveryHealthOut",
    "WebhookEvent",
    "OutcomeDefinitionsOut",
)


def marshmallow_classes() -> dict[str, type[Schema]]:
    """Every marshmallow Schema class defined in the ``schemas`` package, by class name."""
    import schemas

    found: dict[str, type[Schema]] = {}
    for info in pkgutil.walk_packages(schemas.__path__, prefix="schemas."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Schema)
                and obj.__module__ == module.__name__
            ):
                found[name] = obj
    return found


def render_schemas(names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """``components.schemas`` as apispec's MarshmallowPlugin renders the named classes.

    Nested schemas come out as ``$ref``s to components named after their class, and are
    rendered too. ``load_only`` fields are ``writeOnly``, ``dump_only`` ones ``readOnly``.
    """
    classes = marshmallow_classes()
    wanted = list(CONTRACT_SCHEMAS if names is None else names)
    spec = APISpec(
        title="moodtrack",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
    )
    for name in wanted:
        # A nested use may already have registered it under its class name.
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=classes[name])
    return spec.to_dict()["components"]["schemas"]


def main(argv: list[str]) -> int:
    """Print the rendered components as YAML."""
    rendered = render_schemas(argv or None)
    sys.stdout.write(yaml.safe_dump({"schemas": rendered}, sort_keys=False, width=100))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
