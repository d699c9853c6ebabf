"""``marketplace.certificates``: canonical JSON, Ed25519 signatures, the exchange's key file."""

from __future__ import annotations

import base64
import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.certificates import (
    ALGORITHM,
    CertificateError,
    canonical_json,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    public_key_pem,
    sign_certificate,
    verify_certificate,
)

PAYLOAD: dict[str, Any] = {
    "certificate_id": "cert_0123",
    "license_id": "lic_4567",
    "issued_at": "2026-01-02T03:04:05Z",
    "buyer": {"name": "Zürich Labs", "organization_id": "org_b"},
    "seller": {"name": "Acme Data", "organization_id": "org_s"},
    "dataset": {"content_hash": "sha256:" + "ab" * 32, "rows": 7473},
    "price": {"amount": 125000, "currency": "EUR"},
    "terms": ["research", "commercial"],
}


@pytest.fixture(scope="module")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def certificate(private_key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_certificate(copy.deepcopy(PAYLOAD), private_key)


# Canonical JSON ---------------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level_and_has_no_whitespace() -> None:
    value = {"b": 1, "a": {"z": [3, {"y": True, "x": None}], "c": "two words"}}

    assert canonical_json(value) == (b'{"a":{"c":"two words","z":[3,{"x":null,"y":true}]},"b":1}')


def test_canonical_json_does_not_depend_on_insertion_order() -> None:
    forward = {"first": 1, "second": {"p": 1, "q": 2}}
    backward = {"second": {"q": 2, "p": 1}, "first": 1}

    assert canonical_json(forward) == canonical_json(backward)


def test_canonical_json_keeps_non_ascii_as_utf8() -> None:
    encoded = canonical_json({"name": "Zürich ☃ 東京"})

    assert encoded == '{"name":"Zürich ☃ 東京"}'.encode()
    assert b"\\u" not in encoded


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (1.5, "$"),
        ({"price": {"amount": 12.5}}, "$.price.amount"),
        ({"rows": [1, 2, 0.0]}, "$.rows[2]"),
        ({"a": [{"b": [1, {"c": float("nan")}]}]}, "$.a[0].b[1].c"),
    ],
)
def test_canonical_json_refuses_floats_naming_the_path(value: Any, path: str) -> None:
    with pytest.raises(CertificateError) as raised:
        canonical_json(value)

    message = str(raised.value)
    assert message.startswith(f"{path}:")
    assert "float" in message


def test_canonical_json_accepts_integers_and_booleans() -> None:
    assert (
        canonical_json({"amount": 10**20, "ok": False})
        == b'{"amount":100000000000000000000,"ok":false}'
    )


def test_canonical_json_refuses_non_string_keys() -> None:
    with pytest.raises(CertificateError, match=r"\$\.outer: object keys must be strings"):
        canonical_json({"outer": {1: "one"}})


# Signing and verifying ----------------------------------------------------------------------


