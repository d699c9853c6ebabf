"""Transaction certificates: canonical JSON signed with the exchange's Ed25519 key.

A certificate is ``{"payload": {...}, "signature": <base64>, "key_id": <hex>, "algorithm":
"Ed25519"}``. The signature covers the canonical form of the payload: UTF-8 JSON with sorted keys,
no insignificant whitespace, and no floats (amounts are integers in minor units), which is the
RFC 8785 form for such documents. Anyone holding the exchange's public key can verify a
certificate offline; ``key_id`` is the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
CERTIFICATE_TYPE = "aidx.transaction-certificate/v1"


class CertificateError(Exception):
    """A certificate or key that cannot be read or does not verify."""


def canonical_json(value: Any) -> bytes:
    """The signed form of a payload; floats are refused so every verifier gets the same bytes."""
    _refuse_floats(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _refuse_floats(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise CertificateError(f"{path}: floats are not allowed in a signed payload")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CertificateError(f"{path}: object keys must be strings")
            _refuse_floats(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_floats(item, f"{path}[{index}]")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_or_create_signing_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """Read the exchange's private key; create it (mode 0600) when allowed and absent."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as error:  # TypeError: the key needs a passphrase
            raise CertificateError(f"{path}: not a usable PEM private key ({error})") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise CertificateError(f"{path}: the signing key must be Ed25519")
        return key
    if not create:
        raise CertificateError(f"signing key {path} does not exist")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(temporary, path)  # first writer wins when two processes race
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return load_or_create_signing_key(path, create=False)


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise CertificateError(f"not a PEM public key ({error})") from error
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateError("the public key is not an Ed25519 key")
    return key


def sign_certificate(payload: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    signature = private_key.sign(canonical_json(payload))
    return {
        "payload": payload,
        "signature": base64.b64encode(signature).decode(),
        "key_id": key_id(private_key.public_key()),
        "algorithm": ALGORITHM,
    }


def verify_certificate(certificate: Any, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Return the payload if the certificate is intact and signed by ``public_key``."""
    if not isinstance(certificate, dict):
        raise CertificateError("a certificate must be a JSON object")
    for field in ("payload", "signature", "key_id", "algorithm"):
        if field not in certificate:
            raise CertificateError(f"certificate has no {field!r} field")
    if certificate["algorithm"] != ALGORITHM:
        raise CertificateError(f"unsupported algorithm {certificate['algorithm']!r}")
    if certificate["key_id"] != key_id(public_key):
        raise CertificateError("certificate was signed by another key (key_id differs)")
    payload = certificate["payload"]
    if not isinstance(payload, dict):
        raise CertificateError("certificate payload must be a JSON object")
    if not isinstance(certificate["signature"], str):
        raise CertificateError("certificate signature must be a base64 string")
    try:
        signature = base64.b64decode(certificate["signature"], validate=True)
        public_key.verify(signature, canonical_json(payload))
    except (InvalidSignature, ValueError) as error:
        raise CertificateError("signature does not match the payload") from error
    return payload
