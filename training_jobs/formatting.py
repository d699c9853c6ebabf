"""Turn the rows of a licensed training table into chats, and chats into text.

A chat is a list of ``{"role": ..., "content": ...}`` messages. The table's shape (its format)
decides how a row becomes a chat; the first shape whose columns are all present wins:

==============================  =================================================================
columns (format)                chat
==============================  =================================================================
``messages`` (messages)         the list of ``{role, content}`` structs as is
``conversations`` (sharegpt)    the list of ``{from, value}`` structs; ``from`` is ``human`` /
                                ``user``, ``gpt`` / ``assistant`` or ``system``
``instruction``, ``output``     user: instruction (and ``input`` when present), assistant:
(alpaca)                        output; a ``system`` column, when present, comes first
``prompt``, ``completion``      user: prompt, assistant: completion
(prompt_completion)
``question``, ``answer``        user: question, assistant: answer (GSM8K)
(question_answer)
``text`` (text)                 one assistant turn holding the text (plain language modelling)
==============================  =================================================================

Every chat must hold an assistant turn: that is what training learns. Columns whose names start
with ``_`` carry provenance and are ignored; other extra columns are ignored too.

`inspect_rows` checks every row and returns the chats with every problem found (row number,
field, what is wrong); `rows_to_chats` raises the first problem. Problems name row indices,
fields and types, never row content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from training_jobs.errors import InvalidTrainingDataError

Chat = list[dict[str, str]]

ROLES: Final = ("system", "user", "assistant")
ROLE_TOKENS: Final = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_TOKEN: Final = "<|end|>"
SHAREGPT_ROLES: Final = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}

CHAT_TEMPLATE: Final = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
"""`render_chat` as a Jinja chat template, saved with trained tokenizers for inference."""

_SHAPES: Final = (
    "messages",
    "conversations",
    "instruction, output (input optional)",
    "prompt, completion",
    "question, answer",
    "text",
)


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with one row: its index, the field at fault and the problem, no content."""

    row: int
    field: str
    problem: str

    @property
    def message(self) -> str:
        return f"row {self.row}: field '{self.field}' {self.problem}"


@dataclass
class Inspection:
    """Every row of a table, as a chat or as the problems that keep it from being one."""

    format: str
    chats: list[Chat | None]
    problems: list[RowProblem] = field(default_factory=list)

    def valid_chats(self) -> list[Chat]:
        return [chat for chat in self.chats if chat is not None]


def detect_format(table: pa.Table) -> str:
    """The format of `table` by its columns; `InvalidTrainingDataError` names them if unknown."""
    columns = [name for name in table.column_names if not name.startswith("_")]
    present = set(columns)
    if "messages" in present:
        return "messages"
    if "conversations" in present:
        return "sharegpt"
    if {"instruction", "output"} <= present:
        return "alpaca"
    if {"prompt", "completion"} <= present:
        return "prompt_completion"
    if {"question", "answer"} <= present:
        return "question_answer"
    if "text" in present:
        return "text"
    raise InvalidTrainingDataError(
        f"unknown training data shape: found columns {columns}; "
        f"expected one of: {' | '.join(_SHAPES)}"
    )


def inspect_rows(table: pa.Table) -> Inspection:
    """Check every row of `table` and normalise the valid ones to chats (in row order).

    Raises `InvalidTrainingDataError` only for what concerns the whole table (an unknown shape,
    a column of the wrong type); row problems are collected in the result.
    """
    shape = detect_format(table)
    builders: dict[str, Callable[[pa.Table], Inspection]] = {
        "messages": _messages_chats,
        "sharegpt": _sharegpt_chats,
        "alpaca": _instruction_chats,
        "prompt_completion": _pair_chats("prompt_completion", "prompt", "completion"),
        "question_answer": _pair_chats("question_answer", "question", "answer"),
        "text": _text_chats,
    }
    return builders[shape](table)


def rows_to_chats(table: pa.Table) -> list[Chat]:
    """Return one chat per row of `table`, in row order; raise at the first bad row."""
    inspection = inspect_rows(table)
    if inspection.problems:
        first = inspection.problems[0]
        raise InvalidTrainingDataError(first.message, row=first.row, field=first.field)
    return inspection.valid_chats()


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


