"""Errors raised by dataset cards.

Hierarchy::

    CardError                 base of every dataset-card error
    ├── InvalidCardError      values given to build a card break the card schema
    └── CardParseError        a rendered card (README.md) cannot be read back;
                              names the line and/or field that is wrong
"""

from __future__ import annotations


class CardError(Exception):
    """Base class of every dataset-card error."""


class InvalidCardError(CardError):
    """The values given to build a card break the card schema; the message names the field."""


class CardParseError(CardError):
    """A rendered card cannot be parsed back; the message names the line or field that is wrong."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.line = line
        self.field = field
