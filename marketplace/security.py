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


# Scopes ---------------------------------------------------------------------------------------

ALL_SCOPES = "*"
SCOPES: dict[str, str] = {
    "datasets:read": "datasets, co-owners, uploads, curation runs, versions, cards, files, Hub API",
    "datasets:write": "create datasets, manage co-owners, upload, start curation runs, edit cards",
    "listings:read": "listings, offers, previews, the catalog, human review rounds",
    "listings:write": "submit, review and delist listings; offers; human review rounds",
    "licenses:read": "licenses, filed contracts, certificates, entitlements, orders",
    "licenses:write": "license a listing; place, decide, accept and file orders; renewals",
    "ledger:read": "statements and the trial balance",
    "ledger:write": "record top-ups and payouts",
    "training:read": "training jobs, their events, checkpoints, artifacts and model cards",
    "training:write": "launch, pause, resume and cancel training jobs",
    "audit:read": "the audit trail",
    "admin": "organisations, users and API keys",
}
"""Every scope a key may hold, with what it lets the key reach; ``*`` stands for all of them."""


def normalize_scopes(requested: list[str]) -> list[str]:
    """Sorted, deduplicated scopes; ``*`` alone when it is among them. Unknown names are refused."""
    unknown = sorted(set(requested) - set(SCOPES) - {ALL_SCOPES})
    if unknown:
        raise ValueError(
            f"unknown scope {', '.join(map(repr, unknown))}; "
            f"the scopes are {', '.join(SCOPES)} or '*'"
        )
    if ALL_SCOPES in requested:
        return [ALL_SCOPES]
    return sorted(set(requested))


def expand_scopes(scopes: list[str]) -> frozenset[str]:
    """The scopes a stored list grants, with ``*`` expanded to every scope."""
    if ALL_SCOPES in scopes:
        return frozenset(SCOPES)
    return frozenset(scopes).intersection(SCOPES)
