"""The Celery executor: real workers run one task per shard and the merge, resumably.

Workers share nothing but the broker and the object store: each has its own ``AIDX_HOME``, so
their scratch folders differ as on two machines, and every file a task reads or writes goes
through the store (moto's S3 server, or the local store of an embedded deployment).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from curation.executors import CeleryExecutor, InputFile, LocalExecutor, StageProgress
from infra.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from tests.conftest import Exchange
from tests.fixtures.s3 import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from tests.integration.test_celery_workers import Deployment, make_deployment, prepared

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    yield from prepared(make_deployment(tmp_path, monkeypatch))


@pytest.fixture
def services(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_key_prefix: str,
    s3_store: S3ObjectStore,
    s3_endpoint_url: str,
    s3_bucket: str,
) -> Iterator[Deployment]:
    deployment = make_deployment(
        tmp_path,
        monkeypatch,
        broker_url=redis_url,
        result_backend=redis_url,
        key_prefix=redis_key_prefix,
    )
    deployment.env.update(
        {
            "AIDX_S3_ENDPOINT_URL": s3_endpoint_url,
            "AIDX_S3_BUCKET": s3_bucket,
            "AIDX_S3_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "AIDX_S3_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
            "AIDX_S3_REGION": S3_REGION,
        }
    )
    yield from prepared(deployment)


def elsewhere(deployment: Deployment, name: str) -> Deployment:
    """The same deployment seen from another machine: a home folder of its own."""
    env = {**deployment.env, "AIDX_HOME": str(deployment.workdir / name)}
    return dataclasses.replace(deployment, env=env)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


def c4_inputs(folder: Path) -> list[InputFile]:
    """C4 from alice; from bob, near copies of some of her rows and exact copies of others."""
    lines = (DATA / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line)["text"] for line in lines]
    alice, bob = folder / "c4.jsonl", folder / "more.jsonl"
    alice.write_text("".join(json.dumps({"text": text}) + "\n" for text in rows[:200]))
    copies: list[str] = []
    for index in range(0, 200, 10):
        words = rows[index].split(" ")
        words[:: max(2, len(words) // 8)] = ["changed"] * len(words[:: max(2, len(words) // 8)])
        copies += [" ".join(words), rows[index + 3]]
    copies += rows[200:]
    bob.write_text("".join(json.dumps({"text": text}) + "\n" for text in copies))
    return [
        InputFile(alice, "jsonl", "c4.jsonl", "alice"),
        InputFile(bob, "jsonl", "more.jsonl", "bob"),
    ]


def stored_keys(store: ObjectStore, prefix: str) -> list[str]:
    return [item.key for item in store.list(prefix)]


@pytest.mark.redis
def test_workers_with_separate_scratch_folders_share_a_run_through_s3(
    services: Deployment, s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    inputs = c4_inputs(tmp_path)
    recipe: dict[str, Any] = {
        "steps": [
            "normalize",
            "gopher_quality",
            {"step": "exact_dedup", "columns": ["text"]},
            {"step": "near_dedup", "columns": ["text"]},
            "pii_redact",
        ]
    }
    options: dict[str, Any] = {"recipe": recipe, "rows_per_shard": 25, "rows_per_file": 120}
    local = LocalExecutor(processes=1).run(
        inputs, tmp_path / "local", work_dir=tmp_path / "local-work", **options
    )
    seen: list[StageProgress] = []
    executor = CeleryExecutor(
        app=services.sender, store=s3_store, timeout=180, progress=seen.append
    )

    with ExitStack() as workers:
        for name in ("machine-a", "machine-b"):
            workers.enter_context(elsewhere(services, name).worker("curation"))
        result = executor.run(inputs, tmp_path / "out", work_dir=tmp_path / "work", **options)

    assert result.content_hash == local.content_hash
    assert digests(tmp_path / "out") == digests(tmp_path / "local")
    assert result.report["steps"] == local.report["steps"]
    assert {step["step"]: step["dropped_by_reason"] for step in result.steps}["near_dedup"]
    # Both workers ran tasks, each in its own scratch folder; the planning folder holds only
    # the plan and the inputs, and the work is in the bucket.
    assert len(executor.workers) == 2
    for name in ("machine-a", "machine-b"):
        scratch = tmp_path / name / "curation-scratch"
        assert scratch.is_dir() and not any(scratch.iterdir())
    assert sorted(path.name for path in (tmp_path / "work").iterdir()) == ["inputs", "plan.json"]
    keys = stored_keys(s3_store, executor.prefix or "")
    assert f"{executor.prefix}/stage-00/shard-00000.done.json" in keys
    assert f"{executor.prefix}/result.json" in keys
    shards = [s for s in seen if s.kind == "shards" and s.stage == 0 and s.shard is not None]
    assert sorted(s.shard for s in shards) == list(range(len(shards)))
    assert sum(s.shard_rows_in for s in shards) == local.rows_in == shards[-1].rows_in


def test_celery_run_matches_a_local_run_and_resumes(embedded: Deployment, tmp_path: Path) -> None:
    inputs = [
        InputFile(DATA / "gsm8k_train.jsonl", "jsonl", "gsm8k_train.jsonl", "OpenAI"),
        InputFile(DATA / "gsm8k_test.jsonl", "jsonl", "gsm8k_test.jsonl", "Math Co-op"),
        InputFile(DATA / "gsm8k_test.jsonl", "jsonl", "again.jsonl", "Math Co-op"),
    ]
    options = {"recipe": "default", "rows_per_shard": 1500, "rows_per_file": 4000}
    local = LocalExecutor(processes=1).run(
        inputs, tmp_path / "local", work_dir=tmp_path / "local-work", **options
    )
    store = LocalObjectStore(
        embedded.settings.resolved_storage_root,
        secret_key=embedded.settings.secret_key.get_secret_value(),
    )
    seen: list[StageProgress] = []
    executor = CeleryExecutor(app=embedded.sender, store=store, timeout=120, progress=seen.append)

    with embedded.worker("curation"):
        first = executor.run(inputs, tmp_path / "celery", work_dir=tmp_path / "work", **options)
        store.delete(f"{executor.prefix}/stage-00/shard-00002.done.json")
        store.delete(f"{executor.prefix}/result.json")
        second = executor.run(inputs, tmp_path / "again", work_dir=tmp_path / "work", **options)
        # A redelivered shard task finds its marker in the store and does nothing.
        redelivered = embedded.sender.send_task("curation.shard", args=[executor.prefix, 0, 0]).get(
            timeout=30
        )
        refused = embedded.sender.send_task("curation.merge", args=["../elsewhere"])
        with pytest.raises(Exception, match="prefix starts with curation-work/"):
            refused.get(timeout=30)

    assert first.content_hash == local.content_hash
    assert digests(tmp_path / "celery") == digests(tmp_path / "local")
    assert first.report["steps"] == local.report["steps"]
    shards = 5 + 1 + 1  # 7473 train rows in 1500s, and two test files of 1319
    assert first.tasks_run == shards + 1
    assert (second.tasks_run, second.tasks_skipped) == (1, shards)
    assert digests(tmp_path / "again") == digests(tmp_path / "local")
    assert redelivered["skipped"] is True
    assert [(s.stage, s.done, s.total) for s in seen if s.kind == "merge"] == [
        (2, 0, 1), (2, 1, 1), (2, 0, 1), (2, 1, 1),
    ]  # fmt: skip


def test_cli_curates_on_celery_workers_as_it_does_locally(
    embedded: Deployment, tmp_path: Path
) -> None:
    inputs = [str(DATA / "gsm8k_train.jsonl"), str(DATA / "gsm8k_test.jsonl")]

    def curate(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "infra.cli", "curate", "default", *inputs,
                   "--out", str(out), "--rows-per-shard", "2000", *extra]  # fmt: skip
        return subprocess.run(
            command, env=embedded.env, cwd=embedded.workdir, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip

    local = curate(tmp_path / "local", "--processes", "1")
    with embedded.worker("curation"):
        remote = curate(tmp_path / "celery", "--executor", "celery")
    refused = curate(tmp_path / "nowhere", "--executor", "kubernetes")

    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert digests(tmp_path / "celery") == digests(tmp_path / "local") != {}
    assert "(shards)" in remote.stdout  # the progress bars of the shard stage
    assert refused.returncode != 0 and "kubernetes" in refused.stderr


@pytest.mark.parametrize("exchange", ["embedded"], indirect=True)
def test_api_reports_a_runs_progress_per_stage_and_shard(
    exchange: Exchange, gsm8k_train: Path, tmp_path: Path
) -> None:
    """Three uploads are three shards; the worker records each one's rows as it finishes."""
    lines = gsm8k_train.read_bytes().splitlines(keepends=True)
    parts = []
    for index, (start, stop) in enumerate(((0, 3000), (3000, 5000), (1000, 1500))):
        path = tmp_path / f"part-{index}.jsonl"
        path.write_bytes(b"".join(lines[start:stop]))
        parts.append(path)
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    with exchange.client(operator["api_key"]["api_key"]) as client:
        contributor = client.create_organization("Progress Co", ["contributor"])
        outsider = client.create_organization("Onlooker Lab", ["buyer"])
    with exchange.client(contributor["api_key"]["api_key"]) as seller:
        dataset = seller.create_dataset(name="gsm8k-progress", license="mit", language=["en"])
        for path in parts:
            seller.upload(dataset["id"], path)
        run = seller.start_curation(dataset["id"])
        assert run["status"] == "queued" and run["progress"] is None
        observed = []
        deadline = time.monotonic() + 300
        while run["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            run = seller.request("GET", f"/v1/curation-runs/{run['id']}")
            observed.append(run)
            time.sleep(0.05)
    with exchange.client(outsider["api_key"]["api_key"]) as onlooker:
        response = onlooker.http.get(f"/v1/curation-runs/{run['id']}")

    assert run["status"] == "succeeded", run["error"]
    read, dedup, merge = run["progress"]["stages"]
    assert (read["kind"], read["done"], read["total"]) == ("shards", 3, 3)
    assert [(s["shard"], s["rows_in"]) for s in read["shards"]] == [(0, 3000), (1, 2000), (2, 500)]
    assert read["rows_in"] == read["rows_out"] == 5500
    assert (dedup["kind"], dedup["done"], dedup["rows_in"], dedup["rows_out"]) == (
        "global", 1, 5500, 5000,
    )  # fmt: skip
    assert (merge["done"], merge["rows_out"]) == (1, run["report"]["rows_out"]) == (1, 5000)
    # What a client saw while the run was on the worker only ever grew.
    seen = [
        (stage["stage"], stage["done"])
        for body in observed
        if body["progress"]
        for stage in body["progress"]["stages"]
    ]
    for stage in {stage for stage, _ in seen}:
        dones = [done for number, done in seen if number == stage]
        assert dones == sorted(dones)
    assert response.status_code == 404 and "error" in response.json()
