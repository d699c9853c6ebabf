"""Text normalisation, so that rows differing only in invisible ways compare equal.

For each string value: line breaks become ``\\n``; control characters other than ``\\n`` and ``\\t``
are removed; the text is put in Unicode NFC; trailing whitespace on each line is removed; runs of
three or more blank lines become two; and the whole value is stripped. Strings nested in list and
struct columns (chat ``messages``, say) are normalised too. All of it runs in pyarrow.compute.

Optionally, traditional Chinese characters become simplified ones (OpenCC's ``t2s`` tables, as
packaged by ``opencc-python-reimplemented``); only values holding Han characters are converted,
character by character and phrase by phrase as OpenCC's dictionaries say.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.steps.base import Transform, data_columns

_LINE_BREAKS = r"\r\n?"
_CONTROL_CHARACTERS = r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}]"
_TRAILING_SPACE = r"(?m)[\t\p{Zs}]+$"
_EXTRA_BLANK_LINES = r"\n{4,}"
_HAN = r"\p{Han}"


class _Converter(Protocol):
    def convert(self, text: str) -> str: ...


@cache
def _traditional_to_simplified() -> _Converter:
    import opencc

    converter: _Converter = opencc.OpenCC("t2s")
    return converter


def to_simplified_chinese(array: pa.Array) -> pa.Array:
    """Convert traditional Chinese characters in a string array to simplified ones."""
    has_han = pc.fill_null(pc.match_substring_regex(array, _HAN), False)
    if not pc.any(has_han).as_py():
        return array
    converter = _traditional_to_simplified()
    values = [
        converter.convert(value) if convert else value
        for value, convert in zip(array.to_pylist(), has_han.to_pylist(), strict=True)
    ]
    return pa.array(values, array.type)


def normalize_text(array: pa.Array, *, to_simplified: bool = False) -> pa.Array:
    """Normalise every string in ``array``, descending into list and struct values.

    With ``to_simplified``, traditional Chinese characters also become simplified ones.
    """
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _normalize_strings(array)
        return to_simplified_chinese(text) if to_simplified else text
    if pa.types.is_struct(kind):
        children = [normalize_text(child, to_simplified=to_simplified) for child in array.flatten()]
        return pa.StructArray.from_arrays(
            children, fields=list(kind), mask=array.is_null() if array.null_count else None
        )
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        # Rebase the offsets to zero: pyarrow cannot build a list from sliced offsets and a mask.
        offsets = array.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        list_class = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        return list_class.from_arrays(
            pc.subtract(offsets, offsets[0]),
            normalize_text(array.values.slice(start, end - start), to_simplified=to_simplified),
            type=kind,
            mask=array.is_null() if array.null_count else None,
        )
    return array


def _normalize_strings(array: pa.Array) -> pa.Array:
    text = pc.replace_substring_regex(array, pattern=_LINE_BREAKS, replacement="\n")
    text = pc.replace_substring_regex(text, pattern=_CONTROL_CHARACTERS, replacement="")
    text = pc.utf8_normalize(text, form="NFC")
    text = pc.replace_substring_regex(text, pattern=_TRAILING_SPACE, replacement="")
    text = pc.replace_substring_regex(text, pattern=_EXTRA_BLANK_LINES, replacement="\n\n\n")
    return pc.utf8_trim_whitespace(text)


class Normalize(Transform):
    """Normalise the text of ``columns``, or of every data column holding strings.

    ``to_simplified`` also converts traditional Chinese characters to simplified ones.
    """

    name = "normalize"
    changes_content = True

    def __init__(
        self, columns: Sequence[str] | None = None, *, to_simplified: bool = False
    ) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None
        self.to_simplified = to_simplified

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, "to_simplified": self.to_simplified}

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = self.columns if self.columns is not None else data_columns(batch.schema)
        missing = [name for name in names if name not in batch.schema.names]
        if missing:
            raise CurationError(f"step normalize: no columns named {', '.join(missing)}")
        arrays = list(batch.columns)
        for name in names:
            index = batch.schema.get_field_index(name)
            arrays[index] = normalize_text(arrays[index], to_simplified=self.to_simplified)
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
