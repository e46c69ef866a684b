"""YAML as people read it: multi-line strings as literal blocks (used when writing
openapi.yaml from merged or generated data)."""

from __future__ import annotations

from typing import Any

import yaml


class ReadableDumper(yaml.SafeDumper):
    """SafeDumper with literal blocks for multi-line text."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        # Literal blocks cannot hold trailing spaces; they carry no meaning here.
        value = "\n".join(line.rstrip() for line in value.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


ReadableDumper.add_representer(str, _text)


def dump(data: Any) -> str:
    """``data`` as block YAML, keys in their given order."""
    return yaml.dump(
        data, Dumper=ReadableDumper, sort_keys=False, allow_unicode=True, width=100
    )
