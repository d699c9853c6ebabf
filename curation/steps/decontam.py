"""Benchmark decontamination: drop rows sharing an n-gram with a benchmark's items.

Text is compared as lower-cased word tokens (split on anything but letters, digits and marks), or
as characters (letters and digits) for CJK text, in n-grams of ``ngram`` words (13, as GPT-3 and
most decontamination reports use) or ``char_ngram`` characters. A benchmark item shorter than n
contributes its whole token sequence, which a row must contain to match it. A row sharing at
least ``min_matches`` n-grams with one benchmark item is contaminated and dropped, with the reason
``contaminated: <benchmark> item <id> (<k> shared n-grams)``.

Benchmarks are files the operator names (any format :mod:`curation.readers` reads) with the
fields holding the items' text; each field is indexed apart, so no n-gram spans two fields. An
item's id is its 0-based row in the file, or the value of ``id_field``. The step's details give,
per benchmark, the rows checked, the rows contaminated and the items hit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.readers import detect_format, read_batches
from curation.steps.base import Filter
from curation.steps.shingles import I64, U64, Tokenizer, characters, ngrams
from curation.steps.text import CJK_CLASS, text_of

REASON_PREFIX = "contaminated"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark file to check against: its name, path, text fields and optional id field."""

    name: str
    path: Path
    fields: tuple[str, ...]
    id_field: str | None = None
    format: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Benchmark:
        """From a recipe's ``{name, path, fields, id_field?, format?}`` mapping."""
        unknown = sorted(set(spec) - {"name", "path", "fields", "id_field", "format"})
        if unknown:
            raise CurationError(f"benchmark {spec!r}: unknown keys {', '.join(unknown)}")
        try:
            path = Path(spec["path"])
            fields = spec["fields"]
        except KeyError as missing:
            raise CurationError(f"benchmark {spec!r}: {missing.args[0]!r} is required") from None
        if isinstance(fields, str):
            fields = [fields]
        if not fields or not all(isinstance(name, str) for name in fields):
            raise CurationError(f"benchmark {spec!r}: 'fields' must name the text fields")
        return cls(
            name=str(spec.get("name") or path.stem),
            path=path,
            fields=tuple(fields),
            id_field=spec.get("id_field"),
            format=spec.get("format"),
        )

    def items(self) -> Iterable[tuple[str, list[str]]]:
        """Each item's id and the texts of its fields, read from the file."""
        if not self.path.is_file():
            raise CurationError(f"benchmark {self.name}: no file at {self.path}")
        file_format = self.format or detect_format(self.path.name)
        row = 0
        for batch in read_batches(self.path, format=file_format, source_name=self.path.name):
            missing = [name for name in self.fields if name not in batch.schema.names]
            if self.id_field and self.id_field not in batch.schema.names:
                missing.append(self.id_field)
            if missing:
                raise CurationError(
                    f"benchmark {self.name}: {self.path.name} has no fields {', '.join(missing)}"
                )
            texts = [text_of(batch, [name], "decontaminate").to_pylist() for name in self.fields]
            ids = batch.column(self.id_field).to_pylist() if self.id_field else None
            for index in range(batch.num_rows):
                item_id = str(ids[index]) if ids is not None else str(row)
                yield item_id, [column[index] for column in texts]
                row += 1


@dataclass
class _Grams:
    """Sorted n-gram hashes of one size, with the (benchmark, item) index of each."""

    hashes: U64
    items: I64


