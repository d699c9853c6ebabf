"""Normalize: invisible differences in text are removed, everything else is left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curation.errors import CurationError
from curation.steps import Normalize
from curation.steps.normalize import normalize_text

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"


def normalized(values: list[str | None]) -> list[str | None]:
    result: list[str | None] = normalize_text(pa.array(values, pa.string())).to_pylist()
    return result


def run_normalize(step: Normalize, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    batch = pa.RecordBatch.from_pylist(rows)
    result: list[dict[str, Any]] = pa.Table.from_batches(list(step.run(iter([batch])))).to_pylist()
    return result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cafe\u0301", "caf\u00e9"),  # NFC composes e + combining acute
        ("a\x00b\x07c\x1bd\x7fe\u0085f", "abcdef"),  # C0, DEL and C1 controls go
        ("tab\tstays", "tab\tstays"),
        ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        ("trailing   \nspaces\t \nhere  ", "trailing\nspaces\nhere"),
        ("no-break\u00a0\nspace", "no-break\nspace"),
        ("a\n\n\n\n\n\nb", "a\n\n\nb"),  # five blank lines become two
        ("a\n\n\nb", "a\n\n\nb"),  # two blank lines stay
        ("a\r\n\r\n\r\n\r\n\r\nb", "a\n\n\nb"),
        ("a\n  \n \t \n\nb", "a\n\n\nb"),  # whitespace-only lines count as blank
        ("  \n padded \n\n", "padded"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalized([raw]) == [expected]


def test_nulls_stay_null() -> None:
    assert normalized([None, " x ", None]) == [None, "x", None]


def test_strings_nested_in_chat_messages_are_normalized() -> None:
    messages_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    messages = pa.array(
        [
            [
                {"role": "user ", "content": "cafe\u0301?\r\n"},
                {"role": "assistant", "content": None},
            ],
            None,
            [],
            [{"role": "user", "content": "  hi  "}],
        ],
        messages_type,
    )

    result = normalize_text(messages.slice(0))
    sliced = normalize_text(messages.slice(1))

    assert result.type == messages_type
    assert result.to_pylist() == [
        [{"role": "user", "content": "caf\u00e9?"}, {"role": "assistant", "content": None}],
        None,
        [],
        [{"role": "user", "content": "hi"}],
    ]
    assert sliced.to_pylist() == [None, [], [{"role": "user", "content": "hi"}]]


def test_only_string_data_columns_change() -> None:
    rows = [{"question": " What is 2+2? ", "answer": 4, "tags": ["math "]}]

    assert run_normalize(Normalize(), rows) == [
        {"question": "What is 2+2?", "answer": 4, "tags": ["math"]}
    ]


def test_given_columns_are_the_only_ones_normalized() -> None:
    rows = [{"question": " q ", "answer": " a "}]

    assert run_normalize(Normalize(columns=["answer"]), rows) == [
        {"question": " q ", "answer": "a"}
    ]


def test_unknown_column_is_an_error() -> None:
    with pytest.raises(CurationError, match="no columns named missing"):
        run_normalize(Normalize(columns=["missing"]), [{"question": "q"}])


def test_normalizing_gsm8k_is_idempotent_and_counts_rows() -> None:
    with GSM8K_TRAIN.open(encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    step = Normalize()

    once = run_normalize(step, rows)
    twice = run_normalize(Normalize(), once)

    assert twice == once
    assert len(once) == len(rows)
    assert (step.stats.rows_in, step.stats.rows_out) == (len(rows), len(rows))


def test_sliced_struct_column_with_nulls_is_normalized() -> None:
    meta = pa.array([{"note": " x "}, None, {"note": "y \r\n"}], pa.struct([("note", pa.string())]))

    assert normalize_text(meta.slice(1)).to_pylist() == [None, {"note": "y"}]
