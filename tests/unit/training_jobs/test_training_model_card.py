"""The model card is signed like a certificate and verifies offline; any change breaks it."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.certificates import CertificateError, sign_certificate
from training_jobs.model_card import render_markdown, sign_model_card, verify_model_card


def payload() -> dict[str, object]:
    return {
        "model_card_id": "mcard_1",
        "job_id": "ftjob_1",
        "fine_tuned_model": "ft:aidx-tiny:aidx:math:ftjob_1",
        "issued_at": "2026-11-30T00:00:00+00:00",
        "base_model": {"name": "aidx-tiny"},
        "method": "full",
        "datasets": [
            {"name": "gsm8k", "version_id": "dv_1", "content_hash": "ab" * 32,
             "license": "mit", "license_id": "lic_1", "contract_sha256": "cd" * 32,
             "filing_number": "AIDX-2026-000001"}
        ],
        "recipe_hash": "ef" * 32,
        "hyperparameters": {"learning_rate": 0.001, "max_steps": 30},
        "metrics": {"final_loss": 4.25, "trained_tokens": 1000},
        "release_gate": {"decision": "release", "checks": [
            {"name": "membership_auc", "value": 0.51, "threshold": 0.6, "passed": True}]},
        "artifacts": [{"path": "model.safetensors", "sha256": "00" * 32, "size": 10}],
    }  # fmt: skip


def test_a_signed_card_verifies_with_floats_as_decimal_strings() -> None:
    key = Ed25519PrivateKey.generate()

    card = sign_model_card(payload(), key)
    verified = verify_model_card(card, key.public_key())

    assert verified["type"] == "aidx.model-card/v1"
    assert verified["hyperparameters"]["learning_rate"] == "0.001"
    assert verified["release_gate"]["checks"][0]["value"] == "0.51"
    markdown = render_markdown(card)
    assert "AIDX-2026-000001" in markdown and card["key_id"] in markdown


def test_a_changed_card_or_another_key_fails() -> None:
    key = Ed25519PrivateKey.generate()
    card = sign_model_card(payload(), key)
    changed = {**card, "payload": {**card["payload"], "recipe_hash": "0" * 64}}

    with pytest.raises(CertificateError, match="signature"):
        verify_model_card(changed, key.public_key())
    with pytest.raises(CertificateError, match="another key"):
        verify_model_card(card, Ed25519PrivateKey.generate().public_key())


def test_a_transaction_certificate_is_not_a_model_card() -> None:
    key = Ed25519PrivateKey.generate()
    certificate = sign_certificate({"type": "aidx.transaction-certificate/v1"}, key)

    with pytest.raises(CertificateError, match="not a model card"):
        verify_model_card(certificate, key.public_key())