@dataclass
class BenchmarkIndex:
    """The n-grams of benchmark items, to look rows up in.

    Build it with :meth:`add` (or :meth:`from_benchmarks`), then call :meth:`matches` on rows'
    texts. ``ngram`` and ``char_ngram`` are the n-gram sizes for word and CJK text.
    """

    ngram: int = 13
    char_ngram: int = 13
    benchmarks: list[str] = field(default_factory=list)
    item_ids: list[tuple[int, str]] = field(default_factory=list)
    _pending: dict[tuple[bool, int], list[tuple[U64, I64]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _grams: dict[tuple[bool, int], _Grams] = field(default_factory=dict)
    _tokenizer: Tokenizer = field(default_factory=lambda: Tokenizer(split_on_punctuation=True))

    @classmethod
    def from_benchmarks(
        cls, benchmarks: Sequence[Benchmark], *, ngram: int = 13, char_ngram: int = 13
    ) -> BenchmarkIndex:
        index = cls(ngram=ngram, char_ngram=char_ngram)
        for benchmark in benchmarks:
            index.add(benchmark.name, benchmark.items())
        return index

    def item_counts(self) -> dict[str, int]:
        """How many items each benchmark has."""
        counts = Counter(self.benchmarks[owner] for owner, _ in self.item_ids)
        return {name: counts[name] for name in self.benchmarks}

    def add(self, benchmark: str, items: Iterable[tuple[str, list[str]]]) -> None:
        """Index ``items`` (id and field texts) of ``benchmark``."""
        if benchmark in self.benchmarks:
            raise CurationError(f"benchmark {benchmark} is indexed twice")
        self.benchmarks.append(benchmark)
        owner = len(self.benchmarks) - 1
        texts: list[str] = []
        text_items: list[int] = []
        for item_id, fields in items:
            self.item_ids.append((owner, item_id))
            for text in fields:
                if text:
                    texts.append(text)
                    text_items.append(len(self.item_ids) - 1)
            if len(texts) >= 10_000:
                self._add_texts(texts, text_items)
                texts, text_items = [], []
        if texts:
            self._add_texts(texts, text_items)
        self._grams = {}

    def _add_texts(self, texts: list[str], text_items: list[int]) -> None:
        tokens, owners, is_cjk = self._tokenizer.tokens(pa.array(texts, pa.string()))
        lengths = np.bincount(owners, minlength=len(texts))
        # A text gives its n-grams, or one gram of all its tokens when it is shorter than n.
        sizes = np.minimum(np.where(is_cjk, self.char_ngram, self.ngram), lengths)
        items = np.asarray(text_items, np.int64)
        for cjk in (False, True):
            for size in np.unique(sizes[is_cjk == cjk]).tolist():
                chosen = (sizes == size) & (is_cjk == cjk)
                if size == 0 or not chosen.any():
                    continue
                mask = chosen[owners]
                grams, gram_owners = ngrams(
                    tokens[mask], owners[mask], size, whole_if_shorter=False
                )
                self._pending[(cjk, size)].append((grams, items[gram_owners]))

    def _index(self) -> dict[tuple[bool, int], _Grams]:
        if not self._grams and self._pending:
            for key, parts in self._pending.items():
                hashes = np.concatenate([part[0] for part in parts])
                items = np.concatenate([part[1] for part in parts])
                order = np.argsort(hashes, kind="stable")
                self._grams[key] = _Grams(hashes[order], items[order])
        return self._grams

    def matches(self, texts: pa.Array) -> list[Counter[int]]:
        """For each text, how many of its n-grams each matching benchmark item shares."""
        found: list[Counter[int]] = [Counter() for _ in range(len(texts))]
        index = self._index()
        if not index:
            return found
        texts = pc.fill_null(texts.cast(pa.string()), "")
        tokens, owners, is_cjk = self._tokenizer.tokens(texts)
        words = ~is_cjk[owners]
        tokens, owners = tokens[words], owners[words]
        # Rows with any CJK text are also read as characters: a Chinese item can sit in a row that
        # is mostly code or English.
        with_cjk = np.flatnonzero(pc.match_substring_regex(texts, CJK_CLASS).to_numpy(False))
        letters, letter_owners = characters(pc.utf8_lower(texts.take(with_cjk)))
        letter_owners = with_cjk[letter_owners]
        for (cjk, size), grams in index.items():
            row_grams, row_owners = ngrams(
                letters if cjk else tokens,
                letter_owners if cjk else owners,
                size,
                whole_if_shorter=False,
            )
            hit = np.isin(row_grams, grams.hashes)
            if not hit.any():
                continue
            row_grams, row_owners = row_grams[hit], row_owners[hit]
            low = np.searchsorted(grams.hashes, row_grams, "left")
            high = np.searchsorted(grams.hashes, row_grams, "right")
            for row, start, stop in zip(
                row_owners.tolist(), low.tolist(), high.tolist(), strict=True
            ):
                found[row].update(set(grams.items[start:stop].tolist()))
        return found


class Decontaminate(Filter):
    """Drop rows sharing n-grams with the items of the given benchmark files.

    ``benchmarks`` is a list of ``{name, path, fields, id_field?, format?}``; ``columns`` are the
    rows' text columns (default: all); ``ngram``, ``char_ngram`` and ``min_matches`` are as the
    module describes.
    """

    name = "decontaminate"

    def __init__(
        self,
        benchmarks: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
        ngram: int = 13,
        char_ngram: int = 13,
        min_matches: int = 1,
    ) -> None:
        super().__init__()
        if ngram < 1 or char_ngram < 1 or min_matches < 1:
            raise CurationError(
                f"step {self.name}: ngram, char_ngram and min_matches must be at least 1"
            )
        if not benchmarks:
            raise CurationError(f"step {self.name}: name at least one benchmark file")
        self.benchmarks = [Benchmark.from_spec(spec) for spec in benchmarks]
        names = [benchmark.name for benchmark in self.benchmarks]
        if len(set(names)) != len(names):
            raise CurationError(f"step {self.name}: benchmark names repeat: {', '.join(names)}")
        self.columns = list(columns) if columns is not None else None
        self.ngram = ngram
        self.char_ngram = char_ngram
        self.min_matches = min_matches
        self._index: BenchmarkIndex | None = None
        self._rows_contaminated: Counter[str] = Counter()
        self._items_hit: dict[str, set[str]] = defaultdict(set)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "benchmarks": [
                {
                    "name": benchmark.name,
                    "path": str(benchmark.path),
                    "fields": list(benchmark.fields),
                    "id_field": benchmark.id_field,
                    "format": benchmark.format,
                }
                for benchmark in self.benchmarks
            ],
            "columns": self.columns,
            "ngram": self.ngram,
            "char_ngram": self.char_ngram,
            "min_matches": self.min_matches,
        }

    @property
    def index(self) -> BenchmarkIndex:
        """The benchmarks' n-gram index, read from their files on first use."""
        if self._index is None:
            self._index = BenchmarkIndex.from_benchmarks(
                self.benchmarks, ngram=self.ngram, char_ngram=self.char_ngram
            )
        return self._index

    @property
    def details(self) -> dict[str, Any]:
        """Per benchmark: its items, the rows checked and contaminated, and the items hit."""
        if self._index is None:
            return {}
        counts = self._index.item_counts()
        return {
            "benchmarks": {
                name: {
                    "items": counts[name],
                    "rows_checked": self.stats.rows_in,
                    "rows_contaminated": self._rows_contaminated[name],
                    "items_hit": _sorted_ids(self._items_hit[name]),
                }
                for name in self._index.benchmarks
            }
        }

    def merge_details(self, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        merged: dict[str, dict[str, Any]] = {}
        for part in parts:
            for name, found in part.get("benchmarks", {}).items():
                total = merged.setdefault(
                    name,
                    {"items": found["items"], "rows_checked": 0, "rows_contaminated": 0},
                )
                total.setdefault("hit", set())
                total["rows_checked"] += found["rows_checked"]
                total["rows_contaminated"] += found["rows_contaminated"]
                total["hit"].update(found["items_hit"])
        if not merged:
            return {}
        return {
            "benchmarks": {
                name: {
                    "items": total["items"],
                    "rows_checked": total["rows_checked"],
                    "rows_contaminated": total["rows_contaminated"],
                    "items_hit": _sorted_ids(total["hit"]),
                }
                for name, total in merged.items()
            }
        }

    def reason_key(self, reason: str) -> str:
        return reason.split(" item ", 1)[0]

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        index = self.index
        reasons: list[str | None] = []
        for shared in index.matches(text_of(batch, self.columns, self.name)):
            hits = [(count, item) for item, count in shared.items() if count >= self.min_matches]
            if not hits:
                reasons.append(None)
                continue
            by_benchmark: dict[str, list[tuple[int, str]]] = defaultdict(list)
            for count, item in hits:
                owner, item_id = index.item_ids[item]
                by_benchmark[index.benchmarks[owner]].append((count, item_id))
            for name, found in by_benchmark.items():
                self._rows_contaminated[name] += 1
                self._items_hit[name].update(item_id for _, item_id in found)
            count, item = max(hits, key=lambda hit: (hit[0], -hit[1]))
            owner, item_id = index.item_ids[item]
            reasons.append(
                f"{REASON_PREFIX}: {index.benchmarks[owner]} item {item_id} "
                f"({count} shared n-grams)"
            )
        return pa.array([reason is None for reason in reasons], pa.bool_()), reasons


def _sorted_ids(ids: set[str]) -> list[str]:
    """Ids in numeric order when they are row numbers, else in text order after them."""
    return sorted(ids, key=lambda value: (not value.isdigit(), value.zfill(20)))
