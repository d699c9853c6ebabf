"""Text helpers the steps share: which text of a row a step reads, words, sentences, CJK share.

Steps read text from their configured columns, or by default from every data column holding
strings; strings nested in lists and structs (chat ``messages``) count too, joined by newlines.
The word tokeniser stands in for NLTK's Treebank ``word_tokenize`` that datatrove's filters use
(which needs a punkt model download): words keep inner hyphens, apostrophes and dots
(``well-known``, ``U.S.``), contractions split as Treebank splits them (``do`` ``n't``, ``John``
``'s``), and each run of other symbols is a token of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.steps.base import data_columns

#: Han, kana: scripts written without spaces between words (RE2 syntax, for pyarrow.compute).
CJK_CLASS = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
#: The same for Python's ``re`` (which has no ``\p``).
CJK_RANGES = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff\U00030000-\U0003134f"
)
CJK_CHARACTER = re.compile(f"[{CJK_RANGES}]")
#: A document is handled as CJK text when this share of its visible characters are CJK.
CJK_DOCUMENT_SHARE = 0.3

_WORD_TOKEN = re.compile(
    r"""
    \w+(?=n't\b)            # "do" of "don't"
    | \w+(?='(?:s|m|d|ll|re|ve)\b)  # "it" of "it's"
    | n't\b
    | '(?:s|m|d|ll|re|ve)\b # clitics split off as Treebank does
    | \w+(?:[-'.]\w+)*      # words with inner hyphens, apostrophes, dots
    | \.\.\.|[^\w\s]        # an ellipsis, or one symbol
    """,
    re.VERBOSE | re.IGNORECASE,
)
_SPACES = (" ", "\n", "\t", "\r", "\u3000")
_SPEAKER_KEYS = frozenset({"role", "from"})
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[\u3002\uff01\uff1f])")


def string_columns(schema: pa.Schema) -> list[str]:
    """The data columns of ``schema`` that hold text: strings, or lists and structs of them."""
    return [name for name in data_columns(schema) if _holds_strings(schema.field(name).type)]


def text_of(batch: pa.RecordBatch, columns: Sequence[str] | None, step: str) -> pa.StringArray:
    """Each row's text in ``columns`` (default: :func:`string_columns`), joined by newlines.

    Nulls count as empty text; nested strings are joined by newlines in order, leaving out the
    speaker of a chat turn (``role``, ``from``), which is a label rather than text.
    """
    names = list(columns) if columns is not None else string_columns(batch.schema)
    missing = [name for name in names if name not in batch.schema.names]
    if missing:
        raise CurationError(f"step {step}: no columns named {', '.join(missing)}")
    parts: list[pa.Array] = []
    for name in names:
        column = batch.column(name)
        if pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        if not pa.types.is_string(column.type):
            if not _holds_strings(column.type):
                raise CurationError(f"step {step}: column {name} holds {column.type}, not text")
            column = pa.array(
                ["\n".join(_strings_in(value)) for value in column.to_pylist()], pa.string()
            )
        parts.append(pc.fill_null(column, ""))
    if not parts:
        return pa.array([""] * batch.num_rows, pa.string())
    if len(parts) == 1:
        return parts[0]
    joined: pa.StringArray = pc.binary_join_element_wise(*parts, "\n")
    return joined


def word_tokens(text: str) -> list[str]:
    """The words and symbols of ``text``, close to NLTK's ``word_tokenize``."""
    return _WORD_TOKEN.findall(text)


def sentences(text: str) -> list[str]:
    """``text`` cut after ``.!?`` before a capital or a digit, and after CJK full stops."""
    return [part for part in _SENTENCE_END.split(text) if part.strip()]


def cjk_shares(texts: pa.Array) -> npt.NDArray[np.float64]:
    """For each text, the share of its characters, other than spaces and line breaks, that are CJK.

    Only texts with enough multi-byte characters to reach the threshold are scanned: a CJK
    character takes at least three bytes in UTF-8.
    """
    texts = pc.fill_null(texts, "")
    characters = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.float64)
    blank = sum(
        pc.count_substring(texts, space).to_numpy(zero_copy_only=False) for space in _SPACES
    )
    visible = characters - blank
    extra_bytes = pc.binary_length(texts).to_numpy(zero_copy_only=False) - characters
    shares = np.zeros(len(texts), np.float64)
    candidates = np.flatnonzero((extra_bytes >= 2 * CJK_DOCUMENT_SHARE * visible) & (visible > 0))
    if len(candidates):
        cjk = pc.count_substring_regex(texts.take(candidates), CJK_CLASS)
        shares[candidates] = cjk.to_numpy(zero_copy_only=False) / visible[candidates]
    return shares


def _holds_strings(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_holds_strings(field.type) for field in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _holds_strings(kind.value_type)
    return False


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            text
            for key, item in value.items()
            if key not in _SPEAKER_KEYS
            for text in _strings_in(item)
        ]
    if isinstance(value, list):
        return [text for item in value for text in _strings_in(item)]
    return []
