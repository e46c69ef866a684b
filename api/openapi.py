"""openapi.yaml, rendered from the code: every view's declared operation (api.contract), the
marshmallow schemas (apispec renders them), and the parts no one operation owns
(openapi_shared.yaml). ``moodtrack openapi`` writes the file; a test fails when the committed
file differs from what this renders."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema

from api.contract import PROBLEMS, Operation, declared

OPENAPI_VERSION = "3.0.3"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Static files, and flask-restx's bare-prefix rule (/api/v1) that answers 404 like any path
# that is not there.
IGNORED_ENDPOINTS = {"static", "restx_doc.static", "root"}
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class ReadableDumper(yaml.SafeDumper):
    """Block YAML with multi-line text as literal blocks, as people read and diff it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        # Literal blocks cannot hold trailing spaces; they carry no meaning here.
        value = "\n".join(line.rstrip() for line in value.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


ReadableDumper.add_representer(str, _text)


def shared_parts() -> dict[str, Any]:
    """openapi_shared.yaml: info, tags and the shared components."""
    return yaml.safe_load(resources.files("api").joinpath("openapi_shared.yaml").read_text())


def build_spec(app: Flask) -> dict[str, Any]:
    """The whole contract as a document."""
    shared = shared_parts()
    info = dict(shared["info"])
    spec = APISpec(
        title=info.pop("title"),
        version=info.pop("version"),
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info=info,
        servers=[{"url": "/"}],
        security=[{"bearerAuth": []}],
        tags=shared["tags"],
    )
    components = shared["components"]
    path_parameters = {
        p["name"]: name for name, p in components["parameters"].items() if p["in"] == "path"
    }
    for name, scheme in components["securitySchemes"].items():
        spec.components.security_scheme(name, scheme)
    for name, parameter in components["parameters"].items():
        where = parameter.pop("in")
        spec.components.parameter(name, where, parameter)
    for name, header in components["headers"].items():
        spec.components.header(name, header)
    for name, response in components["responses"].items():
        spec.components.response(name, response)
    for name, schema in components.get("schemas", {}).items():
        spec.components.schema(name, schema)
    for path, operations in _operations(app):
        spec.path(
            path=path,
            operations={
                method: _operation(path, op, path_parameters) for method, op in operations.items()
            },
        )
    return _typed_nulls(spec.to_dict())


def render(app: Flask) -> str:
    """openapi.yaml's text."""
    return yaml.dump(
        build_spec(app),
        Dumper=ReadableDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )


def marshmallow_schemas() -> dict[str, type[Schema]]:
    """Every marshmallow Schema class of the ``schemas`` package, by class name."""
    import schemas

    found: dict[str, type[Schema]] = {}
    for info in pkgutil.walk_packages(schemas.__path__, prefix="schemas."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Schema) and obj.__module__ == info.name:
                found[name] = obj
    return found


def default_path() -> Path:
    """The committed file, beside the packages in a source checkout."""
    return Path(__file__).resolve().parent.parent / "openapi.yaml"


def null_of(kind: str) -> dict[str, Any]:
    """Null alone, in the form OpenAPI 3.0 validators accept and generators type as None
    (``nullable`` needs a ``type`` beside it: openapi-typescript refuses it without one)."""
    return {"type": kind, "nullable": True, "enum": [None]}


NULL = null_of("object")
# apispec's null branch of a nullable nested schema: generators make an empty model of it.
_APISPEC_NULL = {"type": "object", "nullable": True}
_NULLABLE_ENUM_KEEPS = ("type", "format", "enum")


def _null_among_values(enum: list[Any]) -> bool:
    """An enum of values that admits null too (not null alone, which is already typed)."""
    return None in enum and enum != [None]


def _typed_nulls(node: Any, title: str | None = None) -> Any:
    """Every nullable nested schema and nullable enum as ``anyOf: [<schema>, NULL]``.

    apispec writes them as ``anyOf: [{type: object, nullable: true}, $ref]`` and
    ``{enum: [a, b, null], nullable: true}``; code generators turn the first into an
    untyped model and the second into three enum classes. Plain nullable scalars
    (``type: integer, nullable: true``) are typed well already and stay. The enum takes its
    property's name as ``title``: generators name its class after it (not ``Type0``).
    """
    if isinstance(node, list):
        return [_typed_nulls(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {
        key: {name: _typed_nulls(schema, name) for name, schema in value.items()}
        if key == "properties" and isinstance(value, dict)
        else _typed_nulls(value)
        for key, value in node.items()
    }
    options = node.get("anyOf")
    if isinstance(options, list) and _APISPEC_NULL in options:
        node["anyOf"] = [option for option in options if option != _APISPEC_NULL] + [NULL]
    elif node.get("nullable") is True and _null_among_values(node.get("enum", [])):
        inner = {key: node.pop(key) for key in _NULLABLE_ENUM_KEEPS if key in node}
        inner["enum"] = [value for value in inner["enum"] if value is not None]
        if title:
            inner["title"] = title
        del node["nullable"]
        node["anyOf"] = [inner, null_of(inner.get("type", "string"))]
    return node


def _operations(app: Flask) -> list[tuple[str, dict[str, Operation]]]:
    """(OpenAPI path, {method: operation}) for every route, in the order they were added."""
    found: dict[str, dict[str, Operation]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            handler = getattr(view_class, method.lower()) if view_class else view
            op = declared(handler)
            if op is None:
                raise LookupError(f"{method} {rule.rule} declares no operation (api.contract)")
            found.setdefault(_ARGUMENT.sub(r"{\1}", rule.rule), {})[method.lower()] = op
    return list(found.items())


def _operation(path: str, op: Operation, path_parameters: dict[str, str]) -> dict[str, Any]:
    # By name: apispec turns the name of a component into its $ref.
    parameters: list[Any] = [path_parameters[name] for name in re.findall(r"{(\w+)}", path)]
    parameters += list(op.parameters)
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    document: dict[str, Any] = {"tags": [op.tag], "operationId": op.operation_id}
    document["summary"] = op.summary
    if op.description:
        document["description"] = op.description + "\n"
    if op.public or not path.startswith("/api/"):
        document["security"] = []
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    if op.callbacks:
        document["callbacks"] = op.callbacks
    document["responses"] = _responses(path, op)
    return document


def _schema(schema: Any, plain: Any) -> Any:
    """A marshmallow class (apispec makes it a $ref), a oneOf of several, or a plain schema."""
    if isinstance(schema, tuple):
        return {"oneOf": list(schema)}
    if schema is not None:
        return schema
    return dict(plain or {})


def _responses(path: str, op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for reply in op.replies:
        answer: dict[str, Any] = {"description": reply.description}
        if reply.headers:
            answer["headers"] = {name: name for name in reply.headers}
        content = {}
        if reply.schema is not None or reply.body is not None:
            content[reply.media] = {"schema": _schema(reply.schema, reply.body)}
        elif reply.media != "application/json":
            content[reply.media] = {}
        for media, schema in (reply.more or {}).items():
            content[media] = {"schema": _schema(schema, None)}
        if content:
            answer["content"] = content
        responses[str(reply.status)] = answer
    for status in op.problems:
        name = PROBLEMS[status]
        if status == 500 and not path.startswith("/api/"):
            name = "MetaInternalServerError"  # outside the API: no Cache-Control
        responses[str(status)] = name
    return responses
