"""The data validation report: every format normalised, every problem named, tokens counted."""

from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pytest

from training_jobs.formatting import inspect_rows
from training_jobs.tokenization import build_byte_tokenizer, encode_chats
from training_jobs.validation import ValidationReport, validate_table

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"
SECRET = "Private answer 4417-alpha"
TURN = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
SHAREGPT_TURN = pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])


def report_of(table: pa.Table, max_seq_len: int = 256) -> ValidationReport:
    return validate_table(table, build_byte_tokenizer(), max_seq_len=max_seq_len)


def test_gsm8k_passes_with_token_counts_of_the_house_format() -> None:
    table = pa_json.read_json(GSM8K_TRAIN).slice(0, 50)

    report = report_of(table)

    assert report.passed and report.format == "question_answer"
    assert (report.rows, report.valid_rows, report.invalid_rows) == (50, 50, 0)
    encoded = encode_chats(
        build_byte_tokenizer(), inspect_rows(table).valid_chats(), max_length=10**9
    )
    assert report.tokens is not None
    assert report.tokens.total == sum(len(example.input_ids) for example in encoded)
    assert report.tokens.trainable == sum(example.trainable_tokens for example in encoded)
    assert report.tokens.rows_over_max_seq_len == sum(
        len(example.input_ids) > 256 for example in encoded
    )


@pytest.mark.parametrize(
    ("table", "shape"),
    [
        (pa.table({"messages": pa.array([[{"role": "user", "content": "2+2?"},
                                          {"role": "assistant", "content": "4"}]],
                                        pa.list_(TURN))}), "messages"),
        (pa.table({"conversations": pa.array([[{"from": "human", "value": "2+2?"},
                                               {"from": "gpt", "value": "4"}]],
                                             pa.list_(SHAREGPT_TURN))}), "sharegpt"),
        (pa.table({"instruction": ["2+2?"], "input": [""], "output": ["4"]}), "alpaca"),
        (pa.table({"prompt": ["2+2?"], "completion": ["4"]}), "prompt_completion"),
    ],
)  # fmt: skip
def test_every_format_becomes_the_same_chat(table: pa.Table, shape: str) -> None:
    inspection = inspect_rows(table)

    assert inspection.format == shape
    assert inspection.valid_chats() == [
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    ]
    assert report_of(table).passed


def test_problems_name_row_and_field_never_the_text() -> None:
    conversations = [
        [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
        [{"from": "human", "value": SECRET}],  # no assistant turn
        [{"from": "narrator", "value": SECRET}, {"from": "gpt", "value": "ok"}],
        [{"from": "human", "value": None}, {"from": "gpt", "value": SECRET}],
    ]
    table = pa.table({"conversations": pa.array(conversations, pa.list_(SHAREGPT_TURN))})

    report = report_of(table)

    assert not report.passed
    assert (report.valid_rows, report.invalid_rows) == (1, 3)
    assert [(p.row, p.field) for p in report.problems] == [
        (1, "conversations"),
        (2, "conversations[0].from"),
        (3, "conversations[0].value"),
    ]
    assert report.problems[0].problem == "has no assistant turn"
    assert SECRET not in report.model_dump_json()
    assert "row 1: field 'conversations' has no assistant turn" in report.summary
    assert SECRET not in report.summary


def test_a_table_of_unknown_shape_fails_as_a_whole() -> None:
    report = report_of(pa.table({"title": [SECRET]}))

    assert not report.passed and report.format is None
    assert report.error is not None and "'title'" in report.error
    assert SECRET not in report.model_dump_json()


def test_an_empty_table_fails() -> None:
    report = report_of(pa.table({"prompt": pa.array([], pa.string()),
                                 "completion": pa.array([], pa.string())}))  # fmt: skip

    assert not report.passed and report.error == "the training data has no rows"


def test_long_problem_lists_are_capped_but_counted() -> None:
    table = pa.table({"prompt": ["q"] * 150, "completion": pa.array([None] * 150, pa.string())})

    report = report_of(table)

    assert len(report.problems) == 100 and report.problems_not_listed == 50
    assert report.invalid_rows == 150


def test_a_worker_validates_a_version_once_per_tokenizer_and_length() -> None:
    from training_jobs.runner import TrainingParams
    from training_jobs.service import _validation_of

    table = pa_json.read_json(GSM8K_TRAIN).slice(0, 20)
    params = TrainingParams(max_seq_len=128)  # the tiny model: the byte tokenizer
    longer = params.model_copy(update={"max_seq_len": 256})

    first = _validation_of("c" * 64, table, params)

    assert _validation_of("c" * 64, table, params) is first
    assert first == report_of(table, max_seq_len=128)
    assert _validation_of("c" * 64, table, longer) is not first
    assert _validation_of("d" * 64, table, params) is not first
