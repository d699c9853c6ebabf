"""Errors raised by the curation package.

One base class, so callers can catch everything curation raises in one place::

    CurationError                  a recipe, a step or a run cannot go on
    ├── InvalidInputError          an input file is unreadable or malformed; the message names
    │   │                          the file, the line or row, and what is wrong
    │   └── UnsupportedFormatError the file's format (its extension) is not one we read
    └── InterruptedRunError        a worker died or a task timed out; finished shards are kept,
                                   so running again resumes
"""

from __future__ import annotations


class CurationError(Exception):
    """Base class of every error raised by curation."""


class InvalidInputError(CurationError):
    """An input file cannot be read, e.g. ``upload.jsonl line 3: not valid JSON (...)``."""


class UnsupportedFormatError(InvalidInputError):
    """The file is in a format curation does not read."""


class InterruptedRunError(CurationError):
    """A run stopped for a reason other than its data; running it again resumes it."""