def _pair_chats(
    shape: str, prompt_field: str, answer_field: str
) -> Callable[[pa.Table], Inspection]:
    def build(table: pa.Table) -> Inspection:
        prompts = _strings(table, prompt_field)
        answers = _strings(table, answer_field)
        inspection = Inspection(shape, [])
        for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            problems = [
                *_required(row, prompt_field, prompt),
                *_required(row, answer_field, answer),
            ]
            inspection.problems += problems
            inspection.chats.append(
                None
                if problems
                else [
                    {"role": "user", "content": str(prompt)},
                    {"role": "assistant", "content": str(answer)},
                ]
            )
        return inspection

    return build


def _instruction_chats(table: pa.Table) -> Inspection:
    instructions = _strings(table, "instruction")
    outputs = _strings(table, "output")
    inputs = _strings(table, "input") if "input" in table.column_names else [None] * len(outputs)
    systems = _strings(table, "system") if "system" in table.column_names else [None] * len(outputs)
    inspection = Inspection("alpaca", [])
    for row, (instruction, extra, output, system) in enumerate(
        zip(instructions, inputs, outputs, systems, strict=True)
    ):
        problems = [*_required(row, "instruction", instruction), *_required(row, "output", output)]
        inspection.problems += problems
        if problems:
            inspection.chats.append(None)
            continue
        prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else str(instruction)
        chat = [{"role": "system", "content": system}] if system and system.strip() else []
        chat += [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(output)}]
        inspection.chats.append(chat)
    return inspection


def _text_chats(table: pa.Table) -> Inspection:
    inspection = Inspection("text", [])
    for row, text in enumerate(_strings(table, "text")):
        problems = _required(row, "text", text)
        inspection.problems += problems
        inspection.chats.append(None if problems else [{"role": "assistant", "content": str(text)}])
    return inspection


def _messages_chats(table: pa.Table) -> Inspection:
    return _turn_list_chats(
        table, shape="messages", column="messages", keys=("role", "content"), roles=None
    )


def _sharegpt_chats(table: pa.Table) -> Inspection:
    return _turn_list_chats(
        table,
        shape="sharegpt",
        column="conversations",
        keys=("from", "value"),
        roles=SHAREGPT_ROLES,
    )


def _turn_list_chats(
    table: pa.Table,
    *,
    shape: str,
    column: str,
    keys: tuple[str, str],
    roles: dict[str, str] | None,
) -> Inspection:
    role_key, content_key = keys
    column_type = table.schema.field(column).type
    if not (
        (pa.types.is_list(column_type) or pa.types.is_large_list(column_type))
        and pa.types.is_struct(column_type.value_type)
        and column_type.value_type.get_field_index(role_key) >= 0
        and column_type.value_type.get_field_index(content_key) >= 0
    ):
        raise InvalidTrainingDataError(
            f"field '{column}' must be a list of {{{role_key}, {content_key}}} structs, "
            f"got {column_type}",
            field=column,
        )
    allowed = roles or {role: role for role in ROLES}
    inspection = Inspection(shape, [])
    for row, turns in enumerate(table.column(column).to_pylist()):
        problems, chat = _turns_to_chat(row, column, turns, role_key, content_key, allowed)
        inspection.problems += problems
        inspection.chats.append(None if problems else chat)
    return inspection


def _turns_to_chat(
    row: int,
    column: str,
    turns: list[dict[str, Any] | None] | None,
    role_key: str,
    content_key: str,
    allowed: dict[str, str],
) -> tuple[list[RowProblem], Chat]:
    if not turns:
        return [RowProblem(row, column, "is empty")], []
    problems = []
    chat = []
    for index, turn in enumerate(turns):
        name = f"{column}[{index}]"
        if turn is None:
            problems.append(RowProblem(row, name, "is null"))
            continue
        role = allowed.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            problems.append(
                RowProblem(row, f"{name}.{role_key}", f"is not one of {', '.join(allowed)}")
            )
            continue
        if not isinstance(turn[content_key], str):
            problems.append(RowProblem(row, f"{name}.{content_key}", "is null"))
            continue
        chat.append({"role": role, "content": turn[content_key]})
    if not problems and not any(message["role"] == "assistant" for message in chat):
        problems.append(RowProblem(row, column, "has no assistant turn"))
    return problems, chat


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


def _required(row: int, field: str, value: str | None) -> list[RowProblem]:
    if value is None:
        return [RowProblem(row, field, "is null")]
    if not value.strip():
        return [RowProblem(row, field, "is empty")]
    return []
