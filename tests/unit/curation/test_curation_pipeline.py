"""Pipeline, recipes and provenance: steps chain, hashes stay current, drops are recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curation.errors import CurationError
from curation.pipeline import STEPS, Filter, Pipeline, load_recipe
from curation.steps import AddProvenance, ExactDedup, Normalize

GSM8K_TEST = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_test.jsonl"


def gsm8k_batches(count: int, batch_size: int) -> list[pa.RecordBatch]:
    with GSM8K_TEST.open(encoding="utf-8") as file:
        rows = [json.loads(next(file)) for _ in range(count)]
    batches: list[pa.RecordBatch] = pa.Table.from_pylist(rows).to_batches(max_chunksize=batch_size)
    return batches


def sha256_of_json(row: dict[str, Any]) -> str:
    text = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LongAnswerFilter(Filter):
    """Drops rows whose answer is longer than a limit; a filter written as the docs describe."""

    name = "long_answer"

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        keep = pc.less_equal(pc.utf8_length(batch.column("answer")), self.limit)
        reasons = [
            None if kept else f"answer over {self.limit} characters" for kept in keep.to_pylist()
        ]
        return keep, reasons


def stamped(batches: list[pa.RecordBatch], source: str = "test.jsonl") -> Iterator[pa.RecordBatch]:
    return AddProvenance("alice", source).run(iter(batches))


def test_provenance_numbers_rows_across_batches() -> None:
    batches = gsm8k_batches(25, batch_size=10)
    step = AddProvenance("alice", "gsm8k_test.jsonl")

    table = pa.Table.from_batches(list(step.run(iter(batches))))

    assert table.column_names == [
        "question",
        "answer",
        "_contributor",
        "_source_file",
        "_source_row",
    ]
    assert table.column("_source_row").to_pylist() == list(range(25))
    assert table.schema.field("_source_row").type == pa.int64()
    assert set(table.column("_contributor").to_pylist()) == {"alice"}
    assert set(table.column("_source_file").to_pylist()) == {"gsm8k_test.jsonl"}
    assert (step.stats.rows_in, step.stats.rows_out) == (25, 25)


def test_provenance_refuses_rows_already_using_the_reserved_prefix() -> None:
    batch = pa.RecordBatch.from_pylist([{"question": "q", "_source_row": 7}])

    with pytest.raises(CurationError, match="_source_row"):
        list(AddProvenance("alice", "a.jsonl").run(iter([batch])))


def test_content_hash_describes_the_normalized_data_columns() -> None:
    batch = pa.RecordBatch.from_pylist([{"question": "  What is 1+1?\r\n", "answer": "2 "}])

    table = pa.Table.from_batches(list(Pipeline([Normalize()]).run(stamped([batch]))))

    row = table.to_pylist()[0]
    assert row["question"] == "What is 1+1?"
    assert row["_content_hash"] == sha256_of_json({"question": "What is 1+1?", "answer": "2"})


def test_empty_pipeline_still_adds_content_hashes() -> None:
    batches = gsm8k_batches(5, batch_size=5)
    table = pa.Table.from_batches(list(Pipeline([]).run(stamped(batches))))

    expected = [
        sha256_of_json({"question": r["question"], "answer": r["answer"]})
        for r in batches[0].to_pylist()
    ]
    assert table.column("_content_hash").to_pylist() == expected


def test_filter_base_applies_the_mask_counts_and_records_exclusions() -> None:
    batches = gsm8k_batches(60, batch_size=16)
    rows = pa.Table.from_batches(batches).to_pylist()
    long_rows = [index for index, row in enumerate(rows) if len(row["answer"]) > 200]
    assert 0 < len(long_rows) < 60
    step = LongAnswerFilter(limit=200)
    pipeline = Pipeline([step])

    kept = pa.Table.from_batches(list(pipeline.run(stamped(batches))))

    assert kept.num_rows == 60 - len(long_rows)
    assert all(len(answer) <= 200 for answer in kept.column("answer").to_pylist())
    assert step.stats.rows_in == 60
    assert step.stats.rows_out == kept.num_rows
    assert step.stats.dropped_by_reason == {"answer over 200 characters": len(long_rows)}
    assert [row["source_row"] for row in pipeline.exclusions] == long_rows
    assert pipeline.exclusions[0] == {
        "step": "long_answer",
        "reason": "answer over 200 characters",
        "content_hash": sha256_of_json(rows[long_rows[0]]),
        "source_file": "test.jsonl",
        "source_row": long_rows[0],
    }


def test_recipe_steps_are_built_in_order_with_their_parameters() -> None:
    pipeline = Pipeline.from_recipe(
        {"name": "qa", "steps": ["normalize", {"step": "exact_dedup", "columns": ["question"]}]}
    )

    assert pipeline.name == "qa"
    assert [type(step) for step in pipeline.steps] == [Normalize, ExactDedup]
    assert pipeline.steps[1].params == {"columns": ["question"]}


def test_default_recipe_is_shipped_with_the_package() -> None:
    assert load_recipe("default") == {"name": "default", "steps": ["normalize", "exact_dedup"]}
    pipeline = Pipeline.from_recipe("default")
    assert [step.name for step in pipeline.steps] == ["normalize", "exact_dedup"]


def test_recipe_can_be_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "questions.yaml"
    path.write_text("name: questions\nsteps:\n  - step: normalize\n    columns: [question]\n")

    pipeline = Pipeline.from_recipe(path)

    assert pipeline.name == "questions"
    assert pipeline.steps[0].params == {"columns": ["question"], "to_simplified": False}


def test_unknown_step_is_named_with_the_known_ones() -> None:
    with pytest.raises(CurationError, match="unknown step 'dedupe'; known steps: ") as error:
        Pipeline.from_recipe({"name": "typo", "steps": ["normalize", "dedupe"]})
    assert all(name in str(error.value) for name in STEPS)


def test_unknown_step_parameter_is_refused() -> None:
    with pytest.raises(CurationError, match=r"step normalize: .*'colums'"):
        Pipeline.from_recipe({"steps": [{"step": "normalize", "colums": ["question"]}]})


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(CurationError, match=r"unknown recipe 'fancy'; known recipes: .*default"):
        load_recipe("fancy")


def test_recipe_without_steps_is_refused() -> None:
    with pytest.raises(CurationError, match="needs 'steps'"):
        Pipeline.from_recipe({"name": "empty"})
