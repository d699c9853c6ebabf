"""The ``openai`` client, unmodified, drives governed fine-tuning jobs on a running exchange."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest

from infra.demo import CARD_FACTS
from tests.conftest import Exchange


@pytest.fixture(scope="module")
def licensed(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A buyer holding a training entitlement on a small curated GSM8K version."""
    rows = tmp_path_factory.mktemp("openai") / "rows.jsonl"
    rows.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:120]))
    with exchange.client() as anonymous:
        operator_key = anonymous.bootstrap(exchange.bootstrap_token, "Operator")["api_key"][
            "api_key"
        ]
    with exchange.client(operator_key) as operator:
        seller = operator.create_organization("Seller", ["contributor"])
        buyer = operator.create_organization("Lab", ["buyer", "researcher"])
        outsider = operator.create_organization("Other", ["buyer"])
    with exchange.client(seller["api_key"]["api_key"]) as client:
        dataset = client.create_dataset(name="gsm8k-small", license="mit")
        client.upload(dataset["id"], rows)
        run = client.start_curation(dataset["id"])
        run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        client.update_card(run["version_id"], CARD_FACTS)
        listing = client.submit_listing(
            version_id=run["version_id"], title="small", price_amount=0, allowed_uses=["training"]
        )
    with exchange.client(operator_key) as operator:
        operator.review_listing(listing["id"], "approve")
    with exchange.client(buyer["api_key"]["api_key"]) as client:
        client.license(listing["id"], idempotency_key=uuid.uuid4().hex)
    return {
        "version": run["version_id"],
        "buyer_key": buyer["api_key"]["api_key"],
        "outsider_key": outsider["api_key"]["api_key"],
        "operator_key": operator_key,
    }


