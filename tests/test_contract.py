"""openapi.yaml is the contract: it validates, it lists exactly the app's routes, its schemas
are the marshmallow ones, and the app serves it."""

from __future__ import annotations

import re

import pytest
import yaml
from openapi_spec_validator import validate

from api.contract import declared
from api.openapi import render
from tests.conftest import ROOT

SPEC_PATH = ROOT / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Static files; and flask-restx's "root" rule on the bare prefix (/api/v1), which always
# answers 404 problem+json exactly like a path that is not there.
IGNORED_ENDPOINTS = {"static", "restx_doc.static", "root"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


def test_openapi_yaml_is_a_valid_openapi_3_0_document(spec):
    assert spec["openapi"] == "3.0.3"
    validate(spec)


def _app_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in IGNORED_METHODS:
                operations.add((path, method.lower()))
    return operations


def _documented_operations(spec: dict) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists(app, spec):
    registered = _app_operations(app)
    documented = _documented_operations(spec)
    assert sorted(registered - documented) == [], "routes missing from openapi.yaml"
    assert sorted(documented - registered) == [], "documented operations the app lacks"


def test_paths_are_full_and_served_from_root(spec):
    assert spec["servers"] == [{"url": "/"}]
    for path in spec["paths"]:
        assert path.startswith("/"), path
        assert path.startswith("/api/v1/") or path in {
            "/healthz",
            "/readyz",
            "/openapi.yaml",
            "/docs",
        }, path


def test_security_is_bearer_everywhere_except_the_public_operations(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        **spec["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert spec["security"] == [{"bearerAuth": []}]
    public = {
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/staff-invites/accept",
        "/api/v1/auth/2fa/verify",
        "/api/v1/auth/register/confirm",
    }
    for path, method in _documented_operations(spec):
        operation = spec["paths"][path][method]
        if path in public or not path.startswith("/api/v1/"):
            assert operation.get("security") == [], (path, method)
        else:
            assert "security" not in operation, (path, method)
            assert "401" in operation["responses"], (path, method)


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _body_refs(schema: dict) -> list[str]:
    """A JSON body's schema: one named component, or a ``oneOf`` of named components."""
    if set(schema) == {"oneOf"}:
        return [option.get("$ref", "") for option in schema["oneOf"]]
    return [schema.get("$ref", "")]


def test_json_bodies_reference_named_component_schemas(spec):
    for path, method in _documented_operations(spec):
        operation = spec["paths"][path][method]
        contents = [operation.get("requestBody", {}).get("content", {})]
        contents += [r.get("content", {}) for r in operation["responses"].values()]
        for content in contents:
            for media_type, body in content.items():
                if "json" in media_type:
                    refs = _body_refs(body["schema"])
                    assert refs, (path, method, media_type)
                    for ref in refs:
                        assert ref.startswith("#/components/schemas/"), (path, method, media_type)


def test_the_committed_file_is_what_the_code_renders(app):
    # openapi.yaml is generated (`moodtrack openapi`): the views' declared operations, the
    # marshmallow schemas, api/openapi_shared.yaml. A hand edit, or a change of code whose
    # file was not generated again, fails here.
    assert SPEC_PATH.read_text("utf-8") == render(app), "run: moodtrack openapi"


def test_every_route_declares_its_operation(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in (rule.methods or set()) - IGNORED_METHODS:
            handler = getattr(view_class, method.lower()) if view_class else view
            assert declared(handler) is not None, (method, rule.rule)


def test_every_schema_reference_resolves(spec):
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/"), ref
        section, name = ref.removeprefix("#/components/").split("/", 1)
        assert name in spec["components"][section], ref
    used = {r.rsplit("/", 1)[1] for r in _refs(spec) if r.startswith("#/components/schemas/")}
    assert sorted(set(schemas) - used) == [], "unused component schemas"


def test_crisis_statement_is_in_the_info_description(spec):
    description = " ".join(spec["info"]["description"].split())
    assert "not monitored in real time" in description
    assert "not an emergency service" in description


def test_served_openapi_yaml_is_the_file(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert yaml.safe_load(response.get_data(as_text=True)) == yaml.safe_load(
        SPEC_PATH.read_text("utf-8")
    )


def test_docs_page_points_at_the_contract(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '"/openapi.yaml"' in response.get_data(as_text=True)
