"""Read contributed files into Arrow record batches, one schema per file.

Formats are told by extension (:func:`detect_format`). Every reader yields batches that share one
schema for the whole file, because the writers and the steps downstream need one:

- ``jsonl`` and ``json`` are read in two passes: the first infers a type per column over all rows
  (widening as needed, e.g. int to double, or merging the fields of nested objects), the second
  converts each batch to that schema, so memory stays bounded by the batch size. A column whose
  values disagree in kind (a string here, an object there) becomes a string column holding the
  other values as JSON text, rather than failing the upload.
- ``csv`` types are inferred by pyarrow from the first block; a column that later fails to convert
  is read as strings instead.
- ``parquet`` keeps the file's own schema; ``txt`` gives one ``text`` row per non-blank line
  (of at most :data:`MAX_LINE_BYTES`).
- Folders (:func:`detect_input_format`): ``hf_dataset``, a Hugging Face ``datasets``
  ``save_to_disk`` folder, read from its Arrow stream files with ``pyarrow.ipc`` in the order
  ``state.json`` lists them; ``txt_dir``, one ``text`` row per ``.txt`` file, in the order of
  their paths relative to the folder (row i is the i-th file).

Any malformed input raises :class:`InvalidInputError` naming the file, the line or row, and what is
wrong. Column names starting with ``_`` are reserved for provenance and refused.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from curation.errors import InvalidInputError, UnsupportedFormatError

FORMATS = ("jsonl", "json", "csv", "parquet", "txt")
#: Formats of a folder: a Hugging Face ``datasets`` folder (``save_to_disk``: Arrow files with
#: ``state.json`` and ``dataset_info.json``), or text files, one document per file.
FOLDER_FORMATS = ("hf_dataset", "txt_dir")

_FORMAT_BY_EXTENSION = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "txt",
}
#: The longest line a JSON Lines or text file may have: one document per line, not a dump.
MAX_LINE_BYTES = 16 * 2**20
_SKIPPING_FORMATS = ("jsonl", "txt", "txt_dir")
_TEXT_SCHEMA = pa.schema([pa.field("text", pa.string())])
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)
_CSV_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to (\S+?):")


@dataclass(frozen=True)
class FileSummary:
    """What validating a file found: its format, row count and column names."""

    format: str
    num_rows: int
    columns: list[str]


def detect_format(filename: str) -> str:
    """Return the format of ``filename`` from its extension, one of :data:`FORMATS`."""
    suffix = PurePath(filename).suffix.lower()
    try:
        return _FORMAT_BY_EXTENSION[suffix]
    except KeyError:
        known = ", ".join(sorted(_FORMAT_BY_EXTENSION))
        raise UnsupportedFormatError(
            f"{filename}: unsupported file type {suffix or '(no extension)'!r}; expected one of "
            f"{known}"
        ) from None


def detect_input_format(path: Path) -> str:
    """The format of a file (by extension, :func:`detect_format`) or of a folder.

    A folder with ``state.json`` or ``dataset_info.json`` is a Hugging Face ``datasets`` folder;
    one with ``.txt`` files holds one document per file.
    """
    if not path.is_dir():
        return detect_format(path.name)
    if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
        return "hf_dataset"
    if any(path.rglob("*.txt")):
        return "txt_dir"
    raise UnsupportedFormatError(
        f"{path.name}: a folder must be a Hugging Face datasets folder (state.json) or hold "
        ".txt files"
    )


def read_schema(
    path: Path, *, format: str, source_name: str | None = None, batch_size: int = 10_000
) -> pa.Schema:
    """Return the schema :func:`read_batches` yields for this file.

    For JSON and CSV this reads the whole file (the type of a column can depend on its last row).
    """
    name = source_name or path.name
    _check_format(format, name)
    if format in ("jsonl", "json"):
        return _infer_json_schema(_chunked(_json_rows(path, format, name), batch_size), name)
    if format == "csv":
        return _csv_schema(path, name)
    if format == "parquet":
        file = _parquet_file(path, name)
        file.close()
        schema = file.schema_arrow.remove_metadata()
        _check_column_names(schema.names, name)
        return schema
    if format == "hf_dataset":
        schema = _arrow_schema(path, name)
        _check_column_names(schema.names, name)
        return schema
    return _TEXT_SCHEMA


def read_batches(
    path: Path,
    *,
    format: str,
    batch_size: int = 10_000,
    source_name: str | None = None,
    schema: pa.Schema | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the rows of ``path`` as record batches of at most ``batch_size`` rows.

    ``source_name`` is the name used in error messages (the uploaded file's name; defaults to the
    file name). ``schema``, when given, is the schema to convert to, as returned by
    :func:`read_schema` for this file or one compatible with it; it saves the inference pass.
    ``start`` and ``stop`` select the rows ``start <= row < stop`` (0-based, as
    :func:`count_rows` counts them), so a large file can be read in shards; JSON Lines and text
    skip the rows before ``start`` without parsing them. A file with no rows is an
    :class:`InvalidInputError`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"bad row range {start}..{stop}")
    name = source_name or path.name
    _check_format(format, name)
    num_rows = 0
    position = start if format in _SKIPPING_FORMATS else 0
    for batch in _read(path, format, name, batch_size, schema, start, stop):
        if format not in _SKIPPING_FORMATS and position < start:
            skipped = min(start - position, batch.num_rows)
            batch, position = batch.slice(skipped), position + skipped
        if stop is not None and position + batch.num_rows > stop:
            batch = batch.slice(0, max(stop - position, 0))
        position += batch.num_rows
        num_rows += batch.num_rows
        if batch.num_rows:
            yield batch
        if stop is not None and position >= stop:
            break
    if num_rows == 0 and start == 0:
        raise InvalidInputError(f"{name}: the file has no rows")


def count_rows(path: Path, *, format: str, source_name: str | None = None) -> int:
    """The number of rows :func:`read_batches` yields for ``path``, read as cheaply as it can be.

    Parquet reads its footer; JSON Lines and text count non-blank lines (checking their length and
    encoding); JSON parses the array; CSV reads the file with its inferred types.
    """
    name = source_name or path.name
    _check_format(format, name)
    if format == "txt_dir":
        return len(_text_files(path, name))
    if format in _SKIPPING_FORMATS:
        return sum(1 for _ in _lines(path, name))
    if format == "parquet":
        file = _parquet_file(path, name)
        file.close()
        return int(file.metadata.num_rows)
    if format == "json":
        return sum(1 for _ in _json_array_rows(path, name))
    return sum(batch.num_rows for batch in _read(path, format, name, 1 << 16, None, 0))


def _lines(path: Path, name: str, skip: int = 0) -> Iterator[tuple[int, str | None]]:
    """``(line number, text)`` of each non-blank line, text ``None`` for the first ``skip`` ones.

    Lines longer than :data:`MAX_LINE_BYTES` and lines that are not UTF-8 are refused by number.
    """
    with path.open("rb") as file:
        line_number = 0
        while raw := file.readline(MAX_LINE_BYTES + 1):
            line_number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise InvalidInputError(
                    f"{name} line {line_number}: longer than {MAX_LINE_BYTES // 2**20} MiB; "
                    "is this one document per line?"
                )
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _not_utf8(name, line_number) from None
            if not line.strip():
                continue
            if skip:
                skip -= 1
                yield line_number, None
            else:
                yield line_number, line


def validate_file(path: Path, *, format: str, source_name: str) -> FileSummary:
    """Read all of ``path`` and summarise it; raise :class:`InvalidInputError` if it is invalid."""
    num_rows = 0
    columns: list[str] = []
    for batch in read_batches(path, format=format, source_name=source_name):
        num_rows += batch.num_rows
        columns = batch.schema.names
    return FileSummary(format=format, num_rows=num_rows, columns=columns)


def _read(
    path: Path,
    format: str,
    name: str,
    batch_size: int,
    schema: pa.Schema | None,
    skip: int,
    stop: int | None = None,
) -> Iterator[pa.RecordBatch]:
    if format in ("jsonl", "json"):
        if schema is None:
            schema = read_schema(path, format=format, source_name=name, batch_size=batch_size)
        for rows in _chunked(_json_rows(path, format, name, skip), batch_size):
            yield _rows_to_batch(rows, schema, name)
    elif format == "csv":
        yield from _csv_batches(path, name, batch_size, schema or _csv_schema(path, name))
    elif format == "parquet":
        yield from _parquet_batches(path, name, batch_size, schema)
    elif format == "hf_dataset":
        yield from _arrow_batches(path, name, batch_size, schema)
    elif format == "txt_dir":
        yield from _text_file_batches(path, name, batch_size, skip, stop)
    else:
        yield from _txt_batches(path, name, batch_size, schema, skip)


def _check_format(format: str, name: str) -> None:
    if format not in FORMATS + FOLDER_FORMATS:
        raise UnsupportedFormatError(
            f"{name}: unsupported format {format!r}; expected one of {', '.join(FORMATS)}"
        )


def _check_column_names(names: list[str], name: str) -> None:
    if not names:
        raise InvalidInputError(f"{name}: the file has no columns")
    duplicates = sorted({column for column in names if names.count(column) > 1})
    if duplicates:
        raise InvalidInputError(f"{name}: duplicate column names {', '.join(duplicates)}")
    reserved = [column for column in names if column.startswith("_")]
    if reserved:
        raise InvalidInputError(
            f"{name}: column names starting with '_' are reserved for provenance; rename "
            f"{', '.join(reserved)}"
        )


def _chunked(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _not_utf8(name: str, line: int) -> InvalidInputError:
    return InvalidInputError(f"{name} line {line}: not UTF-8 text (is this a binary file?)")


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


# JSON and JSON Lines


def _json_rows(path: Path, format: str, name: str, skip: int = 0) -> Iterator[dict[str, Any]]:
    return _jsonl_rows(path, name, skip) if format == "jsonl" else _json_array_rows(path, name)


def _jsonl_rows(path: Path, name: str, skip: int = 0) -> Iterator[dict[str, Any]]:
    for line_number, line in _lines(path, name, skip):
        if line is None:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInputError(
                f"{name} line {line_number}: not valid JSON ({error.msg})"
            ) from None
        if not isinstance(value, dict):
            raise InvalidInputError(
                f"{name} line {line_number}: expected a JSON object, got {_json_kind(value)}"
            )
        yield value


def _json_array_rows(path: Path, name: str) -> Iterator[dict[str, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _not_utf8(name, data.count(b"\n", 0, error.start) + 1) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            f"{name} line {error.lineno}: not valid JSON ({error.msg})"
        ) from None
    if not isinstance(value, list):
        kind = "an object" if isinstance(value, dict) else _json_kind(value)
        raise InvalidInputError(f"{name}: expected a JSON array of objects, got {kind}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInputError(
                f"{name} array index {index}: expected a JSON object, got {_json_kind(item)}"
            )
        yield item


def _infer_json_schema(chunks: Iterable[list[dict[str, Any]]], name: str) -> pa.Schema:
    """Infer one type per column over every chunk; ``None`` marks a column kept as JSON text."""
    types: dict[str, pa.DataType | None] = {}
    num_rows = 0
    for rows in chunks:
        num_rows += len(rows)
        for row in rows:
            for key in row:
                if key not in types:
                    types[key] = pa.null()
        for column, known in types.items():
            if known is None:
                continue
            found = _infer_type([row.get(column) for row in rows])
            types[column] = None if found is None else _widen(known, found)
    if num_rows == 0:
        raise InvalidInputError(f"{name}: the file has no rows")
    _check_column_names(list(types), name)
    return pa.schema(
        [pa.field(column, pa.string() if kind is None else kind) for column, kind in types.items()]
    )


def _infer_type(values: list[Any]) -> pa.DataType | None:
    try:
        kind = pa.array(values).type
    except _CONVERSION_ERRORS:
        return None
    return None if _has_empty_struct(kind) else kind


def _has_empty_struct(kind: pa.DataType) -> bool:
    """Parquet cannot store a struct without fields (from ``{}`` values): such columns are text."""
    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(field.type) for field in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_empty_struct(kind.value_type)
    return False


def _widen(known: pa.DataType, found: pa.DataType) -> pa.DataType | None:
    """The type holding both ``known`` and ``found`` values, or ``None`` if there is none."""
    if known.equals(found):
        return known
    try:
        merged = pa.unify_schemas(
            [pa.schema([pa.field("c", known)]), pa.schema([pa.field("c", found)])],
            promote_options="permissive",
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    kind: pa.DataType = merged.field("c").type
    return kind


def _rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema, name: str) -> pa.RecordBatch:
    arrays = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        try:
            arrays.append(pa.array(values, type=field.type))
        except _CONVERSION_ERRORS as error:
            if not pa.types.is_string(field.type):
                raise InvalidInputError(
                    f"{name}: column {field.name!r} holds values that are not {field.type} "
                    f"({error})"
                ) from None
            arrays.append(pa.array(_as_json_text(values), type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _as_json_text(values: list[Any]) -> list[str | None]:
    return [
        value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for value in values
    ]


# CSV


def _open_csv(
    path: Path, name: str, column_types: dict[str, pa.DataType]
) -> pa_csv.CSVStreamingReader:
    try:
        reader = pa_csv.open_csv(
            path,
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(column_types=column_types),
        )
        _ = reader.schema.names  # decodes the header, which may not be UTF-8
        return reader
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise _not_utf8(name, 1) from None
    except (pa.ArrowException, OSError) as error:
        raise _csv_error(path, name, error) from None


def _csv_error(path: Path, name: str, error: Exception) -> InvalidInputError:
    message = str(error)
    if "Expected" in message and "columns, got" in message:
        return InvalidInputError(_ragged_row_message(path, name) or f"{name}: {message}")
    if "invalid UTF8" in message:
        return InvalidInputError(f"{name}: not UTF-8 text (is this a binary file?)")
    if "Empty CSV file" in message:
        return InvalidInputError(f"{name}: the file has no rows")
    return InvalidInputError(f"{name}: not a valid CSV file ({message})")


def _ragged_row_message(path: Path, name: str) -> str | None:
    """Find the first row whose field count differs from the header's, to name its line."""
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return (
                    f"{name} line {reader.line_num}: expected {len(header)} columns "
                    f"as in the header, got {len(row)}"
                )
    return None


