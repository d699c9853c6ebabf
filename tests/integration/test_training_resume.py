"""A training job survives the loss of its worker: SIGKILL mid-run, resume on another worker.

The API runs alone (``aidx up --no-worker``); a curation worker prepares the data; training
workers are real ``celery worker`` processes, each in its own process group, started and
killed by the test. The job's lease is short here (``AIDX_TRAINING_LEASE_SECONDS``), so the
second worker's reaper finds the first one's lease expired within seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.config import Settings
from infra.db import session_scope, utcnow
from infra.demo import CARD_FACTS
from marketplace.client import AidxClient
from tests.fixtures.services import free_port
from training_jobs.models import TrainingJob
from training_jobs.service import reap_lost_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
PER_MILLION = 1_000_000  # one minor unit per trained token
PARAMS = {"max_steps": 40, "batch_size": 8, "max_seq_len": 256, "checkpoint_every": 5, "seed": 1}
FINAL = ("succeeded", "quarantined", "failed", "cancelled")


@dataclass
class Deployment:
    base_url: str
    home: Path
    env: dict[str, str]

    def client(self, key: str | None = None) -> AidxClient:
        return AidxClient(self.base_url, key)

    @contextmanager
    def worker(self, queues: str) -> Iterator[subprocess.Popen[bytes]]:
        """``aidx worker`` as a process-group leader, so a SIGKILL takes its pool with it."""
        log = self.home / f"worker-{queues}-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "worker", "--queues", queues,
                 "--concurrency", "1"],
                env=self.env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("resume")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIDX_")}
    env |= {
        "AIDX_HOME": str(home),
        "AIDX_TRAINING_LEASE_SECONDS": str(LEASE_SECONDS),
        # Smaller samples keep the release gate's part of this test short.
        "AIDX_RELEASE_POLICY": json.dumps(
            {"canary_candidates": 63, "train_samples": 16, "held_out_samples": 16,
             "suffix_tokens": 8, "pii_new_tokens": 8}
        ),
    }  # fmt: skip
    port = free_port()
    with (home / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up", "--port", str(port), "--no-worker"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert api.poll() is None, (home / "api.log").read_text()
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        yield Deployment(base_url, home, env)
    finally:
        api.send_signal(signal.SIGINT)
        try:
            api.wait(timeout=60)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


@pytest.fixture(scope="module")
def licensed(deployment: Deployment, gsm8k_train: Path) -> dict[str, Any]:
    """A buyer with funds and a metered training license on a curated GSM8K sample."""
    rows = deployment.home / "rows.jsonl"
    rows.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:160]))
    token = (deployment.home / "bootstrap-token").read_text().strip()
    with deployment.client() as anonymous:
        operator_key = anonymous.bootstrap(token, "Operator")["api_key"]["api_key"]
    with deployment.client(operator_key) as operator:
        seller = operator.create_organization("Seller", ["contributor"])
        buyer = operator.create_organization("Lab", ["buyer", "researcher"])
        operator.request(
            "POST", "/v1/ledger/top-ups",
            json={"organization_id": buyer["id"], "amount": 10**9, "currency": "CNY"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
    with deployment.worker("curation"), deployment.client(seller["api_key"]["api_key"]) as client:
        dataset = client.create_dataset(name="gsm8k-resume", license="mit")
        client.upload(dataset["id"], rows)
        run = client.start_curation(dataset["id"])
        run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        assert run["status"] == "succeeded", run
        client.update_card(run["version_id"], CARD_FACTS)
        listing = client.submit_listing(
            version_id=run["version_id"], title="resume", price_amount=0,
            allowed_uses=["training"], training_price_per_million_tokens=PER_MILLION,
        )  # fmt: skip
    with deployment.client(operator_key) as operator:
        operator.review_listing(listing["id"], "approve")
    with deployment.client(buyer["api_key"]["api_key"]) as client:
        client.license(listing["id"], idempotency_key=uuid.uuid4().hex)
    return {"version": run["version_id"], "buyer_key": buyer["api_key"]["api_key"]}


def wait_for_event(client: AidxClient, job_id: str, kind: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["type"] == kind for e in client.training_events(job_id)):
        job = client.request("GET", f"/v1/training-jobs/{job_id}")
        assert job["status"] not in FINAL, job
        assert time.monotonic() < deadline, f"no {kind} event within {timeout} s"
        time.sleep(0.2)


def test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker(
    deployment: Deployment, licensed: dict[str, Any]
) -> None:
    with deployment.client(licensed["buyer_key"]) as client:
        job = client.submit_training_job(licensed["version"], PARAMS)
        with deployment.worker("training") as first:
            wait_for_event(client, job["id"], "checkpoint")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            killed_at = client.training_events(job["id"])[-1]["seq"]
        running = client.request("GET", f"/v1/training-jobs/{job['id']}")
        assert running["status"] == "running"  # nobody has noticed yet
        checkpoints = client.request("GET", f"/v1/training-jobs/{job['id']}/checkpoints")["data"]
        last_checkpoint = max(checkpoint["step"] for checkpoint in checkpoints)

        with deployment.worker("training"):
            done = client.wait_for(f"/v1/training-jobs/{job['id']}", done=FINAL, timeout=900)
            assert done["status"] == "succeeded", done["error"]
            # The same job, never interrupted, on the same worker: the reference.
            reference = client.submit_training_job(licensed["version"], PARAMS)
            reference = client.wait_for(
                f"/v1/training-jobs/{reference['id']}", done=FINAL, timeout=900
            )
            assert reference["status"] == "succeeded", reference["error"]

        events = client.training_events(job["id"])

    after_kill = [event for event in events if event["seq"] > killed_at]
    requeued = next(e for e in after_kill if e["type"] == "requeued")
    resumed = next(e for e in after_kill if e["type"] == "resumed")
    assert requeued["data"]["reason"] == "worker_lost"
    assert requeued["data"]["resume_step"] == resumed["data"]["step"] == last_checkpoint
    assert last_checkpoint % PARAMS["checkpoint_every"] == 0 and last_checkpoint > 0
    assert not any(e["type"] == "started" for e in after_kill)  # continued, not restarted
    progress = [e["data"]["step"] for e in after_kill if e["type"] == "progress"]
    assert progress and min(progress) > last_checkpoint and max(progress) == PARAMS["max_steps"]
    assert done["attempts"] == 2
    assert done["result"]["resumed_from_step"] == last_checkpoint
    # Counted once: the steps the lost worker redid are not trained, metered or charged twice.
    assert done["trained_tokens"] == reference["trained_tokens"] > 0
    assert done["result"]["final_loss"] == pytest.approx(reference["result"]["final_loss"])
    assert done["charged_amount"] == reference["charged_amount"] == done["trained_tokens"]


# The reaper's other branches. No training worker runs here (the test above has stopped its
# own), so a submitted job waits; the test leaves it as a lost worker would (its status, an
# expired lease, attempts and time used), then runs the reaper as any worker does.


def _as_lost(deployment: Deployment, job_id: str, **state: Any) -> Settings:
    settings = Settings(home=deployment.home, training_lease_seconds=LEASE_SECONDS)
    with session_scope(settings) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        job.lease_owner = "lost-worker"
        job.lease_expires_at = utcnow() - dt.timedelta(seconds=1)
        for name, value in {"status": "running", "attempts": 1, **state}.items():
            setattr(job, name, value)
        session.commit()
    return settings


def _balance(client: AidxClient) -> int:
    organization_id = client.request("GET", "/v1/me")["organization"]["id"]
    statement = client.request("GET", f"/v1/organizations/{organization_id}/statement")
    return sum(account["balance"] for account in statement["accounts"])


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ({"attempts": Settings().training_max_attempts}, "failed", "worker_lost"),
        ({"run_seconds": Settings().training_time_limit_seconds}, "failed", "time_limit_exceeded"),
        ({"status": "pausing"}, "paused", None),
        ({"status": "cancelling"}, "cancelled", None),
    ],
    ids=["out-of-attempts", "out-of-time", "pausing", "cancelling"],
)
def test_the_reaper_ends_a_lost_job_it_must_not_requeue(
    deployment: Deployment,
    licensed: dict[str, Any],
    state: dict[str, Any],
    status: str,
    code: str | None,
) -> None:
    with deployment.client(licensed["buyer_key"]) as client:
        before = _balance(client)
        job = client.submit_training_job(licensed["version"], PARAMS)
        assert _balance(client) < before  # the metered hold
        settings = _as_lost(deployment, job["id"], **state)
        enqueued: list[str] = []
        assert reap_lost_jobs(settings, enqueue=lambda queued: enqueued.append(queued.id)) == []
        assert enqueued == []
        ended = client.request("GET", f"/v1/training-jobs/{job['id']}")
        events = [event["type"] for event in client.training_events(job["id"])]
        assert ended["status"] == status, ended
        assert ended["error_code"] == code
        if status == "paused":
            assert events[-1] == "paused" and _balance(client) < before  # still held
            client.request("POST", f"/v1/training-jobs/{job['id']}/cancel")
        else:
            assert ended["charged_amount"] == 0
        assert _balance(client) == before  # the hold is back in full
        # A second reaper (another worker) finds nothing left to do.
        assert reap_lost_jobs(settings, enqueue=lambda queued: enqueued.append(queued.id)) == []


def test_the_reaper_requeues_a_lost_job_with_attempts_and_time_left(
    deployment: Deployment, licensed: dict[str, Any]
) -> None:
    with deployment.client(licensed["buyer_key"]) as client:
        job = client.submit_training_job(licensed["version"], PARAMS)
        settings = _as_lost(deployment, job["id"], attempts=1)
        enqueued: list[str] = []
        reaped = reap_lost_jobs(settings, enqueue=lambda queued: enqueued.append(queued.id))
        assert reaped == enqueued == [job["id"]]
        requeued = client.request("GET", f"/v1/training-jobs/{job['id']}")
        assert requeued["status"] in ("queued", "validating_files")
        event = client.training_events(job["id"])[-1]
        assert event["type"] == "requeued" and event["data"]["reason"] == "worker_lost"
        client.request("POST", f"/v1/training-jobs/{job['id']}/cancel")
