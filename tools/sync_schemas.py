"""Replace named component schemas in openapi.yaml with their current rendering.

Usage: ``python tools/sync_schemas.py Name [Name ...]``. Only the named blocks under
``components.schemas`` change (a new name is appended there); the hand-written rest of
the file, comments included, stays as it is.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_schemas import ROOT, render_schemas

SPEC = ROOT / "openapi.yaml"


def _block(name: str, schema: dict) -> str:
    text = yaml.safe_dump({name: schema}, sort_keys=False, allow_unicode=True, width=1000)
    return "".join(f"    {line}\n" for line in text.splitlines())


def sync(names: list[str]) -> None:
    """Rewrite the blocks of ``names`` in openapi.yaml."""
    text = SPEC.read_text()
    rendered = render_schemas(names)
    start = text.index("\n  schemas:\n") + len("\n  schemas:\n")
    end_match = re.compile(r"^  \S", re.M).search(text, start)
    end = end_match.start() if end_match else len(text)
    section = text[start:end]
    for name in names:
        block = _block(name, rendered[name])
        pattern = re.compile(rf"^    {re.escape(name)}:\n(?:^(?:      .*|\s*)\n)*", re.M)
        if pattern.search(section):
            section = pattern.sub(lambda _m, b=block: b, section, count=1)
        else:
            section = section.rstrip("\n") + "\n" + block
    SPEC.write_text(text[:start] + section + text[end:])


if __name__ == "__main__":
    sync(sys.argv[1:])
