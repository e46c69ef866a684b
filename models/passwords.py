"""Password policy (NIST SP 800-63B style) and argon2id hashing."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256
SERVICE_NAME = "moodtrack"
# A local part shorter than this would forbid ordinary words ("al" in "always").
MIN_LOCAL_PART_TO_CHECK = 3


@cache
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords shipped in api/data, lower-cased."""
    text = resources.files("api").joinpath("data/common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())


def normalise(password: str) -> str:
    """NFC, so the same password typed on two keyboards hashes the same."""
    return unicodedata.normalize("NFC", password)


def password_problems(password: str, *, email: str) -> list[str]:
    """Why this password is refused; empty when it is acceptable.

    Length and blocklist only, no composition rules (NIST SP 800-63B 5.1.1.2).
    """
    password = normalise(password)
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Must be at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        problems.append(f"Must be at most {MAX_LENGTH} characters.")
    folded = password.casefold()
    if folded in common_passwords():
        problems.append("Is one of the most common passwords; choose another.")
    email_folded = email.strip().casefold()
    local_part = email_folded.split("@", 1)[0]
    if email_folded and email_folded in folded:
        problems.append("Must not contain your email address.")
    elif len(local_part) >= MIN_LOCAL_PART_TO_CHECK and local_part in folded:
        problems.append("Must not contain the first part of your email address.")
    if SERVICE_NAME in folded:
        problems.append("Must not contain the name of this service.")
    return problems


@dataclass(frozen=True)
class Argon2Params:
    """Cost parameters; defaults are RFC 9106's second recommended option."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Passwords:
    """argon2id hashing with a configured cost, rehash detection and a dummy verify."""

    def __init__(self, params: Argon2Params) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # Verifying against this for unknown emails keeps login timing uniform.
        self._dummy_hash = self._hasher.hash("timing-equaliser-not-a-password")

    def hash(self, password: str) -> str:
        """Hash a new password."""
        return self._hasher.hash(normalise(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when the password matches; spends the same work when there is no hash."""
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, normalise(password)) and (
                stored_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the stored hash used other cost parameters than configured now."""
        return self._hasher.check_needs_rehash(stored_hash)
