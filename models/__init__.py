"""Entities and domain rules of moodtrack: everything that needs no HTTP."""

from models.accounts import RefreshToken, RevokedAccessToken, Role, TokenFamily, User
from models.base import Base
from models.care import CareLink, Invite

__all__ = [
    "Base",
    "CareLink",
    "Invite",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "TokenFamily",
    "User",
]
