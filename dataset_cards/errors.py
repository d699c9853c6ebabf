"""Errors raised by dataset cards.

Hierarchy::

    CardError                 base of every dataset-card error
    ├── InvalidCardError      values given to build or change a card break the card schema;
    │                         names the field
    ├── ReadOnlyFieldError    a change touches a field the changer may not set (a machine fact
    │                         such as a row count, a size, a file or a hash); names the field
    ├── CardParseError        a rendered card (README.md, croissant.json, card JSON) cannot be
    │                         read back; names the line, field or JSON path that is wrong
    ├── CardNotFoundError     no such dataset version or card revision
    └── CardConflictError     another revision of the same card was recorded concurrently
"""

from __future__ import annotations


class CardError(Exception):
    """Base class of every dataset-card error."""


class InvalidCardError(CardError):
    """The values given to build a card break the card schema; the message names the field."""


class ReadOnlyFieldError(CardError):
    """A change touches a field its author may not set; the message names the field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


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


class CardNotFoundError(CardError):
    """No such dataset version, or no such revision of its card."""


class CardConflictError(CardError):
    """Another revision of the card was recorded at the same time; retrying is safe."""
