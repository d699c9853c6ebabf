"""The Celery executor: a real worker runs one task per shard and the merge, resumably."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from curation.executors import CeleryExecutor, InputFile, LocalExecutor, StageProgress
from tests.integration.test_celery_workers import Deployment, make_deployment, prepared

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    yield from prepared(make_deployment(tmp_path, monkeypatch))


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


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
    seen: list[StageProgress] = []
    executor = CeleryExecutor(app=embedded.sender, timeout=120, progress=seen.append)

    with embedded.worker("curation"):
        first = executor.run(inputs, tmp_path / "celery", work_dir=tmp_path / "work", **options)
        (tmp_path / "work" / "stage-00" / "shard-00002.done.json").unlink()
        second = executor.run(inputs, tmp_path / "again", work_dir=tmp_path / "work", **options)
        # A redelivered shard task finds its marker and does nothing.
        redelivered = embedded.sender.send_task(
            "curation.shard", args=[str(tmp_path / "work"), 0, 0]
        ).get(timeout=30)

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
