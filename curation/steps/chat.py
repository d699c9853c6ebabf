"""Instruction and chat data: three common layouts into one ``messages`` column, then checked.

Layouts (``format``; ``auto`` tells them by their columns):

- ``alpaca``: ``instruction``, ``input``, ``output`` and optionally ``system``. The user turn is
  the instruction, and the input after a line break when there is one; the answer is the output.
- ``sharegpt``: ``conversations``, a list of ``{from, value}`` with ``from`` one of ``human``,
  ``gpt`` or ``system`` (``user`` and ``assistant`` are taken too).
- ``messages``: a list of ``{role, content}`` with roles ``system``, ``user``, ``assistant``.

Every row comes out with ``messages``, a list of ``{role, content}``, in place of the layout's
columns (other data columns stay). A row is dropped, with the rule it breaks, unless: an optional
system turn comes first and then user and assistant turns alternate, starting with the user and
ending with the assistant; no turn is empty; it has at most ``max_messages`` turns of at most
``max_chars`` characters each; and it does not repeat an earlier row's ``unique`` fields:
``prompt`` (the first user turn), ``answer`` (the last assistant turn) or ``conversation`` (all
turns), compared case- and whitespace-insensitively; a repeat's reason names the content hash of
the row it repeats.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import CONTENT_HASH_COLUMN, Filter

FORMATS = ("auto", "alpaca", "sharegpt", "messages")
UNIQUE_FIELDS = ("prompt", "answer", "conversation")
MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)
MESSAGES_COLUMN = "messages"

_ALPACA_COLUMNS = ("instruction", "input", "output", "system")
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_SPACES = re.compile(r"\s+")


def _layout_columns(layout: str) -> tuple[str, ...]:
    return {
        "alpaca": _ALPACA_COLUMNS,
        "sharegpt": ("conversations",),
        "messages": (MESSAGES_COLUMN,),
    }[layout]


def detect_layout(schema: pa.Schema) -> str:
    """The layout of rows with ``schema``: ``alpaca``, ``sharegpt`` or ``messages``."""
    names = set(schema.names)
    if MESSAGES_COLUMN in names:
        return "messages"
    if "conversations" in names:
        return "sharegpt"
    if {"instruction", "output"} <= names:
        return "alpaca"
    raise CurationError(
        "step chat_format: cannot tell the layout from the columns "
        f"{', '.join(schema.names)}; expected instruction/output (alpaca), conversations "
        "(sharegpt) or messages"
    )


def to_messages(row: dict[str, Any], layout: str) -> list[dict[str, str]]:
    """One row's turns as ``[{role, content}]``; unknown roles are kept for validation to name."""
    if layout == "alpaca":
        prompt = str(row.get("instruction") or "")
        extra = str(row.get("input") or "")
        if extra.strip():
            prompt = f"{prompt}\n{extra}"
        turns = [{"role": "user", "content": prompt}]
        turns.append({"role": "assistant", "content": str(row.get("output") or "")})
        system = str(row.get("system") or "")
        return [{"role": "system", "content": system}, *turns] if system.strip() else turns
    if layout == "sharegpt":
        turns = row.get("conversations") or []
        return [
            {
                "role": _SHAREGPT_ROLES.get(str(turn.get("from")), str(turn.get("from"))),
                "content": str(turn.get("value") or ""),
            }
            for turn in turns
            if isinstance(turn, dict)
        ]
    turns = row.get(MESSAGES_COLUMN) or []
    return [
        {"role": str(turn.get("role")), "content": str(turn.get("content") or "")}
        for turn in turns
        if isinstance(turn, dict)
    ]


def check_messages(
    messages: list[dict[str, str]], *, max_messages: int, max_chars: int
) -> str | None:
    """The first rule ``messages`` break, or None: order of roles, emptiness, length limits."""
    if not messages:
        return "no messages"
    if len(messages) > max_messages:
        return f"messages {len(messages)} > {max_messages}"
    start = 1 if messages[0]["role"] == "system" else 0
    turns = messages[start:]
    if not turns:
        return "no user message"
    for position, message in enumerate(turns):
        expected = "user" if position % 2 == 0 else "assistant"
        if message["role"] != expected:
            return f"message {start + position + 1} is from {message['role']}, expected {expected}"
    if turns[-1]["role"] != "assistant":
        return "no answer to the last user message"
    for position, message in enumerate(messages, start=1):
        content = message["content"]
        if not content.strip():
            what = "answer" if message["role"] == "assistant" else f"{message['role']} message"
            return f"empty {what}"
        if len(content) > max_chars:
            return f"message {position} has {len(content)} characters > {max_chars}"
    return None


