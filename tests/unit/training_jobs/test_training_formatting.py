from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pytest

from training_jobs.errors import InvalidTrainingDataError, TrainingError
from training_jobs.formatting import render_chat, rows_to_chats

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"


def test_question_answer_rows_become_user_then_assistant() -> None:
    table = pa_json.read_json(GSM8K_TRAIN).slice(0, 5)

    chats = rows_to_chats(table)

    assert len(chats) == 5
    first = table.slice(0, 1).to_pylist()[0]
    assert chats[0] == [
        {"role": "user", "content": first["question"]},
        {"role": "assistant", "content": first["answer"]},
    ]


def test_prompt_completion_rows_become_user_then_assistant() -> None:
    table = pa.table({"prompt": ["2+2?"], "completion": ["4"]})

    assert rows_to_chats(table) == [
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    ]


def test_alpaca_rows_join_instruction_and_input() -> None:
    table = pa.table(
        {
            "instruction": ["Translate to French.", "Say hi."],
            "input": ["cheese", None],
            "output": ["fromage", "hi"],
        }
    )

    assert rows_to_chats(table) == [
        [
            {"role": "user", "content": "Translate to French.\n\ncheese"},
            {"role": "assistant", "content": "fromage"},
        ],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
    ]


def test_alpaca_rows_without_input_column() -> None:
    table = pa.table({"instruction": ["Say hi."], "output": ["hi"]})

    assert rows_to_chats(table)[0][0] == {"role": "user", "content": "Say hi."}


def test_messages_rows_keep_their_turns() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    table = pa.table({"messages": [messages], "text": ["ignored: messages wins"]})

    assert rows_to_chats(table) == [messages]


def test_text_rows_become_one_assistant_turn() -> None:
    table = pa.table({"text": ["Once upon a time.", "床前明月光"]})

    assert rows_to_chats(table) == [
        [{"role": "assistant", "content": "Once upon a time."}],
        [{"role": "assistant", "content": "床前明月光"}],
    ]


def test_provenance_columns_are_ignored() -> None:
    table = pa.table({"_source": ["crawl-17"], "_license": ["cc-by"], "text": ["hello"]})

    assert rows_to_chats(table) == [[{"role": "assistant", "content": "hello"}]]


def test_provenance_columns_do_not_make_a_shape() -> None:
    table = pa.table({"_question": ["q"], "_answer": ["a"], "body": ["b"]})

    with pytest.raises(InvalidTrainingDataError) as caught:
        rows_to_chats(table)

    assert "body" in str(caught.value)
    assert "_question" not in str(caught.value)


def test_unknown_shape_names_the_columns_but_not_the_rows() -> None:
    secret = "The vault code is 4417-alpha"
    table = pa.table({"title": [secret], "body": [secret + " and more"]})

    with pytest.raises(InvalidTrainingDataError) as caught:
        rows_to_chats(table)

    message = str(caught.value)
    assert "'title'" in message
    assert "'body'" in message
    assert "question, answer" in message
    assert secret not in message
    assert isinstance(caught.value, TrainingError)


def test_null_field_names_row_and_field_but_not_content() -> None:
    secret = "Confidential answer 9931"
    table = pa.table({"question": ["What?", None], "answer": [secret, secret]})

    with pytest.raises(InvalidTrainingDataError) as caught:
        rows_to_chats(table)

    assert str(caught.value) == "row 1: field 'question' is null"
    assert (caught.value.row, caught.value.field) == (1, "question")
    assert secret not in str(caught.value)


def test_empty_field_is_rejected() -> None:
    table = pa.table({"prompt": ["a", "b", "c"], "completion": ["x", "y", "   "]})

    with pytest.raises(InvalidTrainingDataError, match=r"row 2: field 'completion' is empty"):
        rows_to_chats(table)


def test_non_string_column_is_rejected_with_its_type() -> None:
    table = pa.table({"question": ["How many?"], "answer": [42]})

    with pytest.raises(InvalidTrainingDataError, match=r"field 'answer' must be a string.*int64"):
        rows_to_chats(table)


def test_unknown_role_is_rejected_without_echoing_it() -> None:
    messages = [{"role": "root-password-hunter2", "content": "hi"}]
    table = pa.table({"messages": [messages]})

    with pytest.raises(InvalidTrainingDataError) as caught:
        rows_to_chats(table)

    assert "row 0: field 'messages[0].role'" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_messages_column_of_the_wrong_type_is_rejected() -> None:
    table = pa.table({"messages": ["not a list"]})

    with pytest.raises(InvalidTrainingDataError, match="field 'messages' must be a list"):
        rows_to_chats(table)


def test_empty_messages_list_is_rejected() -> None:
    table = pa.table(
        {
            "messages": pa.array(
                [[]], pa.list_(pa.struct({"role": pa.string(), "content": pa.string()}))
            )
        }
    )

    with pytest.raises(InvalidTrainingDataError, match=r"row 0: field 'messages' is empty"):
        rows_to_chats(table)


def test_render_chat_uses_the_house_template() -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]

    assert render_chat(chat) == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
    )


def test_render_chat_rejects_an_unknown_role() -> None:
    with pytest.raises(InvalidTrainingDataError, match="message 0: role"):
        render_chat([{"role": "tool", "content": "x"}])
