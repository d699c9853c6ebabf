"""The ``openai`` client, unmodified, drives governed fine-tuning jobs on a running exchange."""

from __future__ import annotations

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
    }


def client_for(exchange: Exchange, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{exchange.base_url}/v1", api_key=key, max_retries=0)


def test_create_retrieve_list_and_follow_events_with_the_openai_client(
    exchange: Exchange, licensed: dict[str, Any]
) -> None:
    with client_for(exchange, licensed["buyer_key"]) as client:
        job = client.fine_tuning.jobs.create(
            model="aidx-tiny",
            training_file=licensed["version"],
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}},
            },
            seed=7,
        )
        assert job.object == "fine_tuning.job" and job.status == "queued"
        assert job.training_file == licensed["version"] and job.seed == 7
        deadline = time.monotonic() + 300
        while job.status not in ("succeeded", "quarantined", "failed", "cancelled"):
            assert time.monotonic() < deadline, job.status
            time.sleep(0.5)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model == f"ft:aidx-tiny:aidx:{job.id}"
        assert job.trained_tokens and job.trained_tokens > 0
        listed = client.fine_tuning.jobs.list(limit=10)
        assert job.id in [item.id for item in listed.data]
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        kinds = {event.type for event in events}
        assert kinds == {"metrics", "message"}
        assert events[0].message == "Release gate: release"  # newest first
        assert client.fine_tuning.jobs.checkpoints.list(job.id).data == []


def test_the_openai_client_sees_clear_errors(exchange: Exchange, licensed: dict[str, Any]) -> None:
    with client_for(exchange, licensed["outsider_key"]) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.fine_tuning.jobs.create(model="aidx-tiny", training_file=licensed["version"])
        assert "training entitlement" in str(refused.value)
    with client_for(exchange, licensed["buyer_key"]) as client:
        with pytest.raises(openai.UnprocessableEntityError) as unknown:
            client.fine_tuning.jobs.create(model="gpt-9", training_file=licensed["version"])
        assert "gpt-9" in str(unknown.value)
        with pytest.raises(openai.UnprocessableEntityError) as bounds:
            client.fine_tuning.jobs.create(
                model="aidx-tiny",
                training_file=licensed["version"],
                method={"type": "supervised",
                        "supervised": {"hyperparameters": {"batch_size": 100_000}}},
            )  # fmt: skip
        assert "batch_size" in str(bounds.value)
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob_missing")
    with (
        client_for(exchange, "aidx_000000000000_wrong") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.fine_tuning.jobs.list()