def _csv_schema(path: Path, name: str) -> pa.Schema:
    """Infer column types, reading as strings any column that fails to convert past block one."""
    column_types: dict[str, pa.DataType] = {}
    while True:
        reader = _open_csv(path, name, column_types)
        schema = reader.schema
        _check_column_names(schema.names, name)
        try:
            for _ in reader:
                pass
        except (pa.ArrowException, OSError) as error:
            match = _CSV_CONVERSION_ERROR.search(str(error))
            if match is None or match.group(2) == "string":
                raise _csv_error(path, name, error) from None
            column_types[schema.names[int(match.group(1))]] = pa.string()
            continue
        return schema


def _csv_batches(
    path: Path, name: str, batch_size: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    reader = _open_csv(path, name, dict(zip(schema.names, schema.types, strict=True)))
    if set(reader.schema.names) != set(schema.names):
        raise InvalidInputError(
            f"{name}: columns {', '.join(reader.schema.names)} differ from the expected "
            f"{', '.join(schema.names)}"
        )
    try:
        for batch in reader:
            yield from _sliced(batch.select(schema.names).cast(schema), batch_size)
    except (pa.ArrowException, OSError) as error:
        raise _csv_error(path, name, error) from None


def _sliced(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, size):
        yield batch.slice(offset, size)


# Parquet


def _parquet_file(path: Path, name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as error:
        raise InvalidInputError(f"{name}: not a valid Parquet file ({error})") from None


def _parquet_batches(
    path: Path, name: str, batch_size: int, schema: pa.Schema | None
) -> Iterator[pa.RecordBatch]:
    file = _parquet_file(path, name)
    try:
        if schema is None:
            schema = file.schema_arrow.remove_metadata()
            _check_column_names(schema.names, name)
        missing = set(schema.names) - set(file.schema_arrow.names)
        if missing:
            raise InvalidInputError(f"{name}: missing columns {', '.join(sorted(missing))}")
        for batch in file.iter_batches(batch_size=batch_size, columns=schema.names):
            yield batch.select(schema.names).cast(schema)
    except (pa.ArrowException, OSError) as error:
        raise InvalidInputError(f"{name}: corrupt Parquet data ({error})") from None
    finally:
        file.close()


# Plain text


def _txt_batches(
    path: Path, name: str, batch_size: int, schema: pa.Schema | None, skip: int = 0
) -> Iterator[pa.RecordBatch]:
    if schema is not None and not schema.equals(_TEXT_SCHEMA):
        raise InvalidInputError(f"{name}: a text file has only a 'text' column")
    texts: list[str] = []
    for _, line in _lines(path, name, skip):
        if line is None:
            continue
        texts.append(line.rstrip("\r\n"))
        if len(texts) == batch_size:
            yield pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], schema=_TEXT_SCHEMA)
            texts = []
    if texts:
        yield pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], schema=_TEXT_SCHEMA)


