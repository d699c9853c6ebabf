"""``marketplace.security``: API keys carry a lookup prefix, are stored only as a hash, and hold
scopes from one fixed list."""

from __future__ import annotations

import hashlib

import pytest

from marketplace.security import (
    ALL_SCOPES,
    KEY_PREFIX,
    SCOPES,
    expand_scopes,
    generate_api_key,
    hash_secret,
    normalize_scopes,
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


# Scopes -----------------------------------------------------------------------------------------


def test_scopes_are_sorted_and_deduplicated() -> None:
    assert normalize_scopes(["ledger:read", "datasets:read", "ledger:read"]) == [
        "datasets:read",
        "ledger:read",
    ]


def test_the_wildcard_absorbs_every_other_scope() -> None:
    assert normalize_scopes(["datasets:read", ALL_SCOPES]) == [ALL_SCOPES]
    assert expand_scopes([ALL_SCOPES]) == frozenset(SCOPES)


def test_an_unknown_scope_is_refused_by_name_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'datasets:delete'") as refused:
        normalize_scopes(["datasets:read", "datasets:delete"])
    assert all(scope in str(refused.value) for scope in SCOPES)


def test_no_scopes_grant_nothing_and_stored_unknown_names_grant_nothing() -> None:
    assert normalize_scopes([]) == []
    assert expand_scopes([]) == frozenset()
    assert expand_scopes(["datasets:read", "retired:scope"]) == frozenset({"datasets:read"})


def test_every_scope_is_an_area_and_an_access_or_admin() -> None:
    for scope in SCOPES:
        assert scope == "admin" or scope.split(":")[1] in ("read", "write"), scope
