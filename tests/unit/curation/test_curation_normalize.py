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


def test_traditional_chinese_becomes_simplified_when_asked() -> None:
    with (GSM8K_TRAIN.parent / "tangshi_300.json").open(encoding="utf-8") as file:
        poems = [{"title": p["title"], "text": "\n".join(p["paragraphs"])} for p in json.load(file)]

    simplified = run_normalize(Normalize(to_simplified=True), poems)
    untouched = run_normalize(Normalize(), poems)

    assert untouched == poems
    assert simplified[0] == {
        "title": "在岳咏蝉",
        "text": "西陆蝉声唱，南冠客思侵。\n那堪玄鬓影，来对白头吟。\n露重飞难进，风多响易沈。\n"
        "无人信高洁，谁为表予心。",
    }
    changed = sum(a != b for a, b in zip(simplified, poems, strict=True))
    assert changed > 300
    # Text without Han characters is only normalised.
    assert run_normalize(Normalize(to_simplified=True), [{"q": " What is 2+2? "}]) == [
        {"q": "What is 2+2?"}
    ]


def test_nested_chinese_messages_are_simplified() -> None:
    messages = pa.array(
        [[{"role": "user", "content": "國際關係"}, {"role": "assistant", "content": "經濟發展"}]],
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
    )

    assert normalize_text(messages, to_simplified=True).to_pylist() == [
        [{"role": "user", "content": "国际关系"}, {"role": "assistant", "content": "经济发展"}]
    ]
