"""Text normalisation, so that rows differing only in invisible ways compare equal.

For each string value: line breaks become ``\\n``; control characters other than ``\\n`` and ``\\t``
are removed; the text is put in Unicode NFC; trailing whitespace on each line is removed; runs of
three or more blank lines become two; and the whole value is stripped. Strings nested in list and
struct columns (chat ``messages``, say) are normalised too. All of it runs in pyarrow.compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.steps.base import Transform, data_columns

_LINE_BREAKS = r"\r\n?"
_CONTROL_CHARACTERS = r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}]"
_TRAILING_SPACE = r"(?m)[\t\p{Zs}]+$"
_EXTRA_BLANK_LINES = r"\n{4,}"


def normalize_text(array: pa.Array) -> pa.Array:
    """Normalise every string in ``array``, descending into list and struct values."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _normalize_strings(array)
    if pa.types.is_struct(kind):
        children = [normalize_text(child) for child in array.flatten()]
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
            normalize_text(array.values.slice(start, end - start)),
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
    """Normalise the text of ``columns``, or of every data column holding strings."""

    name = "normalize"
    changes_content = True

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns}

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = self.columns if self.columns is not None else data_columns(batch.schema)
        missing = [name for name in names if name not in batch.schema.names]
        if missing:
            raise CurationError(f"step normalize: no columns named {', '.join(missing)}")
        arrays = list(batch.columns)
        for name in names:
            index = batch.schema.get_field_index(name)
            arrays[index] = normalize_text(arrays[index])
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
