"""Executors: a sharded, parallel, resumable run writes what one sequential pass writes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.errors import CurationError
from curation.executors import (
    CeleryExecutor,
    InputFile,
    LocalExecutor,
    Stage,
    StageProgress,
    common_schema,
    plan_shards,
    plan_stages,
    prepare_run,
    staged_global,
    staged_merge,
    staged_shard,
)
from curation.pipeline import Pipeline
from curation.readers import read_batches
from curation.steps import AddProvenance
from curation.writers import write_exclusions, write_parquet_shards
from infra.storage import LocalObjectStore

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"
REPO_ROOT = Path(__file__).parents[3]


def c4_rows() -> list[dict[str, Any]]:
    with (FIXTURES / "c4_demo.jsonl").open(encoding="utf-8") as file:
        return [{"text": json.loads(line)["text"]} for line in file]


def edited(text: str, share: float, seed: int) -> str:
    """``text`` with ``share`` of its words replaced by others from it."""
    rng = random.Random(seed)
    words = text.split(" ")
    for index in rng.sample(range(len(words)), int(len(words) * share)):
        words[index] = rng.choice(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def web_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[InputFile]:
    """C4 from alice; from bob, exact and near copies of alice's rows, and new rows with PII."""
    folder = tmp_path_factory.mktemp("inputs")
    rows = c4_rows()
    alice = folder / "c4.jsonl"
    alice.write_text("".join(json.dumps(row) + "\n" for row in rows[:240]), encoding="utf-8")
    copies: list[dict[str, Any]] = []
    for index in range(0, 240, 12):
        copies.append({"text": rows[index]["text"] + "  "})  # exact after normalisation
        copies.append({"text": edited(rows[index + 5]["text"], 0.05, index)})  # near
    for index, row in enumerate(rows[240:]):
        extra = f" Write to reader{index}@example.com or call 13912345678 for details."
        copies.append({"text": row["text"] + extra})
    bob = folder / "more.jsonl"
    bob.write_text("".join(json.dumps(row) + "\n" for row in copies), encoding="utf-8")
    return [
        InputFile(alice, "jsonl", "c4.jsonl", "alice"),
        InputFile(bob, "jsonl", "more.jsonl", "bob"),
    ]


def sequential(inputs: list[InputFile], out: Path, recipe: str, rows_per_file: int) -> Any:
    """One pass of the whole pipeline over every row, as curation ran before it was sharded."""
    pipeline = Pipeline.from_recipe(recipe)
    schema = common_schema(inputs)

    def stamped() -> Any:
        for item in inputs:
            batches = read_batches(item.path, format=item.format, schema=schema, batch_size=64)
            yield from AddProvenance(item.contributor, item.source_name).run(batches)

    shards = write_parquet_shards(pipeline.run(stamped()), out, rows_per_shard=rows_per_file)
    write_exclusions(pipeline.exclusions, out)
    return shards, pipeline.step_reports(details=True)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


def test_web_recipe_is_split_into_shard_and_global_stages() -> None:
    steps = Pipeline.from_recipe("web_en").steps
    names = [step.name for step in steps]
    exact, near, pii = (
        names.index("exact_dedup"),
        names.index("near_dedup"),
        names.index("pii_redact"),
    )

    stages = plan_stages(steps)

    assert stages == [
        Stage("shards", tuple(range(exact)), signatures=(near,)),
        Stage("global", (exact,)),
        Stage("global", (near,)),
        Stage("shards", (pii,)),
    ]


def test_near_dedup_after_a_rewriting_global_step_gets_fresh_signatures() -> None:
    pipeline = Pipeline.from_recipe({"steps": ["normalize", "chat_format", "near_dedup"]})

    assert plan_stages(pipeline.steps) == [
        Stage("shards", (0,)),
        Stage("global", (1,)),
        Stage("shards", (), signatures=(2,)),
        Stage("global", (2,)),
    ]


def test_shards_cut_each_file_into_row_ranges() -> None:
    shards = plan_shards([5, 2], 2)

    assert [(s.input, s.start, s.stop) for s in shards] == [
        (0, 0, 2), (0, 2, 4), (0, 4, 5), (1, 0, 2),
    ]  # fmt: skip


