"""ChatFormat: alpaca, sharegpt and messages rows become one `messages` column; malformed and
repeated conversations are dropped with the rule they break."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from curation.errors import CurationError
from curation.steps import ChatFormat, Normalize
from curation.steps.chat import MESSAGES_TYPE, check_messages, to_messages
from curation.steps.provenance import content_hashes
from tests.unit.curation.conftest import RunSteps, read_json


@pytest.fixture(scope="module")
def alpaca_en() -> list[dict[str, Any]]:
    return read_json("alpaca_en_demo.json")


@pytest.fixture(scope="module")
def alpaca_zh() -> list[dict[str, Any]]:
    return read_json("alpaca_zh_demo.json")


def as_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    prompt = record["instruction"] + (f"\n{record['input']}" if record["input"] else "")
    return {
        "conversations": [
            {"from": "human", "value": prompt},
            {"from": "gpt", "value": record["output"]},
        ]
    }


def test_alpaca_rows_become_messages(run_steps: RunSteps, alpaca_en: list[dict[str, Any]]) -> None:
    step = ChatFormat()

    table = run_steps([step], alpaca_en, batch_size=100)

    assert table.schema.field("messages").type == MESSAGES_TYPE
    assert [name for name in table.column_names if not name.startswith("_")] == ["messages"]
    with_input = next(i for i, r in enumerate(alpaca_en) if r["input"])
    record = alpaca_en[with_input]
    kept_rows = table.column("_source_row").to_pylist()
    messages = table.column("messages").to_pylist()[kept_rows.index(with_input)]
    assert messages == [
        {"role": "user", "content": f"{record['instruction']}\n{record['input']}"},
        {"role": "assistant", "content": record["output"]},
    ]
    # The demo set asks for a reinterpretation of the Mona Lisa twice: the second answer goes.
    mona_lisa = [i for i, r in enumerate(alpaca_en) if "Mona Lisa" in r["input"]]
    (record,) = step.exclusions
    assert record["source_row"] == mona_lisa[1]
    assert record["reason"].startswith("chat_format: same prompt as ")
    assert table.num_rows == len(alpaca_en) - 1


def test_sharegpt_and_alpaca_give_the_same_messages(
    run_steps: RunSteps, alpaca_zh: list[dict[str, Any]]
) -> None:
    from_alpaca = run_steps([ChatFormat()], alpaca_zh[:50])
    from_sharegpt = run_steps([ChatFormat("sharegpt")], [as_sharegpt(r) for r in alpaca_zh[:50]])

    assert from_alpaca.column("messages").equals(from_sharegpt.column("messages"))
    # The pipeline re-hashes after the step: same messages, same hash.
    assert from_alpaca.column("_content_hash").equals(from_sharegpt.column("_content_hash"))


def test_malformed_conversations_are_dropped_by_rule(
    run_steps: RunSteps, alpaca_en: list[dict[str, Any]]
) -> None:
    good = [as_sharegpt(record) for record in alpaca_en[:6]]
    user, answer = (turn["value"] for turn in good[0]["conversations"])
    rows = [
        *good,
        {"conversations": [{"from": "gpt", "value": answer}, {"from": "human", "value": user}]},
        {"conversations": [{"from": "human", "value": "Hello?"}, {"from": "gpt", "value": " "}]},
        {"conversations": [{"from": "human", "value": "Only a question"}]},
        {"conversations": [{"from": "system", "value": "Be brief."}]},
        {"conversations": [{"from": "human", "value": "x"}, {"from": "tool", "value": "y"}]},
        {"conversations": []},
        {
            "conversations": [
                {"from": "system", "value": "You are a cook."},
                {"from": "human", "value": alpaca_en[7]["instruction"]},
                {"from": "gpt", "value": alpaca_en[7]["output"]},
            ]
        },
    ]
    step = ChatFormat()

    table = run_steps([step], rows, batch_size=4)

    reasons = {record["source_row"]: record["reason"] for record in step.exclusions}
    assert reasons == {
        6: "chat_format: message 1 is from assistant, expected user",
        7: "chat_format: empty answer",
        8: "chat_format: no answer to the last user message",
        9: "chat_format: no user message",
        10: "chat_format: message 2 is from tool, expected assistant",
        11: "chat_format: no messages",
    }
    assert table.num_rows == 7
    assert table.column("messages").to_pylist()[-1][0] == {
        "role": "system",
        "content": "You are a cook.",
    }
    assert (
        step.stats.dropped_by_reason["chat_format: message N is from assistant, expected user"] == 1
    )


def test_repeated_prompts_are_dropped_naming_the_first(
    run_steps: RunSteps, alpaca_zh: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in alpaca_zh[:30]]
    again = dict(rows[4], output="另一个回答。")
    again["instruction"] = "  " + rows[4]["instruction"].upper() + " "
    rows.append(again)
    step = ChatFormat(unique=["prompt"])

    table = run_steps([Normalize(), step], rows)

    (record,) = step.exclusions
    # Hashes are of the rows as they reached the step: normalised alpaca rows.
    first = content_hashes(pa.RecordBatch.from_pylist([rows[4]]))[0]
    repeat = content_hashes(pa.RecordBatch.from_pylist([{k: v.strip() for k, v in again.items()}]))
    assert record == {
        "step": "chat_format",
        "reason": f"chat_format: same prompt as {first}",
        "content_hash": repeat[0],
        "source_file": "upload.jsonl",
        "source_row": 30,
    }
    assert table.num_rows == 30
    assert step.stats.dropped_by_reason == {"chat_format: same prompt": 1}


def test_length_limits(alpaca_en: list[dict[str, Any]]) -> None:
    longest = max(alpaca_en, key=lambda r: len(r["output"]))
    messages = to_messages(longest, "alpaca")

    assert check_messages(messages, max_messages=64, max_chars=len(longest["output"])) is None
    assert check_messages(messages, max_messages=64, max_chars=100) == (
        f"message 2 has {len(longest['output'])} characters > 100"
    )
    turns = messages * 3
    assert check_messages(turns, max_messages=4, max_chars=10**6) == "messages 6 > 4"


def test_layout_must_be_recognisable(run_steps: RunSteps) -> None:
    with pytest.raises(CurationError, match="cannot tell the layout"):
        run_steps([ChatFormat()], [{"question": "q", "answer": "a"}])
    with pytest.raises(CurationError, match="unknown format 'openai'"):
        ChatFormat("openai")
    with pytest.raises(CurationError, match="cannot keep title unique"):
        ChatFormat(unique=["title"])