def client_for(exchange: Exchange, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{exchange.base_url}/v1", api_key=key, max_retries=0)


FINAL = ("succeeded", "quarantined", "failed", "cancelled")


def wait_until(client: openai.OpenAI, job_id: str, statuses: tuple[str, ...]) -> Any:
    deadline = time.monotonic() + 900
    job = client.fine_tuning.jobs.retrieve(job_id)
    while job.status not in statuses:
        assert time.monotonic() < deadline, job.status
        time.sleep(0.3)
        job = client.fine_tuning.jobs.retrieve(job_id)
    return job


def test_create_retrieve_list_and_follow_events_with_the_openai_client(
    exchange: Exchange, licensed: dict[str, Any], tmp_path: Path
) -> None:
    with client_for(exchange, licensed["buyer_key"]) as client:
        job = client.fine_tuning.jobs.create(
            model="aidx-tiny",
            training_file=licensed["version"],
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 16}},
            },
            seed=7,
            suffix="math-v1",
            metadata={"team": "reasoning", "ticket": "FT-12"},
        )
        assert job.object == "fine_tuning.job" and job.status == "validating_files"
        assert job.training_file == licensed["version"] and job.seed == 7
        assert job.metadata == {"team": "reasoning", "ticket": "FT-12"}
        job = wait_until(client, job.id, FINAL)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model == f"ft:aidx-tiny:aidx:math-v1:{job.id}"
        assert job.trained_tokens and job.trained_tokens > 0
        report = job.model_extra["validation_report"]
        assert report["passed"] and report["format"] == "question_answer"
        assert report["rows"] == report["valid_rows"] > 0
        assert report["tokens"]["trainable"] > 0
        listed = client.fine_tuning.jobs.list(limit=10)
        assert job.id in [item.id for item in listed.data]
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        kinds = {event.type for event in events}
        assert kinds == {"metrics", "message"}
        assert events[0].message == "Release gate: release"  # newest first
        # Two epochs: a checkpoint at the end of the first, in the object store.
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert [c.object for c in checkpoints] == ["fine_tuning.job.checkpoint"]
        assert checkpoints[0].step_number == -(-report["rows"] // 16)  # one epoch of steps
        assert checkpoints[0].fine_tuned_model_checkpoint.endswith(
            f":ckpt-step-{checkpoints[0].step_number}"
        )
        assert checkpoints[0].metrics.train_loss is not None

    # The signed model card: through the API and offline with the exchange's public key.
    with exchange.client(licensed["buyer_key"]) as buyer:
        card = buyer.request("GET", f"/v1/training-jobs/{job.id}/model-card")
        payload = card["payload"]
        assert payload["fine_tuned_model"] == job.fine_tuned_model
        assert payload["datasets"][0]["version_id"] == licensed["version"]
        assert payload["datasets"][0]["filing_number"].startswith("AIDX-")
        assert payload["hyperparameters"]["seed"] == 7
        assert payload["release_gate"]["decision"] == "release"
        verified = buyer.request("POST", "/v1/model-cards/verify", json=card)
        assert verified["valid"] is True, verified
        forged = {**card, "payload": {**payload, "recipe_hash": "0" * 64}}
        assert buyer.request("POST", "/v1/model-cards/verify", json=forged)["valid"] is False
        public_pem = buyer.request("GET", "/v1/exchange/signing-key")
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    pem = public_pem["public_key_pem"] if isinstance(public_pem, dict) else public_pem
    (tmp_path / "exchange.pem").write_text(pem)
    ok = aidx("model-card", "verify", str(tmp_path / "model_card.json"),
              "--public-key", str(tmp_path / "exchange.pem"))  # fmt: skip
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    bad = aidx("model-card", "verify", str(tmp_path / "forged.json"),
               "--public-key", str(tmp_path / "exchange.pem"))  # fmt: skip
    assert bad.returncode == 1 and "INVALID" in bad.stderr


def aidx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_pause_resume_and_cancel_with_the_openai_client(
    exchange: Exchange, licensed: dict[str, Any]
) -> None:
    with client_for(exchange, licensed["buyer_key"]) as client:
        job = client.fine_tuning.jobs.create(
            model="aidx-tiny",
            training_file=licensed["version"],
            method={"type": "supervised",
                    "supervised": {"hyperparameters": {"n_epochs": 40, "batch_size": 4}}},
        )  # fmt: skip
        deadline = time.monotonic() + 600
        while not client.fine_tuning.jobs.checkpoints.list(job.id).data:  # an epoch is done
            assert time.monotonic() < deadline
            assert client.fine_tuning.jobs.retrieve(job.id).status not in FINAL
            time.sleep(0.3)
        client.fine_tuning.jobs.pause(job.id)
        paused = wait_until(client, job.id, ("paused", *FINAL))
        assert paused.status == "paused"
        with pytest.raises(openai.ConflictError) as again:
            client.fine_tuning.jobs.pause(job.id)
        assert again.value.code == "invalid_state"
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        paused_at = checkpoints[0].step_number
        events = client.fine_tuning.jobs.list_events(job.id, limit=200).data
        assert any(event.message == f"Training paused after step {paused_at}" for event in events)

        resumed = client.fine_tuning.jobs.resume(job.id)
        assert resumed.status == "queued"
        wait_until(client, job.id, ("running", *FINAL))
        events = client.fine_tuning.jobs.list_events(job.id, limit=500).data
        deadline = time.monotonic() + 120
        while not any(e.message == f"Training resumed from step {paused_at}" for e in events):
            assert time.monotonic() < deadline
            time.sleep(0.3)
            events = client.fine_tuning.jobs.list_events(job.id, limit=500).data
        messages = [event.message for event in events]  # newest first
        assert messages.index(f"Training resumed from step {paused_at}") < messages.index(
            f"Training paused after step {paused_at}"
        )
        assert not any(
            message == "Training started"
            for message in messages[: messages.index(f"Training paused after step {paused_at}")]
        )  # continued, not restarted

        cancelled = client.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status in ("cancelling", "cancelled")
        assert wait_until(client, job.id, FINAL).status == "cancelled"
        with pytest.raises(openai.ConflictError) as twice:
            client.fine_tuning.jobs.cancel(job.id)
        assert twice.value.code == "already_cancelled"
        with pytest.raises(openai.ConflictError):
            client.fine_tuning.jobs.resume(job.id)


def test_the_openai_client_sees_clear_errors(exchange: Exchange, licensed: dict[str, Any]) -> None:
    with client_for(exchange, licensed["outsider_key"]) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.fine_tuning.jobs.create(model="aidx-tiny", training_file=licensed["version"])
        assert "training entitlement" in str(refused.value)
        assert (refused.value.code, refused.value.param) == (
            "no_training_entitlement", "training_file",
        )  # fmt: skip
    with client_for(exchange, licensed["buyer_key"]) as client:
        before = len(client.fine_tuning.jobs.list(limit=100).data)
        with pytest.raises(openai.UnprocessableEntityError) as unknown:
            client.fine_tuning.jobs.create(model="gpt-9", training_file=licensed["version"])
        assert "gpt-9" in str(unknown.value)
        assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
        with pytest.raises(openai.UnprocessableEntityError) as bounds:
            client.fine_tuning.jobs.create(
                model="aidx-tiny",
                training_file=licensed["version"],
                method={"type": "supervised",
                        "supervised": {"hyperparameters": {"batch_size": 100_000}}},
            )  # fmt: skip
        assert "batch_size" in str(bounds.value)
        assert bounds.value.param == "method.supervised.hyperparameters.batch_size"
        assert bounds.value.code == "invalid_hyperparameter"
        with pytest.raises(openai.UnprocessableEntityError) as missing:
            client.fine_tuning.jobs.create(model="aidx-tiny", training_file="dv_missing")
        assert missing.value.param == "training_file"
        for suffix in ("Has Spaces", "x" * 65):
            with pytest.raises(openai.UnprocessableEntityError) as bad_suffix:
                client.fine_tuning.jobs.create(
                    model="aidx-tiny", training_file=licensed["version"], suffix=suffix
                )
            assert (bad_suffix.value.code, bad_suffix.value.param) == ("invalid_suffix", "suffix")
        for metadata, param in (
            ({f"k{index}": "v" for index in range(17)}, "metadata"),
            ({"k" * 65: "v"}, "metadata"),
            ({"note": "v" * 513}, "metadata.note"),
        ):
            with pytest.raises(openai.UnprocessableEntityError) as bad_metadata:
                client.fine_tuning.jobs.create(
                    model="aidx-tiny", training_file=licensed["version"], metadata=metadata
                )
            assert (bad_metadata.value.code, bad_metadata.value.param) == (
                "invalid_metadata", param,
            )  # fmt: skip
        # No refused request left a job behind.
        assert len(client.fine_tuning.jobs.list(limit=100).data) == before
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob_missing")
    with (
        client_for(exchange, "aidx_000000000000_wrong") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.fine_tuning.jobs.list()


def test_territory_and_training_quota_of_the_license_are_enforced(
    exchange: Exchange, licensed: dict[str, Any], gsm8k_train: Path, tmp_path: Path
) -> None:
    """A license for use in China only, with a token quota: jobs outside it, or over it, fail."""
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[200:320]))
    operator_key = licensed["operator_key"]
    with exchange.client(operator_key) as operator:
        seller = operator.create_organization("Territorial Seller", ["contributor"])
        buyer = operator.create_organization("Territorial Lab", ["buyer"])
    with exchange.client(seller["api_key"]["api_key"]) as client:
        dataset = client.create_dataset(name="gsm8k-cn-only", license="mit")
        client.upload(dataset["id"], rows)
        run = client.start_curation(dataset["id"])
        run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        version = client.version(run["version_id"])
        client.update_card(version["id"], CARD_FACTS)
        # One 1-epoch job at batch size 8 reserves steps x 8 x 256 tokens; the quota holds one
        # such job and a half.
        one_job = -(-version["num_rows"] // 8) * 8 * 256
        quota = one_job * 3 // 2
        listing = client.submit_listing(
            version_id=version["id"], title="cn only", price_amount=0, allowed_uses=["training"],
            contract_parameters={"territory": ["CN"], "training_token_quota": quota},
        )  # fmt: skip
    with exchange.client(operator_key) as operator:
        operator.review_listing(listing["id"], "approve")
    with exchange.client(buyer["api_key"]["api_key"]) as client:
        license_ = client.license(listing["id"], idempotency_key=uuid.uuid4().hex)
        contract = client.request("GET", f"/v1/licenses/{license_['id']}/contract")
    assert f"at most {quota} tokens" in contract["text_en"]
    small = {"type": "supervised",
             "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}}  # fmt: skip

    def refused(client: openai.OpenAI, **request: Any) -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as error:
            client.fine_tuning.jobs.create(
                model="aidx-tiny", training_file=version["id"], method=small, **request
            )
        assert 400 <= error.value.status_code < 500
        return error.value

    with client_for(exchange, buyer["api_key"]["api_key"]) as client:
        nowhere = refused(client)
        abroad = refused(client, extra_body={"country": "US"})
        assert (nowhere.code, nowhere.param) == ("country_required", "country")
        assert (abroad.code, abroad.param) == ("outside_territory", "country")
        assert "US is outside" in str(abroad)
        job = client.fine_tuning.jobs.create(
            model="aidx-tiny", training_file=version["id"], method=small,
            extra_body={"country": "CN"},
        )  # fmt: skip
        # The first job reserves its most tokens: a second one no longer fits the quota.
        over = refused(client, extra_body={"country": "CN"})
        assert over.code == "quota_exceeded" and f"of {quota} left" in str(over)
        client.fine_tuning.jobs.cancel(job.id)
        assert len(client.fine_tuning.jobs.list(limit=100).data) == 1
        wait_until(client, job.id, FINAL)
