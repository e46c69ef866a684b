"""Decoding request bodies: the one place that turns JSON bytes into Python values."""

from __future__ import annotations

import json
from typing import Any


class MalformedJson(ValueError):
    """The body is not JSON this service can read (the view answers 400)."""


def decode_json(raw: bytes) -> Any:
    """The JSON value in ``raw``; MalformedJson when it is not valid UTF-8 JSON.

    Nesting past the interpreter's stack (``[[[[...`` a few thousand deep fits in far less
    than the 1 MiB body limit) raises RecursionError inside the decoder, which unwinds
    cleanly: that body is malformed for us like any other, not a server error.
    """
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedJson from None
