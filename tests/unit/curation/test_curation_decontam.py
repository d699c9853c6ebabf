"""Decontaminate: GSM8K test problems planted in GSM8K train are all caught, with a report per
benchmark; train problems stay, except the few that really share 13 words with a test problem."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curation.errors import CurationError
from curation.steps import Decontaminate
from curation.steps.decontam import BenchmarkIndex
from tests.unit.curation.conftest import FIXTURES, RunSteps, read_json, read_jsonl

GSM8K = {"name": "gsm8k", "path": str(FIXTURES / "gsm8k_test.jsonl"), "fields": ["question"]}
# Train problems sharing a 13-word run with a test problem (GSM8K has such near twins):
# "A train travels 270 miles in 3 hours. At the same rate, how many additional hours..."
TRAIN_TWINS = 4


@pytest.fixture(scope="module")
def train() -> list[dict[str, Any]]:
    return read_jsonl("gsm8k_train.jsonl")


@pytest.fixture(scope="module")
def test_split() -> list[dict[str, Any]]:
    return read_jsonl("gsm8k_test.jsonl")


def test_planted_test_problems_are_all_caught(
    run_steps: RunSteps, train: list[dict[str, Any]], test_split: list[dict[str, Any]]
) -> None:
    rng = random.Random(3)
    planted = rng.sample(range(len(test_split)), 60)
    rows = list(train)
    positions = sorted(rng.sample(range(len(rows)), len(planted)))
    for offset, (position, item) in enumerate(zip(positions, planted, strict=True)):
        # Planted as contributors paste them: the question inside a longer prompt.
        question = test_split[item]["question"]
        rows.insert(
            position + offset, {"question": f"Solve this: {question} Show your work.", "answer": ""}
        )
    planted_rows = {position + offset for offset, position in enumerate(positions)}
    step = Decontaminate([GSM8K])

    table = run_steps([step], rows, batch_size=2000)

    dropped = {record["source_row"]: record["reason"] for record in step.exclusions}
    assert planted_rows <= set(dropped)
    false_positives = set(dropped) - planted_rows
    assert len(false_positives) == TRAIN_TWINS
    for row, item in zip(sorted(planted_rows), planted, strict=True):
        assert dropped[row].startswith(f"contaminated: gsm8k item {item} ("), dropped[row]
    report = step.details["benchmarks"]["gsm8k"]
    assert report["items"] == len(test_split)
    assert report["rows_checked"] == len(rows)
    assert report["rows_contaminated"] == len(planted) + TRAIN_TWINS
    assert {str(item) for item in planted} <= set(report["items_hit"])
    assert step.stats.dropped_by_reason == {"contaminated: gsm8k": len(planted) + TRAIN_TWINS}
    assert table.num_rows == len(train) - TRAIN_TWINS


def test_the_reason_names_the_item_and_shared_ngrams(
    run_steps: RunSteps, test_split: list[dict[str, Any]]
) -> None:
    question = test_split[42]["question"]
    words = len(question.split())
    step = Decontaminate([GSM8K])

    run_steps([step], [{"question": question}])

    (record,) = step.exclusions
    shared = int(record["reason"].split("(")[1].split()[0])
    assert record["reason"].startswith("contaminated: gsm8k item 42 (")
    assert words - 13 - 2 <= shared <= words - 12 + 2


def test_edits_between_every_thirteen_words_escape_and_min_matches_raises_the_bar(
    test_split: list[dict[str, Any]],
) -> None:
    index = BenchmarkIndex.from_benchmarks(
        [Decontaminate([GSM8K]).benchmarks[0]], ngram=13, char_ngram=13
    )
    question = test_split[7]["question"]
    words = question.split()
    broken = " ".join(w if i % 6 else w.upper() + "x" for i, w in enumerate(words))
    partial = " ".join(words[:14]) + " and then something else entirely different happens."

    (full_hits, broken_hits, partial_hits) = index.matches(pa.array([question, broken, partial]))

    assert full_hits and not broken_hits
    assert sum(partial_hits.values()) >= 1
    strict = Decontaminate([GSM8K], min_matches=5)
    assert max(partial_hits.values()) < strict.min_matches <= max(full_hits.values())


def test_chinese_benchmarks_use_character_ngrams(tmp_path: Path, run_steps: RunSteps) -> None:
    answers = [record["output"] for record in read_json("alpaca_zh_demo.json")[:200]]
    benchmark = tmp_path / "zh_bench.jsonl"
    # Items are the first 60 characters of twenty answers; one of them opens a Python program.
    benchmark.write_text(
        "".join(
            json.dumps({"q": answer[:60]}, ensure_ascii=False) + "\n" for answer in answers[:20]
        ),
        encoding="utf-8",
    )
    step = Decontaminate([{"name": "zh", "path": str(benchmark), "fields": "q"}])

    table = run_steps([step], [{"text": a} for a in answers])

    assert sorted(record["source_row"] for record in step.exclusions) == list(range(20))
    assert table.num_rows == 180
    assert step.details["benchmarks"]["zh"]["items_hit"] == [str(i) for i in range(20)]


def test_bad_benchmark_specs_are_named() -> None:
    with pytest.raises(CurationError, match="'fields' is required"):
        Decontaminate([{"path": "x.jsonl"}])
    with pytest.raises(CurationError, match="no file at"):
        list(Decontaminate([{"path": "/nonexistent/b.jsonl", "fields": ["q"]}]).index.benchmarks)
    step = Decontaminate([{**GSM8K, "fields": ["problem"]}])
    with pytest.raises(CurationError, match="has no fields problem"):
        _ = step.index