def test_signed_certificate_has_the_documented_shape(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    assert set(certificate) == {"payload", "signature", "key_id", "algorithm"}
    assert certificate["algorithm"] == ALGORITHM == "Ed25519"
    assert certificate["key_id"] == key_id(private_key.public_key())
    assert len(certificate["key_id"]) == 64
    assert len(base64.b64decode(certificate["signature"], validate=True)) == 64


def test_sign_then_verify_returns_the_payload(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    assert verify_certificate(certificate, private_key.public_key()) == PAYLOAD


def test_certificate_survives_a_json_round_trip_and_a_pem_public_key(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """What a buyer does offline: read the JSON file, load the published PEM, verify."""
    document = json.loads(json.dumps(certificate, indent=2, ensure_ascii=True))
    public_key = load_public_key(public_key_pem(private_key.public_key()))

    assert verify_certificate(document, public_key) == PAYLOAD


def test_signature_covers_the_canonical_form_not_the_key_order(
    private_key: Ed25519PrivateKey,
) -> None:
    signed = sign_certificate({"b": 2, "a": 1}, private_key)
    signed["payload"] = {"a": 1, "b": 2}

    assert verify_certificate(signed, private_key.public_key()) == {"a": 1, "b": 2}


def _tamper_payload(certificate: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = certificate["payload"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("certificate_id",), "cert_9999"),
        (("license_id",), "lic_other"),
        (("issued_at",), "2026-01-02T03:04:06Z"),
        (("buyer", "name"), "Zurich Labs"),
        (("seller", "organization_id"), "org_x"),
        (("dataset", "content_hash"), "sha256:" + "cd" * 32),
        (("dataset", "rows"), 7474),
        (("price", "amount"), 1),
        (("price", "currency"), "USD"),
        (("terms",), ["research"]),
        (("extra",), "added field"),
    ],
)
def test_tampering_with_any_payload_field_fails(
    certificate: dict[str, Any],
    private_key: Ed25519PrivateKey,
    path: tuple[str, ...],
    value: Any,
) -> None:
    _tamper_payload(certificate, path, value)

    with pytest.raises(CertificateError, match="signature does not match"):
        verify_certificate(certificate, private_key.public_key())


def test_removing_a_payload_field_fails(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    del certificate["payload"]["price"]

    with pytest.raises(CertificateError, match="signature does not match"):
        verify_certificate(certificate, private_key.public_key())


def _flip_one_bit(signature: str) -> str:
    raw = bytearray(base64.b64decode(signature))
    raw[10] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(_flip_one_bit, id="one-bit-flipped"),
        pytest.param(lambda s: base64.b64encode(b"\x00" * 64).decode(), id="zeros"),
        pytest.param(lambda s: s[:-8], id="truncated"),
        pytest.param(lambda s: "not base64 at all!", id="not-base64"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: "Zürich", id="non-ascii"),
    ],
)
def test_tampering_with_the_signature_fails(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey, signature: Any
) -> None:
    certificate["signature"] = signature(certificate["signature"])

    with pytest.raises(CertificateError, match="signature does not match"):
        verify_certificate(certificate, private_key.public_key())


@pytest.mark.parametrize("signature", [None, 12345])
def test_a_signature_that_is_not_a_string_fails_with_certificate_error(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey, signature: Any
) -> None:
    certificate["signature"] = signature

    with pytest.raises(CertificateError):
        verify_certificate(certificate, private_key.public_key())


def test_tampering_with_the_key_id_fails(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    certificate["key_id"] = "0" * 64

    with pytest.raises(CertificateError, match="key_id differs"):
        verify_certificate(certificate, private_key.public_key())


@pytest.mark.parametrize("algorithm", ["ed25519", "RS256", "none", None])
def test_tampering_with_the_algorithm_fails(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey, algorithm: Any
) -> None:
    certificate["algorithm"] = algorithm

    with pytest.raises(CertificateError, match="unsupported algorithm"):
        verify_certificate(certificate, private_key.public_key())


def test_a_different_key_fails_even_with_a_forged_key_id(certificate: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate().public_key()

    with pytest.raises(CertificateError, match="key_id differs"):
        verify_certificate(certificate, other)

    # Claiming the other key's id does not help: the signature still does not verify.
    certificate["key_id"] = key_id(other)
    with pytest.raises(CertificateError, match="signature does not match"):
        verify_certificate(certificate, other)


@pytest.mark.parametrize("missing", ["payload", "signature", "key_id", "algorithm"])
def test_a_certificate_missing_a_field_fails_naming_it(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey, missing: str
) -> None:
    del certificate[missing]

    with pytest.raises(CertificateError, match=f"no '{missing}' field"):
        verify_certificate(certificate, private_key.public_key())


@pytest.mark.parametrize("document", [[], "certificate", None, 42])
def test_a_certificate_that_is_not_an_object_fails(
    document: Any, private_key: Ed25519PrivateKey
) -> None:
    with pytest.raises(CertificateError, match="must be a JSON object"):
        verify_certificate(document, private_key.public_key())


def test_a_payload_that_is_not_an_object_fails(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    certificate["payload"] = ["cert_0123"]

    with pytest.raises(CertificateError, match="payload must be a JSON object"):
        verify_certificate(certificate, private_key.public_key())


def test_signing_a_payload_with_a_float_is_refused(private_key: Ed25519PrivateKey) -> None:
    with pytest.raises(CertificateError, match=r"\$\.price\.amount"):
        sign_certificate({"price": {"amount": 12.5}}, private_key)


def test_a_payload_with_a_float_does_not_verify(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    certificate["payload"]["price"]["amount"] = 125000.0

    with pytest.raises(CertificateError, match=r"\$\.price\.amount"):
        verify_certificate(certificate, private_key.public_key())


# The key file -------------------------------------------------------------------------------


def test_signing_key_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "exchange-ed25519.pem"

    key = load_or_create_signing_key(path, create=True)

    assert isinstance(key, Ed25519PrivateKey)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]  # no temporary left


def test_signing_key_is_reused_on_the_second_load(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "exchange-ed25519.pem"
    first = load_or_create_signing_key(path, create=True)
    written = path.read_bytes()

    second = load_or_create_signing_key(path, create=True)
    third = load_or_create_signing_key(path, create=False)

    assert path.read_bytes() == written
    assert key_id(second.public_key()) == key_id(first.public_key())
    assert key_id(third.public_key()) == key_id(first.public_key())
    signed = sign_certificate({"n": 1}, first)
    assert verify_certificate(signed, third.public_key()) == {"n": 1}


def test_missing_signing_key_without_create_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "exchange-ed25519.pem"

    with pytest.raises(CertificateError, match="does not exist"):
        load_or_create_signing_key(path, create=False)

    assert not path.exists()
    assert not path.parent.exists()


def test_a_non_ed25519_signing_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)

    with pytest.raises(CertificateError, match="must be Ed25519") as raised:
        load_or_create_signing_key(path, create=True)

    assert str(path) in str(raised.value)
    assert path.read_bytes() == pem  # refused, not silently replaced by a fresh key


def test_a_file_that_is_not_a_pem_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_text("this is not a key\n")

    with pytest.raises(CertificateError, match="not a usable PEM private key"):
        load_or_create_signing_key(path, create=True)


def test_a_passphrase_protected_signing_key_is_refused_with_certificate_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    with pytest.raises(CertificateError):
        load_or_create_signing_key(path, create=False)


def test_a_non_ed25519_public_key_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(CertificateError, match="not an Ed25519 key"):
        load_public_key(pem)


def test_garbage_public_key_is_refused() -> None:
    with pytest.raises(CertificateError, match="not a PEM public key"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_public_key_pem_round_trips_to_the_same_key_id(private_key: Ed25519PrivateKey) -> None:
    pem = public_key_pem(private_key.public_key())

    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key(pem)) == key_id(private_key.public_key())
    assert key_id(load_public_key(pem.encode())) == key_id(private_key.public_key())