# Hugging Face datasets folders


def _arrow_files(path: Path, name: str) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` folder, in the order ``state.json`` lists them."""
    state = path / "state.json"
    if state.is_file():
        try:
            files = json.loads(state.read_text(encoding="utf-8"))["_data_files"]
            found = [path / entry["filename"] for entry in files]
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(
                f"{name}/state.json: not a datasets state file ({error})"
            ) from None
    else:
        found = sorted(path.glob("*.arrow"))
    if not found:
        raise InvalidInputError(f"{name}: the folder has no Arrow files")
    missing = [file.name for file in found if not file.is_file()]
    if missing:
        raise InvalidInputError(f"{name}: state.json lists missing files {', '.join(missing)}")
    return found


def _open_arrow(file: Path, name: str) -> pa.ipc.RecordBatchStreamReader:
    try:
        return pa.ipc.open_stream(pa.memory_map(str(file)))
    except (pa.ArrowException, OSError) as error:
        raise InvalidInputError(f"{name}/{file.name}: not an Arrow stream ({error})") from None


def _arrow_schema(path: Path, name: str) -> pa.Schema:
    schema: pa.Schema = _open_arrow(_arrow_files(path, name)[0], name).schema
    return schema.remove_metadata()


def _arrow_batches(
    path: Path, name: str, batch_size: int, schema: pa.Schema | None
) -> Iterator[pa.RecordBatch]:
    schema = schema or _arrow_schema(path, name)
    for file in _arrow_files(path, name):
        reader = _open_arrow(file, name)
        try:
            for batch in reader:
                batch = batch.select(schema.names).cast(schema)
                yield from _sliced(batch, batch_size)
        except (pa.ArrowException, OSError, KeyError) as error:
            raise InvalidInputError(f"{name}/{file.name}: corrupt Arrow data ({error})") from None


# Folders of text files


def _text_files(path: Path, name: str) -> list[Path]:
    """The ``.txt`` files under ``path``, sorted by their relative path: row i is file i."""
    files = sorted(path.rglob("*.txt"), key=lambda file: file.relative_to(path).as_posix())
    if not files:
        raise InvalidInputError(f"{name}: the folder has no .txt files")
    return files


def _text_file_batches(
    path: Path, name: str, batch_size: int, skip: int, stop: int | None
) -> Iterator[pa.RecordBatch]:
    texts: list[str] = []
    for file in _text_files(path, name)[skip:stop]:
        relative = file.relative_to(path).as_posix()
        if file.stat().st_size > MAX_LINE_BYTES:
            raise InvalidInputError(
                f"{name}/{relative}: longer than {MAX_LINE_BYTES // 2**20} MiB for one document"
            )
        data = file.read_bytes()
        try:
            texts.append(data.decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise _not_utf8(f"{name}/{relative}", line) from None
        if len(texts) == batch_size:
            yield pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], schema=_TEXT_SCHEMA)
            texts = []
    if texts:
        yield pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], schema=_TEXT_SCHEMA)
