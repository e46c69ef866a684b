"""Erasure of one's own account, on the wire."""

from __future__ import annotations

from marshmallow import Schema

from schemas.common import password_field


class AccountEraseIn(Schema):
    """The patient's password, confirming that everything is to be erased for good."""

    password = password_field(required=True)