def test_sharded_run_on_processes_writes_the_bytes_of_one_sequential_pass(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    reference_shards, reference_steps = sequential(web_inputs, tmp_path / "ref", "web_en", 100)

    result = LocalExecutor(processes=2).run(
        web_inputs,
        tmp_path / "out",
        recipe="web_en",
        work_dir=tmp_path / "work",
        rows_per_shard=37,
        rows_per_file=100,
        batch_size=16,
    )

    assert result.shards == reference_shards
    assert digests(tmp_path / "out") == digests(tmp_path / "ref")
    assert result.report["steps"] == json.loads(json.dumps(reference_steps))
    by_step = {step["step"]: step for step in result.steps}
    # Copies in bob's file of rows in alice's (other shards) are found; the quality filters
    # drop some originals, and their copies, before dedup sees them.
    assert by_step["exact_dedup"]["dropped_by_reason"]["exact duplicate"] >= 10
    assert by_step["near_dedup"]["dropped_by_reason"]["near duplicate"] >= 10
    assert {
        row["source_file"]
        for row in pq.read_table(tmp_path / "out" / "exclusions.parquet").to_pylist()
        if row["step"].endswith("dedup")
    } == {"more.jsonl"}
    pii = result.report["steps"][-1]["details"]["matches_by_kind"]
    assert pii["EMAIL"] >= 40
    assert result.tasks_skipped == 0
    assert result.tasks_run == 2 * len(plan_shards([240, 100], 37)) + 2


def test_rerun_redoes_only_the_shard_whose_marker_is_gone(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    options: dict[str, Any] = {"recipe": "web_en", "rows_per_shard": 50, "rows_per_file": 120}
    work = tmp_path / "work"
    first = LocalExecutor(processes=1).run(web_inputs, tmp_path / "a", work_dir=work, **options)
    before = digests(tmp_path / "a")
    for suffix in (".done.json", ".parquet"):
        (work / "stage-00" / f"shard-00003{suffix}").unlink()
    # A marker whose file changed since is not trusted either.
    (work / "stage-03" / "shard-00001.parquet").write_bytes(b"torn")

    second = LocalExecutor(processes=1).run(web_inputs, tmp_path / "b", work_dir=work, **options)

    assert second.tasks_run == 2
    assert second.tasks_skipped == first.tasks_run - 2
    assert second.content_hash == first.content_hash
    assert digests(tmp_path / "b") == before


def test_a_work_folder_of_another_run_is_refused(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    prepare_run(web_inputs, tmp_path / "work", recipe="default")

    with pytest.raises(CurationError, match="holds the work of another run"):
        prepare_run(web_inputs, tmp_path / "work", recipe="web_en")


def test_merge_refuses_while_a_shard_is_missing(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    from curation.executors import run_merge, run_shard

    prepare_run(web_inputs, tmp_path / "work", recipe="default", rows_per_shard=100)
    run_shard(tmp_path / "work", 0, 0)

    with pytest.raises(CurationError, match="not every shard is done: stage 0 shard 1"):
        run_merge(tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "out").exists()


RUN_SCRIPT = """
import json
import sys
from pathlib import Path
from curation.executors import InputFile, LocalExecutor
inputs = [InputFile(Path(p), f, name, who) for p, f, name, who in json.loads(sys.argv[3])]
LocalExecutor(processes=2).run(
    inputs, Path(sys.argv[1]), recipe="web_en", work_dir=Path(sys.argv[2]),
    rows_per_shard=12, rows_per_file=100,
)
"""


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_killing_a_pool_worker_mid_run_then_rerunning_gives_the_same_bytes(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    work = tmp_path / "work"
    spec = json.dumps([[str(i.path), i.format, i.source_name, i.contributor] for i in web_inputs])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, str(tmp_path / "out"), str(work), spec],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.poll() is None:
        if len(list(work.glob("stage-00/*.done.json"))) >= 3:
            break
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before a worker could be killed"
    workers = [
        pid for pid in children(run.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]  # fmt: skip
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode != 0
    assert b"a worker process died" in stderr
    done_before = len(list(work.glob("stage-00/*.done.json")))
    assert not (tmp_path / "out" / "data").exists()

    result = LocalExecutor(processes=2).run(
        web_inputs,
        tmp_path / "out",
        recipe="web_en",
        work_dir=work,
        rows_per_shard=12,
        rows_per_file=100,
    )
    clean = LocalExecutor(processes=1).run(
        web_inputs,
        tmp_path / "clean",
        recipe="web_en",
        work_dir=tmp_path / "clean-work",
        rows_per_shard=12,
        rows_per_file=100,
    )

    assert result.tasks_skipped >= done_before >= 3
    assert result.content_hash == clean.content_hash
    assert digests(tmp_path / "out") == digests(tmp_path / "clean")


def test_an_input_error_in_a_worker_names_the_file_and_line(tmp_path: Path) -> None:
    good = [json.dumps({"text": f"document number {i}"}) for i in range(30)]
    path = tmp_path / "broken.jsonl"
    path.write_bytes(("\n".join(good) + "\n").encode() + b"\xff\xfe bad bytes\n")

    with pytest.raises(CurationError, match=r"broken\.jsonl line 31: not UTF-8"):
        LocalExecutor(processes=2).run(
            [InputFile(path, "jsonl", "broken.jsonl", "alice")],
            tmp_path / "out",
            recipe="default",
            work_dir=tmp_path / "work",
            rows_per_shard=10,
        )


def test_row_ranges_read_the_rows_of_a_full_read(tmp_path: Path) -> None:
    rows = [{"text": row["text"][:200], "n": index} for index, row in enumerate(c4_rows()[:50])]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=7)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    with (tmp_path / "rows.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["text", "n"])
        writer.writeheader()
        writer.writerows(rows)
    for format in ("parquet", "jsonl", "json", "csv"):
        path = tmp_path / f"rows.{format}"
        parts = [
            pa.Table.from_batches(
                list(read_batches(path, format=format, batch_size=4, start=start, stop=stop))
            ).to_pylist()
            for start, stop in ((0, 13), (13, 26), (26, 50))
        ]
        assert parts[0] + parts[1] + parts[2] == rows, format


def test_progress_names_each_shard_with_its_rows(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    seen: list[StageProgress] = []

    result = LocalExecutor(processes=2, progress=seen.append).run(
        web_inputs,
        tmp_path / "out",
        recipe="web_en",
        work_dir=tmp_path / "work",
        rows_per_shard=37,
    )

    first = [state for state in seen if state.stage == 0 and state.shard is not None]
    assert sorted(state.shard for state in first) == list(range(len(plan_shards([240, 100], 37))))
    assert sum(state.shard_rows_in for state in first) == result.rows_in == first[-1].rows_in
    assert first[-1].rows_out == sum(state.shard_rows_out for state in first)
    by_step = {step["step"]: step for step in result.steps}
    exact = next(state for state in seen if state.kind == "global" and state.done == 1)
    assert (exact.rows_in, exact.rows_out) == (
        by_step["exact_dedup"]["rows_in"],
        by_step["exact_dedup"]["rows_out"],
    )
    merge = StageProgress(4, "merge", "merge", 1, 1, result.num_rows, result.num_rows)
    assert seen[-1] == merge


def test_a_run_staged_in_an_object_store_runs_in_scratch_folders_of_its_own(
    tmp_path: Path, web_inputs: list[InputFile]
) -> None:
    """What the Celery tasks do, without Celery: every task fetches what it reads from the store
    into a fresh scratch folder (two "machines" here) and puts back what it wrote."""
    options: dict[str, Any] = {"recipe": "web_en", "rows_per_shard": 50, "rows_per_file": 120}
    reference = LocalExecutor(processes=1).run(
        web_inputs, tmp_path / "ref", work_dir=tmp_path / "ref-work", **options
    )
    store = LocalObjectStore(tmp_path / "objects", secret_key="test")
    planner = CeleryExecutor(store=store)
    plan = planner._prepare(web_inputs, tmp_path / "plan", **options)
    prefix = planner.prefix
    assert prefix is not None and prefix.startswith("curation-work/")
    scratch = [tmp_path / "machine-a", tmp_path / "machine-b"]

    outcomes = []
    for stage, spec in enumerate(plan.stages):
        if spec.kind == "shards":
            for shard in range(len(plan.shards)):
                root = scratch[shard % 2]
                outcomes.append(staged_shard(store, prefix, stage, shard, scratch_root=root))
        else:
            outcomes.append(staged_global(store, prefix, stage, scratch_root=scratch[stage % 2]))
    report = staged_merge(store, prefix, scratch_root=scratch[0])
    again = staged_shard(store, prefix, 0, 1, scratch_root=scratch[1])

    assert report["content_hash"] == reference.content_hash
    assert report["steps"] == reference.report["steps"]
    for shard in reference.shards:
        stored = store.stat(f"{prefix}/out/{shard.path}")
        assert stored.sha256 == shard.sha256
    assert not any(outcome["skipped"] for outcome in outcomes)
    assert again["skipped"] is True
    assert all(not any(root.iterdir()) for root in scratch)  # each task cleans up after itself
    # A shard whose file in the store no longer matches its marker is done again.
    store.put_bytes(b"torn", key=f"{prefix}/stage-00/shard-00001.parquet")
    redone = staged_shard(store, prefix, 0, 1, scratch_root=scratch[1])
    assert redone["skipped"] is False
    stored = store.stat(f"{prefix}/stage-00/shard-00001.parquet")
    assert stored.sha256 == redone["files"][".parquet"]


def test_staged_tasks_refuse_a_prefix_without_a_plan(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects", secret_key="test")

    with pytest.raises(CurationError, match="no planned run is staged there"):
        staged_shard(store, "curation-work/missing", 0, 0, scratch_root=tmp_path / "scratch")
