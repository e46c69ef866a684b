"""Add the audit 503 to every GET that reads a patient's data in openapi.yaml (idempotent).

A read of health data whose audit record cannot be written answers 503, so each such
operation documents it. Run after adding operations: ``python tools/add_read_503.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent / "openapi.yaml"
AUDITED = re.compile(r"^  (/api/v1/patients[^:]*|/api/v1/me/export|/api/v1/alerts):\n", re.M)
ENTRY = "        '503':\n          $ref: '#/components/responses/ServiceUnavailable'\n"


def main() -> None:
    """Insert the 503 before each audited GET's 500 entry, unless it is there already."""
    text = SPEC.read_text()
    out, position = [], 0
    for match in AUDITED.finditer(text):
        start = match.end()
        following = re.compile(r"^  /", re.M).search(text, start)
        end = following.start() if following else text.index("\ncomponents:", start)
        block = text[start:end]
        get = re.search(r"^    get:\n", block, re.M)
        if get:
            rest = block[get.end() :]
            nxt = re.search(r"^    \S", rest, re.M)
            op = rest[: nxt.start()] if nxt else rest
            if "'503':" not in op and "'500':" in op:
                op = op.replace("        '500':", ENTRY + "        '500':", 1)
                rest = op + (rest[nxt.start() :] if nxt else "")
                block = block[: get.end()] + rest
        out.append(text[position:start] + block)
        position = end
    out.append(text[position:])
    SPEC.write_text("".join(out))


if __name__ == "__main__":
    main()