def _key(text: str) -> str:
    folded = _SPACES.sub(" ", text).strip().casefold()
    return hashlib.blake2b(folded.encode(), digest_size=16).hexdigest()


class ChatFormat(Filter):
    """Convert instruction or chat rows to ``messages`` and drop the malformed and the repeated."""

    name = "chat_format"
    row_local = False
    changes_content = True

    def __init__(
        self,
        format: str = "auto",
        *,
        max_messages: int = 64,
        max_chars: int = 32_768,
        unique: Sequence[str] = ("prompt",),
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise CurationError(
                f"step {self.name}: unknown format {format!r}; known: {', '.join(FORMATS)}"
            )
        unknown = sorted(set(unique) - set(UNIQUE_FIELDS))
        if unknown:
            raise CurationError(
                f"step {self.name}: cannot keep {', '.join(unknown)} unique; choose from "
                f"{', '.join(UNIQUE_FIELDS)}"
            )
        if max_messages < 2 or max_chars < 1:
            raise CurationError(f"step {self.name}: max_messages >= 2 and max_chars >= 1, please")
        self.format = format
        self.max_messages = max_messages
        self.max_chars = max_chars
        self.unique = list(unique)
        self._seen: dict[str, dict[str, str]] = {field: {} for field in self.unique}
        self._pending: list[str | None] = []

    @property
    def params(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "max_messages": self.max_messages,
            "max_chars": self.max_chars,
            "unique": self.unique,
        }

    def reason_key(self, reason: str) -> str:
        if reason.startswith(f"{self.name}: same "):
            return reason.split(" as ", 1)[0]
        return re.sub(r"\d+", "N", reason)

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return super().run(self._convert(batch) for batch in batches)

    def _convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        layout = detect_layout(batch.schema) if self.format == "auto" else self.format
        consumed = [name for name in _layout_columns(layout) if name in batch.schema.names]
        required = {"instruction", "output"} if layout == "alpaca" else set(_layout_columns(layout))
        if not required <= set(consumed):
            raise CurationError(
                f"step {self.name}: {layout} rows need the columns {', '.join(sorted(required))}"
            )
        rows = batch.select(consumed).to_pylist()
        hashes = batch.column(CONTENT_HASH_COLUMN).to_pylist()
        conversations = [to_messages(row, layout) for row in rows]
        self._pending = [
            self._judge(messages, row_hash)
            for messages, row_hash in zip(conversations, hashes, strict=True)
        ]
        kept = [name for name in batch.schema.names if name not in consumed]
        return pa.RecordBatch.from_arrays(
            [pa.array(conversations, MESSAGES_TYPE), *(batch.column(name) for name in kept)],
            names=[MESSAGES_COLUMN, *kept],
        )

    def _judge(self, messages: list[dict[str, str]], row_hash: str) -> str | None:
        problem = check_messages(messages, max_messages=self.max_messages, max_chars=self.max_chars)
        if problem:
            return f"{self.name}: {problem}"
        start = 1 if messages[0]["role"] == "system" else 0
        values = {
            "prompt": messages[start]["content"],
            "answer": messages[-1]["content"],
            "conversation": "\n".join(f"{m['role']}: {m['content']}" for m in messages),
        }
        keys = {field: _key(values[field]) for field in self.unique}
        for field, key in keys.items():
            first = self._seen[field].get(key)
            if first is not None:
                return f"{self.name}: same {field} as {first}"
        for field, key in keys.items():
            self._seen[field][key] = row_hash
        return None

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        reasons, self._pending = self._pending, []
        return pa.array([reason is None for reason in reasons], pa.bool_()), reasons
