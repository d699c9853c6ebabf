"""ExactDedup: later copies of a row are dropped across batches, the first is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from curation.pipeline import Pipeline
from curation.steps import AddProvenance, ExactDedup, Normalize

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"


def gsm8k_rows(count: int) -> list[dict[str, Any]]:
    with GSM8K_TRAIN.open(encoding="utf-8") as file:
        return [json.loads(next(file)) for _ in range(count)]


def run(pipeline: Pipeline, rows: list[dict[str, Any]], batch_size: int) -> pa.Table:
    batches = pa.Table.from_pylist(rows).to_batches(max_chunksize=batch_size)
    stamped = AddProvenance("alice", "upload.jsonl").run(iter(batches))
    return pa.Table.from_batches(list(pipeline.run(stamped)))


def test_duplicates_across_batches_are_dropped_and_the_first_kept() -> None:
    originals = gsm8k_rows(300)
    # Copies differ only in ways normalisation removes: CRLF line ends and trailing spaces.
    copies = [
        {"question": row["question"] + "  ", "answer": row["answer"].replace("\n", "\r\n")}
        for row in originals[50:80]
    ]
    dedup = ExactDedup()
    pipeline = Pipeline([Normalize(), dedup])

    table = run(pipeline, originals + copies, batch_size=64)

    assert table.column("_source_row").to_pylist() == list(range(300))
    assert table.select(["question", "answer"]).to_pylist() == originals
    kept_hashes = table.column("_content_hash").to_pylist()
    assert len(set(kept_hashes)) == 300
    assert [row["source_row"] for row in pipeline.exclusions] == list(range(300, 330))
    for index, record in enumerate(pipeline.exclusions):
        first_hash = kept_hashes[50 + index]
        assert record == {
            "step": "exact_dedup",
            "reason": f"exact duplicate of {first_hash}",
            "content_hash": first_hash,
            "source_file": "upload.jsonl",
            "source_row": 300 + index,
        }
    assert dedup.stats.rows_in == 330
    assert dedup.stats.rows_out == 300
    assert dedup.stats.dropped_by_reason == {"exact duplicate": 30}


def test_without_normalisation_near_copies_are_distinct() -> None:
    originals = gsm8k_rows(20)
    copies = [{"question": row["question"] + " ", "answer": row["answer"]} for row in originals]

    table = run(Pipeline([ExactDedup()]), originals + copies, batch_size=7)

    assert table.num_rows == 40


def test_dedup_on_given_columns_names_the_first_rows_full_hash() -> None:
    originals = gsm8k_rows(10)
    reworded = [{"question": originals[3]["question"], "answer": "A different answer.\n#### 0"}]

    pipeline = Pipeline([ExactDedup(columns=["question"])])
    table = run(pipeline, originals + reworded, batch_size=4)

    assert table.num_rows == 10
    (record,) = pipeline.exclusions
    first_hash = table.column("_content_hash")[3].as_py()
    assert record["source_row"] == 10
    assert record["reason"] == f"exact duplicate of {first_hash}"
    assert record["content_hash"] != first_hash  # the dropped row's own content differs


def test_steps_sharing_a_seen_store_drop_rows_the_other_kept() -> None:
    rows = gsm8k_rows(40)
    seen: dict[str, str] = {}

    first = run(Pipeline([ExactDedup(seen=seen)]), rows[:30], batch_size=8)
    second = run(Pipeline([ExactDedup(seen=seen)]), rows[20:], batch_size=8)

    assert first.num_rows == 30
    assert second.select(["question", "answer"]).to_pylist() == rows[30:]
