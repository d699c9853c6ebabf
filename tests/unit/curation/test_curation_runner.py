"""run_local: the whole curation of a version, on the real GSM8K train split."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.errors import CurationError, InvalidInputError
from curation.runner import InputFile, run_local

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"
GSM8K_TRAIN = FIXTURES / "gsm8k_train.jsonl"
GSM8K_TEST = FIXTURES / "gsm8k_test.jsonl"

# Where copies of train rows are planted in alice's upload: (position in the file, train index).
PLANTED = [(5000, 10), (5001, 4999), (6000, 2), *[(7473 + n, 150 * n) for n in range(40)]]
# Train rows bob's CSV repeats after 100 test rows.
REPEATED_BY_BOB = [7, 3000, 7472]


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.fixture(scope="module")
def train_rows() -> list[dict[str, Any]]:
    return load_jsonl(GSM8K_TRAIN)


def write_uploads(folder: Path, train_rows: list[dict[str, Any]]) -> list[InputFile]:
    """Alice uploads train rows with planted copies; bob a CSV of test rows and three copies."""
    folder.mkdir(parents=True, exist_ok=True)
    alice_rows = list(train_rows)
    for position, index in sorted(PLANTED):
        original = train_rows[index]
        # Copies differ only in ways normalisation removes.
        copy = {"question": original["question"] + " ", "answer": original["answer"] + "\r\n"}
        alice_rows.insert(position, copy)
    alice = folder / "train.jsonl"
    alice.write_text("".join(json.dumps(row) + "\n" for row in alice_rows), encoding="utf-8")

    bob_rows = load_jsonl(GSM8K_TEST)[:100] + [train_rows[index] for index in REPEATED_BY_BOB]
    bob = folder / "more.csv"
    with bob.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(bob_rows)
    return [
        InputFile(path=alice, format="jsonl", source_name="train.jsonl", contributor="alice"),
        InputFile(path=bob, format="csv", source_name="more.csv", contributor="bob"),
    ]


def test_gsm8k_train_with_planted_duplicates_is_curated(
    tmp_path: Path, train_rows: list[dict[str, Any]]
) -> None:
    inputs = write_uploads(tmp_path / "uploads", train_rows)
    out = tmp_path / "version"

    result = run_local(inputs, out, recipe="default", rows_per_shard=2000)

    rows_in = len(train_rows) + len(PLANTED) + 100 + len(REPEATED_BY_BOB)
    assert result.rows_in == rows_in
    assert result.num_rows == len(train_rows) + 100
    assert [shard.path for shard in result.shards] == [
        f"data/train-{index:05d}-of-00004.parquet" for index in range(4)
    ]
    assert result.schema.names == [
        "question",
        "answer",
        "_contributor",
        "_source_file",
        "_source_row",
        "_content_hash",
    ]

    kept = pa.concat_tables(pq.read_table(out / shard.path) for shard in result.shards)
    assert kept.schema.equals(result.schema)
    assert kept.select(["question", "answer"]).to_pylist() == (
        train_rows + load_jsonl(GSM8K_TEST)[:100]
    )
    origin_of_hash = {
        row["_content_hash"]: (row["_source_file"], row["_source_row"]) for row in kept.to_pylist()
    }
    planted_at = dict(PLANTED)
    # Where each train row sits in alice's file, around the planted copies.
    train_positions = [
        position for position in range(len(train_rows) + len(PLANTED)) if position not in planted_at
    ]
    assert kept.column("_source_row").to_pylist()[: len(train_rows)] == train_positions

    assert result.exclusions is not None
    exclusions = pq.read_table(out / result.exclusions.path).to_pylist()
    dropped = {(row["source_file"], row["source_row"]): row for row in exclusions}
    assert set(dropped) == {("train.jsonl", position) for position in planted_at} | {
        ("more.csv", 100 + n) for n in range(len(REPEATED_BY_BOB))
    }
    originals = {("train.jsonl", position): index for position, index in PLANTED} | {
        ("more.csv", 100 + n): index for n, index in enumerate(REPEATED_BY_BOB)
    }
    for key, index in originals.items():
        row = dropped[key]
        first_hash = row["reason"].removeprefix("exact duplicate of ")
        assert row["step"] == "exact_dedup"
        assert row["content_hash"] == first_hash
        assert origin_of_hash[first_hash] == ("train.jsonl", train_positions[index])

    assert result.steps == [
        {
            "step": "normalize",
            "params": {"columns": None, "to_simplified": False},
            "rows_in": rows_in,
            "rows_out": rows_in,
            "dropped_by_reason": {},
        },
        {
            "step": "exact_dedup",
            "params": {"columns": None},
            "rows_in": rows_in,
            "rows_out": result.num_rows,
            "dropped_by_reason": {"exact duplicate": len(PLANTED) + len(REPEATED_BY_BOB)},
        },
    ]
    report = json.loads(json.dumps(result.report))
    assert report["rows_in"] == rows_in
    assert report["rows_out"] == result.num_rows
    assert report["content_hash"] == result.content_hash
    assert [entry["rows"] for entry in report["inputs"]] == [
        len(train_rows) + len(PLANTED),
        100 + len(REPEATED_BY_BOB),
    ]


def test_running_twice_gives_the_same_bytes(
    tmp_path: Path, train_rows: list[dict[str, Any]]
) -> None:
    inputs = write_uploads(tmp_path / "uploads", train_rows)

    first = run_local(inputs, tmp_path / "first", recipe="default", rows_per_shard=3000)
    second = run_local(inputs, tmp_path / "second", recipe="default", rows_per_shard=3000)

    assert first.content_hash == second.content_hash
    assert first.shards == second.shards
    assert first.exclusions == second.exclusions


def test_inputs_with_different_columns_are_refused_naming_file_and_columns(
    tmp_path: Path, train_rows: list[dict[str, Any]]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(train_rows[0]) + "\n", encoding="utf-8")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "q", "solution": "s"}) + "\n", encoding="utf-8")
    inputs = [
        InputFile(good, "jsonl", "good.jsonl", "alice"),
        InputFile(other, "jsonl", "other.jsonl", "bob"),
    ]

    with pytest.raises(
        CurationError,
        match=r"other\.jsonl: columns differ from good\.jsonl: lacks answer; has extra solution",
    ):
        run_local(inputs, tmp_path / "out", recipe="default")


def test_inputs_with_different_column_types_are_refused(
    tmp_path: Path, train_rows: list[dict[str, Any]]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(train_rows[0]) + "\n", encoding="utf-8")
    numeric = tmp_path / "numeric.jsonl"
    numeric.write_text(json.dumps({"question": "q", "answer": 72}) + "\n", encoding="utf-8")
    inputs = [
        InputFile(good, "jsonl", "good.jsonl", "alice"),
        InputFile(numeric, "jsonl", "numeric.jsonl", "bob"),
    ]

    with pytest.raises(CurationError, match=r"numeric\.jsonl: column types differ .*answer"):
        run_local(inputs, tmp_path / "out", recipe="default")


def test_a_column_null_in_one_file_takes_its_type_from_the_others(tmp_path: Path) -> None:
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"question": "q1", "hint": None}) + "\n", encoding="utf-8")
    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps({"question": "q2", "hint": "h"}) + "\n", encoding="utf-8")
    inputs = [
        InputFile(first, "jsonl", "first.jsonl", "alice"),
        InputFile(second, "jsonl", "second.jsonl", "bob"),
    ]

    result = run_local(inputs, tmp_path / "out", recipe="default")

    assert result.schema.field("hint").type == pa.string()
    assert result.num_rows == 2


def test_an_invalid_input_fails_the_run_by_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q"}\n{"question": \n', encoding="utf-8")

    with pytest.raises(InvalidInputError, match=r"broken\.jsonl line 2"):
        run_local(
            [InputFile(broken, "jsonl", "broken.jsonl", "alice")],
            tmp_path / "out",
            recipe="default",
        )
