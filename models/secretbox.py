"""Encryption at rest of small secrets (TOTP seeds) with AES-256-GCM and a key ring.

A stored value is ``v1:<kid>:<base64 of nonce + ciphertext>``. The additional data binds a
ciphertext to its row (the user id), so one user's seed copied onto another row does not
decrypt. Keys live in ``MOODTRACK_TOTP_KEYS``, apart from the token signing keys: those are
retired 15 minutes after a rotation, and every seed encrypted with a retired key would be lost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """The stored secret names an unknown key or fails authentication."""


def derive_key(material: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` from longer key material (HKDF-like, one block)."""
    return hmac.new(material, f"moodtrack:{purpose}".encode(), hashlib.sha256).digest()


class SecretBox:
    """Encrypts with the active key; decrypts with any key of the ring."""

    def __init__(self, keys: dict[str, bytes], active_kid: str) -> None:
        if active_kid not in keys:
            raise ValueError("the active kid names no key")
        self._keys = {kid: AESGCM(derive_key(key, "totp")) for kid, key in keys.items()}
        self._active = active_kid

    def encrypt(self, plaintext: bytes, *, context: bytes) -> str:
        """Ciphertext of ``plaintext`` bound to ``context``, tagged with the active key id."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._active].encrypt(nonce, plaintext, context)
        return f"{_VERSION}:{self._active}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, *, context: bytes) -> bytes:
        """The plaintext; SecretUnreadable when the key is gone or the value was tampered with."""
        version, _, rest = stored.partition(":")
        kid, _, payload = rest.partition(":")
        if version != _VERSION or kid not in self._keys:
            raise SecretUnreadable("unknown format or key")
        try:
            raw = base64.b64decode(payload, validate=True)
            return self._keys[kid].decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context)
        except (ValueError, InvalidTag):
            raise SecretUnreadable("does not authenticate") from None

    def is_current(self, stored: str) -> bool:
        """True when the value is encrypted with the active key (else re-encrypt on use)."""
        return stored.startswith(f"{_VERSION}:{self._active}:")
