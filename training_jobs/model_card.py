"""The signed model card of a released model: what it was trained on, how, and what the release
gate measured, signed with the exchange's Ed25519 key like a transaction certificate.

The card is a certificate document (`marketplace.certificates`): ``{"payload", "signature",
"key_id", "algorithm"}`` over the canonical JSON of the payload. Signed payloads hold no floats,
so measured values (losses, learning rates, thresholds) are decimal strings. `render_markdown`
writes the same facts as a README for people; the JSON is the one that verifies.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from marketplace.certificates import CertificateError, sign_certificate, verify_certificate

MODEL_CARD_TYPE = "aidx.model-card/v1"


def signable(value: Any) -> Any:
    """`value` with every float written as its shortest decimal string (JSON-able, no floats)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(key): signable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [signable(item) for item in value]
    return value


def sign_model_card(payload: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_certificate(signable({**payload, "type": MODEL_CARD_TYPE}), private_key)


def verify_model_card(document: Any, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The card's payload if it is intact, signed by `public_key`, and a model card."""
    payload = verify_certificate(document, public_key)
    if payload.get("type") != MODEL_CARD_TYPE:
        raise CertificateError(f"not a model card (type {payload.get('type')!r})")
    return payload


def render_markdown(card: dict[str, Any]) -> str:
    """The card as a README: every signed fact, then how to verify the signature."""
    payload = card["payload"]
    lines = [
        f"# {payload['fine_tuned_model']}",
        "",
        f"Fine-tuned by the exchange in training job `{payload['job_id']}` from "
        f"`{payload['base_model']['name']}` ({payload['method']}), released "
        f"{payload['issued_at']}.",
        "",
        "## Training data",
        "",
        "| dataset | version | content hash | license | contract sha256 | filing number |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in payload["datasets"]:
        lines.append(
            f"| {dataset['name']} | `{dataset['version_id']}` | `{dataset['content_hash']}` | "
            f"{dataset['license']} (`{dataset['license_id']}`) | `{dataset['contract_sha256']}` | "
            f"{dataset['filing_number']} |"
        )
    lines += [
        "",
        "## Recipe",
        "",
        f"- recipe hash: `{payload['recipe_hash']}`",
        f"- base model weights sha256: `{payload['base_model'].get('weights_sha256')}`",
        *(f"- {key}: {value}" for key, value in sorted(payload["hyperparameters"].items())),
        "",
        "## Metrics",
        "",
        *(f"- {key}: {value}" for key, value in sorted(payload["metrics"].items())),
        "",
        f"## Release gate: {payload['release_gate']['decision']}",
        "",
        "| check | value | threshold | passed |",
        "|---|---|---|---|",
        *(
            f"| {check['name']} | {check['value']} | {check['threshold']} | {check['passed']} |"
            for check in payload["release_gate"]["checks"]
        ),
        "",
        "## Files",
        "",
        *(f"- `{item['path']}` sha256 `{item['sha256']}`" for item in payload["artifacts"]),
        "",
        "## Signature",
        "",
        f"Signed by the exchange ({card['algorithm']}, key id `{card['key_id']}`) in "
        "`model_card.json`. Check it offline with "
        "`aidx model-card verify model_card.json --public-key exchange.pem`, the key from "
        "`GET /v1/exchange/signing-key`.",
        "",
    ]
    return "\n".join(lines)
