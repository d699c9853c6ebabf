"""``marketplace.security``: API keys carry a lookup prefix and are stored only as a hash."""

from __future__ import annotations

import hashlib

import pytest

from marketplace.security import (
    KEY_PREFIX,
    generate_api_key,
    hash_secret,
    parse_prefix,
    secret_matches,
)


def test_generated_key_parses_to_its_own_prefix() -> None:
    key = generate_api_key()

    assert key.plaintext.startswith(f"{KEY_PREFIX}_{key.prefix}_")
    assert parse_prefix(key.plaintext) == key.prefix
    assert len(key.prefix) == 12
    int(key.prefix, 16)  # hex


def test_generated_keys_are_unique_and_long() -> None:
    keys = [generate_api_key() for _ in range(50)]

    assert len({key.plaintext for key in keys}) == 50
    assert len({key.prefix for key in keys}) == 50
    # 32 random bytes, URL-safe base64 without padding: 43 characters of secret.
    assert all(len(key.plaintext.split("_", 2)[2]) >= 43 for key in keys)


def test_stored_hash_is_not_the_key() -> None:
    key = generate_api_key()
    secret = key.plaintext.split("_", 2)[2]

    assert key.secret_hash != key.plaintext
    assert secret not in key.secret_hash
    assert key.secret_hash == hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert hash_secret(key.plaintext) == key.secret_hash


def test_the_presented_key_matches_its_hash() -> None:
    key = generate_api_key()

    assert secret_matches(key.plaintext, key.secret_hash) is True


def test_another_key_does_not_match() -> None:
    key = generate_api_key()
    other = generate_api_key()

    assert secret_matches(other.plaintext, key.secret_hash) is False
    assert secret_matches(key.plaintext + "x", key.secret_hash) is False
    assert secret_matches(key.plaintext[:-1], key.secret_hash) is False
    assert secret_matches(key.secret_hash, key.secret_hash) is False  # the hash is no key


def test_a_key_whose_secret_contains_underscores_still_parses() -> None:
    assert parse_prefix("aidx_0123456789ab_sec_ret_with_under_scores") == "0123456789ab"


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "aidx",
        "aidx_",
        "aidx_0123456789ab",
        "aidx_0123456789ab_",
        "aidx__secret",
        "aidx_0123456789a_secret",
        "aidx_0123456789abc_secret",
        "xidx_0123456789ab_secret",
        "AIDX_0123456789ab_secret",
        "Bearer aidx_0123456789ab_secret",
        "0123456789ab",
    ],
)
def test_malformed_keys_have_no_prefix(presented: str) -> None:
    assert parse_prefix(presented) is None
