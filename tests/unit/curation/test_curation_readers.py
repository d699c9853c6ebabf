"""Readers: every format round-trips real rows; every malformed upload is refused by name."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.errors import InvalidInputError, UnsupportedFormatError
from curation.readers import (
    FORMATS,
    count_rows,
    detect_format,
    detect_input_format,
    read_batches,
    read_schema,
    validate_file,
)

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"


def gsm8k_rows(count: int) -> list[dict[str, Any]]:
    with GSM8K_TRAIN.open(encoding="utf-8") as file:
        return [json.loads(next(file)) for _ in range(count)]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` in the format ``path``'s extension names."""
    format = detect_format(path.name)
    if format == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif format == "json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    elif format == "csv":
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif format == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    else:
        path.write_text("".join(row["text"] + "\n" for row in rows), encoding="utf-8")
    return path


def read_all(path: Path, **options: Any) -> list[dict[str, Any]]:
    format = detect_format(path.name)
    batches = list(read_batches(path, format=format, **options))
    rows: list[dict[str, Any]] = pa.Table.from_batches(batches).to_pylist()
    return rows


def png_bytes() -> bytes:
    """A real 1x1 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("upload.jsonl", "jsonl"),
        ("upload.NDJSON", "jsonl"),
        ("upload.json", "json"),
        ("table.csv", "csv"),
        ("part-0.parquet", "parquet"),
        ("corpus.txt", "txt"),
    ],
)
def test_detect_format_reads_the_extension(filename: str, expected: str) -> None:
    assert detect_format(filename) == expected


@pytest.mark.parametrize("filename", ["picture.png", "README", "archive.jsonl.gz"])
def test_detect_format_refuses_unknown_extensions_naming_the_file(filename: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=filename.replace(".", r"\.")):
        detect_format(filename)


@pytest.mark.parametrize("extension", ["jsonl", "json", "csv", "parquet"])
def test_tabular_formats_round_trip_gsm8k_rows_in_bounded_batches(
    tmp_path: Path, extension: str
) -> None:
    rows = gsm8k_rows(25)
    path = write_rows(tmp_path / f"gsm8k.{extension}", rows)

    batches = list(read_batches(path, format=extension, batch_size=10))

    assert all(0 < batch.num_rows <= 10 for batch in batches)
    assert pa.Table.from_batches(batches).to_pylist() == rows
    assert batches[0].schema == pa.schema([("question", pa.string()), ("answer", pa.string())])
    summary = validate_file(path, format=extension, source_name=path.name)
    assert (summary.format, summary.num_rows, summary.columns) == (
        extension,
        25,
        ["question", "answer"],
    )


def test_txt_gives_one_text_row_per_non_blank_line(tmp_path: Path) -> None:
    questions = [row["question"] for row in gsm8k_rows(12)]
    path = tmp_path / "questions.txt"
    path.write_text("\n\n".join(questions) + "\n   \n", encoding="utf-8")

    assert read_all(path, batch_size=5) == [{"text": question} for question in questions]
    assert validate_file(path, format="txt", source_name="questions.txt").num_rows == 12


def test_jsonl_skips_blank_lines_and_a_byte_order_mark(tmp_path: Path) -> None:
    rows = gsm8k_rows(3)
    path = tmp_path / "upload.jsonl"
    lines = [json.dumps(row) for row in rows]
    path.write_text("\ufeff" + lines[0] + "\n\n  \n" + "\n".join(lines[1:]), encoding="utf-8")

    assert read_all(path) == rows


def test_nested_json_values_keep_their_structure(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": row["answer"]},
            ],
            "meta": {"source": "gsm8k", "index": index},
        }
        for index, row in enumerate(gsm8k_rows(4))
    ]
    path = write_rows(tmp_path / "chat.jsonl", rows)

    schema = read_schema(path, format="jsonl")

    assert pa.types.is_list(schema.field("messages").type)
    assert pa.types.is_struct(schema.field("meta").type)
    assert read_all(path, batch_size=3) == rows


def test_types_are_unified_across_batches(tmp_path: Path) -> None:
    rows = [
        {"score": 1, "meta": {"a": 1}, "note": None},
        {"score": 2.5, "meta": {"b": "x"}, "note": "late string"},
    ]
    path = write_rows(tmp_path / "mixed.jsonl", rows)

    batches = list(read_batches(path, format="jsonl", batch_size=1))

    assert batches[0].schema == batches[1].schema
    assert batches[0].schema.field("score").type == pa.float64()
    assert pa.Table.from_batches(batches).to_pylist() == [
        {"score": 1.0, "meta": {"a": 1, "b": None}, "note": None},
        {"score": 2.5, "meta": {"a": None, "b": "x"}, "note": "late string"},
    ]


def test_values_of_disagreeing_kinds_fall_back_to_json_text(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"question": "q1", "extra": {"hint": "look twice"}},
        {"question": "q2", "extra": "plain"},
        {"question": "q3", "extra": [1, 2]},
        {"question": "q4", "extra": None},
        {"question": "q5", "extra": {}},
    ]
    path = write_rows(tmp_path / "ragged.json", rows)

    for batch_size in (1, 10):
        assert read_all(path, batch_size=batch_size) == [
            {"question": "q1", "extra": '{"hint": "look twice"}'},
            {"question": "q2", "extra": "plain"},
            {"question": "q3", "extra": "[1, 2]"},
            {"question": "q4", "extra": None},
            {"question": "q5", "extra": "{}"},
        ]


def test_invalid_json_line_is_named_with_its_number(tmp_path: Path) -> None:
    lines = [json.dumps(row) for row in gsm8k_rows(4)]
    lines[2] = lines[2][:-1]  # the closing brace is lost
    path = tmp_path / "upload.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(InvalidInputError, match=r"^upload\.jsonl line 3: not valid JSON \("):
        validate_file(path, format="jsonl", source_name="upload.jsonl")


def test_jsonl_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.jsonl"
    path.write_text(json.dumps(gsm8k_rows(1)[0]) + "\n[1, 2]\n", encoding="utf-8")

    with pytest.raises(InvalidInputError, match="line 2: expected a JSON object, got an array"):
        validate_file(path, format="jsonl", source_name="upload.jsonl")


def test_json_that_is_not_an_array_of_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"rows": gsm8k_rows(2)}), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="expected a JSON array of objects, got an object"):
        validate_file(path, format="json", source_name="upload.json")

    path.write_text(json.dumps([gsm8k_rows(1)[0], "stray"]), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="array index 1: expected a JSON object"):
        validate_file(path, format="json", source_name="upload.json")


@pytest.mark.parametrize("format", FORMATS)
def test_png_renamed_to_a_data_format_is_refused(tmp_path: Path, format: str) -> None:
    path = tmp_path / f"photo.{format}"
    path.write_bytes(png_bytes())

    with pytest.raises(InvalidInputError, match=rf"^photo\.{format}"):
        validate_file(path, format=format, source_name=path.name)


def test_png_named_jsonl_is_reported_as_not_text_on_line_one(tmp_path: Path) -> None:
    path = tmp_path / "upload.jsonl"
    path.write_bytes(png_bytes())

    with pytest.raises(InvalidInputError, match=r"upload\.jsonl line 1: not UTF-8 text"):
        validate_file(path, format="jsonl", source_name="upload.jsonl")


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "gsm8k.parquet", gsm8k_rows(200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidInputError, match=r"gsm8k\.parquet: not a valid Parquet file"):
        validate_file(path, format="parquet", source_name="gsm8k.parquet")


def test_ragged_csv_names_the_line_of_the_bad_row(tmp_path: Path) -> None:
    rows = [{"question": f"question {i}", "answer": str(i)} for i in range(5)]
    path = write_rows(tmp_path / "table.csv", rows)
    with path.open("a", encoding="utf-8") as file:
        file.write("question 5,5,an extra field\n")

    with pytest.raises(InvalidInputError, match=r"table\.csv line 7: expected 2 columns .* got 3"):
        validate_file(path, format="csv", source_name="table.csv")


def test_csv_column_that_turns_non_numeric_late_is_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    lines = ["id,answer", *(f"{i},{i * 2}" for i in range(200_000)), "200000,seventy-two"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    schema = read_schema(path, format="csv")
    rows = read_all(path)

    assert schema.field("id").type == pa.int64()
    assert schema.field("answer").type == pa.string()
    assert rows[-1] == {"id": 200_000, "answer": "seventy-two"}
    assert rows[3] == {"id": 3, "answer": "6"}


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("empty.jsonl", b""),
        ("blank.jsonl", b"\n\n  \n"),
        ("empty.json", b"[]"),
        ("empty.csv", b""),
        ("header_only.csv", b"question,answer\n"),
        ("empty.txt", b"\n \n"),
    ],
)
def test_file_without_rows_is_refused(tmp_path: Path, filename: str, content: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(content)

    with pytest.raises(InvalidInputError, match="has no rows"):
        validate_file(path, format=detect_format(filename), source_name=filename)


def test_parquet_without_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"question": pa.array([], pa.string())}), path)

    with pytest.raises(InvalidInputError, match=r"empty\.parquet: the file has no rows"):
        validate_file(path, format="parquet", source_name="empty.parquet")


def test_columns_with_the_reserved_prefix_are_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "export.jsonl", [{"_id": 1, "question": "q"}])

    with pytest.raises(InvalidInputError, match="reserved for provenance; rename _id"):
        validate_file(path, format="jsonl", source_name="export.jsonl")


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "upload.jsonl", gsm8k_rows(1))

    with pytest.raises(UnsupportedFormatError, match="unsupported format 'xml'"):
        validate_file(path, format="xml", source_name="upload.xml")


def test_a_hugging_face_datasets_folder_reads_as_saved(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = gsm8k_rows(40)
    folder = tmp_path / "gsm8k_saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder), max_shard_size="4KB")
    assert len(list(folder.glob("*.arrow"))) > 1

    assert detect_input_format(folder) == "hf_dataset"
    assert count_rows(folder, format="hf_dataset") == 40
    assert read_all_format(folder, "hf_dataset", batch_size=7) == rows
    middle = read_batches(folder, format="hf_dataset", batch_size=7, start=13, stop=29)
    assert pa.Table.from_batches(list(middle)).to_pylist() == rows[13:29]


def test_a_folder_of_text_files_is_one_document_per_file(tmp_path: Path) -> None:
    questions = [row["question"] for row in gsm8k_rows(12)]
    folder = tmp_path / "docs"
    for index, question in enumerate(questions):
        part = folder / f"part{index % 2}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"q{index:02d}.txt").write_text(question + "\nSecond line.\n", encoding="utf-8")
    (folder / "part1" / "q99.txt").write_bytes(b"caf\xe9\n")
    order = sorted(range(12), key=lambda index: (index % 2, index))

    assert detect_input_format(folder) == "txt_dir"
    assert count_rows(folder, format="txt_dir") == 13
    head = read_batches(folder, format="txt_dir", batch_size=5, stop=12)
    assert [row["text"] for row in pa.Table.from_batches(list(head)).to_pylist()] == [
        questions[index] + "\nSecond line.\n" for index in order
    ]
    with pytest.raises(InvalidInputError, match=r"docs/part1/q99\.txt line 1: not UTF-8"):
        validate_file(folder, format="txt_dir", source_name="docs")


def read_all_format(path: Path, format: str, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.Table.from_batches(
        list(read_batches(path, format=format, **options))
    ).to_pylist()
    return rows
