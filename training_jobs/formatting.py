"""Turn the rows of a licensed training table into chats, and chats into text.

A chat is a list of ``{"role": ..., "content": ...}`` messages. The table's shape decides how a
row becomes a chat; the first shape whose columns are all present wins:

==========================  ===========================================================
columns                     chat
==========================  ===========================================================
``messages``                the list of ``{role, content}`` structs as is
``instruction``, ``output``  user: instruction (and ``input`` when present), assistant: output
``prompt``, ``completion``  user: prompt, assistant: completion
``question``, ``answer``    user: question, assistant: answer (GSM8K)
``text``                    one assistant turn holding the text (plain language modelling)
==========================  ===========================================================

Columns whose names start with ``_`` carry provenance and are ignored; other extra columns are
ignored too. Errors name row indices, fields and types, never row content.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import pyarrow as pa

from training_jobs.errors import InvalidTrainingDataError

Chat = list[dict[str, str]]

ROLES: Final = ("system", "user", "assistant")
ROLE_TOKENS: Final = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_TOKEN: Final = "<|end|>"

CHAT_TEMPLATE: Final = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
"""`render_chat` as a Jinja chat template, saved with trained tokenizers for inference."""

_SHAPES: Final = (
    "messages",
    "instruction, output (input optional)",
    "prompt, completion",
    "question, answer",
    "text",
)


def rows_to_chats(table: pa.Table) -> list[Chat]:
    """Return one chat per row of `table`, in row order."""
    columns = [name for name in table.column_names if not name.startswith("_")]
    present = set(columns)
    builder: Callable[[pa.Table], list[Chat]]
    if "messages" in present:
        builder = _messages_chats
    elif {"instruction", "output"} <= present:
        builder = _instruction_chats
    elif {"prompt", "completion"} <= present:
        builder = _pair_chats("prompt", "completion")
    elif {"question", "answer"} <= present:
        builder = _pair_chats("question", "answer")
    elif "text" in present:
        builder = _text_chats
    else:
        raise InvalidTrainingDataError(
            f"unknown training data shape: found columns {columns}; "
            f"expected one of: {' | '.join(_SHAPES)}"
        )
    return builder(table)


def render_chat(chat: Chat) -> str:
    """Render `chat` with the house template, e.g. ``<|user|>\\nHi<|end|>\\n``, one per message."""
    parts = []
    for index, message in enumerate(chat):
        role = message.get("role")
        if role not in ROLE_TOKENS:
            raise InvalidTrainingDataError(
                f"message {index}: role is not one of {', '.join(ROLES)}", field="role"
            )
        parts.append(f"{ROLE_TOKENS[role]}\n{message['content']}{END_TOKEN}\n")
    return "".join(parts)


def _pair_chats(prompt_field: str, answer_field: str) -> Callable[[pa.Table], list[Chat]]:
    def build(table: pa.Table) -> list[Chat]:
        prompts = _required_strings(table, prompt_field)
        answers = _required_strings(table, answer_field)
        return [
            [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
            for p, a in zip(prompts, answers, strict=True)
        ]

    return build


def _instruction_chats(table: pa.Table) -> list[Chat]:
    instructions = _required_strings(table, "instruction")
    outputs = _required_strings(table, "output")
    if "input" in table.column_names:
        inputs = [value or "" for value in _strings(table, "input")]
    else:
        inputs = [""] * table.num_rows
    chats = []
    for instruction, extra, output in zip(instructions, inputs, outputs, strict=True):
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        chats.append(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        )
    return chats


def _text_chats(table: pa.Table) -> list[Chat]:
    return [[{"role": "assistant", "content": text}] for text in _required_strings(table, "text")]


def _messages_chats(table: pa.Table) -> list[Chat]:
    column_type = table.schema.field("messages").type
    if not (
        (pa.types.is_list(column_type) or pa.types.is_large_list(column_type))
        and pa.types.is_struct(column_type.value_type)
        and column_type.value_type.get_field_index("role") >= 0
        and column_type.value_type.get_field_index("content") >= 0
    ):
        raise InvalidTrainingDataError(
            f"field 'messages' must be a list of {{role, content}} structs, got {column_type}",
            field="messages",
        )
    chats = []
    for row, messages in enumerate(table.column("messages").to_pylist()):
        if not messages:
            raise InvalidTrainingDataError(
                f"row {row}: field 'messages' is empty", row=row, field="messages"
            )
        chat = []
        for index, message in enumerate(messages):
            field = f"messages[{index}]"
            if message is None:
                raise InvalidTrainingDataError(
                    f"row {row}: field '{field}' is null", row=row, field=field
                )
            if message["role"] not in ROLES:
                raise InvalidTrainingDataError(
                    f"row {row}: field '{field}.role' is not one of {', '.join(ROLES)}",
                    row=row,
                    field=f"{field}.role",
                )
            if not isinstance(message["content"], str):
                raise InvalidTrainingDataError(
                    f"row {row}: field '{field}.content' is null", row=row, field=f"{field}.content"
                )
            chat.append({"role": message["role"], "content": message["content"]})
        chats.append(chat)
    return chats


def _strings(table: pa.Table, field: str) -> list[str | None]:
    column_type = table.schema.field(field).type
    if not (
        pa.types.is_string(column_type)
        or pa.types.is_large_string(column_type)
        or pa.types.is_string_view(column_type)
    ):
        raise InvalidTrainingDataError(
            f"field '{field}' must be a string column, got {column_type}", field=field
        )
    values: list[str | None] = table.column(field).to_pylist()
    return values


def _required_strings(table: pa.Table, field: str) -> list[str]:
    values = _strings(table, field)
    for row, value in enumerate(values):
        if value is None:
            raise InvalidTrainingDataError(
                f"row {row}: field '{field}' is null", row=row, field=field
            )
        if not value.strip():
            raise InvalidTrainingDataError(
                f"row {row}: field '{field}' is empty", row=row, field=field
            )
    return [value for value in values if value is not None]
