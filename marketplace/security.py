"""API keys: generated with a lookup prefix, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "aidx"


@dataclass(frozen=True)
class GeneratedKey:
    plaintext: str  # shown once to the caller, never stored
    prefix: str
    secret_hash: str


def hash_secret(plaintext: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_api_key() -> GeneratedKey:
    prefix = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(plaintext=plaintext, prefix=prefix, secret_hash=hash_secret(plaintext))


def parse_prefix(plaintext: str) -> str | None:
    """The lookup prefix of a presented key, or None when it is not shaped like our keys."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def secret_matches(plaintext: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(plaintext), secret_hash)
