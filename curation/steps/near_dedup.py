"""Near-duplicate removal: MinHash signatures, LSH bands, clusters by union-find, keep the first.

A document's shingles are its word n-grams (default 2) after simplification (lower case, digit runs
as ``0``, punctuation stripped from the ends of words), or its character n-grams (letters and
digits only, default 3) when it is CJK text (see :data:`~curation.steps.text.CJK_DOCUMENT_SHARE`);
a document shorter than n has one shingle of all its tokens. Each shingle's hash x (31 bits) goes
through ``bands * rows_per_band`` universal hash functions ``(a * x + b) mod (2**31 - 1)``,
computed exactly in uint64 with Mersenne folding, and the signature keeps each function's minimum.
Two documents become candidates with probability ``1 - (1 - J**rows)**bands`` for Jaccard
similarity J of their shingle sets. Documents sharing a band's key are candidates; with
``min_similarity`` a candidate pair is joined only if the share of equal MinHash values (an
estimate of J) reaches it. The connected components of joined pairs are the clusters, each
resolved to its first document in source order, which is kept; the others are dropped as
``near duplicate of <content hash of the kept row>``.

The default (:class:`MinHashConfig` and :data:`DEFAULT_MIN_SIMILARITY`) is word 2-grams, 56 bands
of 2 rows (112 hashes), candidates checked at an estimated J >= 0.3. It was chosen by
``bench/near_dedup_accuracy.py`` (see ``docs/benchmarks.md``) on 200,000 documents of real prose
with planted copies whose words are edited at 5-30 % (half also with sentences reordered): an
edit rate e leaves about ``(1 - e)**n`` of the n-grams, so at 30 % a copy keeps half its 2-grams
(J ~ 0.3) but a sixth of its 5-grams (J ~ 0.1). Datatrove's default, :data:`DATATROVE_CONFIG`
(5-grams, 14 bands of 8 rows, every candidate joined; candidates from J ~ 0.72 on), finds only
copies with a few percent of words changed (F1 0.02 there); 2-grams with 56 x 2 find 97 % of
the copies (F1 0.98), and the check keeps the many chance candidates of common word pairs from
chaining unrelated documents into clusters (unchecked, 2-grams glued all but a few of 20,000
documents into one cluster). It computes as many hashes as datatrove's; with the candidate
pairs to check and cluster, hashing and clustering took 1.6 times the CPU time of datatrove's
configuration in that benchmark.
Datatrove's configuration stays available by naming its values (``ngram: 5, char_ngram: 5,
bands: 14, rows_per_band: 8, min_similarity: null``), as the side-by-side benchmark does.

The work splits in two so that shards can be processed apart: :class:`MinHasher` turns one
shard's texts into :class:`ShardSignatures` (band keys and content hashes, storable as an Arrow
table), and :func:`find_near_duplicates` takes every shard's signatures and returns what to drop.
The :class:`NearDedup` step does both within one run, so it holds the run's batches until it has
seen the last one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import CONTENT_HASH_COLUMN, Filter
from curation.steps.shingles import I64, U64, Tokenizer, mix64, ngrams, stable_hash
from curation.steps.text import text_of

U32 = npt.NDArray[np.uint32]

MERSENNE_PRIME = (1 << 31) - 1
DUPLICATE_REASON = "near duplicate"

_P = np.uint64(MERSENNE_PRIME)
_SHIFT_31 = np.uint64(31)
_SHIFT_33 = np.uint64(33)
# Shingles hashed per block: a block's working set is this times the number of hash functions.
_BLOCK = 2048


@dataclass(frozen=True)
class MinHashConfig:
    """Shingle sizes and the LSH layout; equal configs give equal signatures on every machine."""

    ngram: int = 2
    char_ngram: int = 3
    bands: int = 56
    rows_per_band: int = 2
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("ngram", "char_ngram", "bands", "rows_per_band"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise CurationError(f"near dedup: {name} must be a positive integer, not {value!r}")

    @property
    def num_hashes(self) -> int:
        return self.bands * self.rows_per_band

    @property
    def threshold(self) -> float:
        """The Jaccard similarity at which two documents become candidates half the time."""
        return float((1 / self.bands) ** (1 / self.rows_per_band))


#: Datatrove's defaults (5-grams, 14 bands of 8 rows), which join every candidate pair.
DATATROVE_CONFIG = MinHashConfig(ngram=5, char_ngram=5, bands=14, rows_per_band=8)
#: The estimated Jaccard similarity a candidate pair needs, by default, to be joined.
DEFAULT_MIN_SIMILARITY = 0.3


@dataclass
class ShardSignatures:
    """One shard's LSH band keys, in source order, with each row's content hash.

    ``band_keys`` is ``(rows, bands)`` uint64; ``has_shingles`` is False for rows without a single
    word, which are never near duplicates of anything. ``signatures``, the ``(rows, hashes)``
    MinHash values, are kept only when clusters are to be checked against ``min_similarity``.
    """

    band_keys: U64
    has_shingles: npt.NDArray[np.bool_]
    content_hashes: list[str]
    signatures: U32 | None = None

    def __post_init__(self) -> None:
        rows = len(self.content_hashes)
        if self.band_keys.ndim != 2 or self.band_keys.shape[0] != rows:
            raise CurationError(
                f"near dedup: {self.band_keys.shape} band keys for {rows} content hashes"
            )
        if self.has_shingles.shape != (rows,):
            raise CurationError(f"near dedup: {self.has_shingles.shape} flags for {rows} rows")
        if self.signatures is not None and self.signatures.shape[0] != rows:
            raise CurationError(f"near dedup: {self.signatures.shape} signatures for {rows} rows")

    @classmethod
    def concat(cls, parts: Sequence[ShardSignatures]) -> ShardSignatures:
        """One shard's signatures from its batches' signatures, in order."""
        if not parts:
            raise CurationError("near dedup: no signatures to join")
        with_signatures = {part.signatures is not None for part in parts}
        if len(with_signatures) > 1:
            raise CurationError("near dedup: some parts have MinHash signatures, others not")
        signatures = [part.signatures for part in parts if part.signatures is not None]
        return cls(
            np.concatenate([part.band_keys for part in parts]),
            np.concatenate([part.has_shingles for part in parts]),
            [value for part in parts for value in part.content_hashes],
            np.concatenate(signatures) if signatures else None,
        )

    def to_table(self) -> pa.Table:
        """The signatures as a table: ``content_hash``, ``has_shingles``, ``band_keys`` and,
        when kept, ``signature`` (fixed-size lists), to store between the two phases."""
        columns: dict[str, pa.Array] = {
            "content_hash": pa.array(self.content_hashes, pa.string()),
            "has_shingles": pa.array(self.has_shingles, pa.bool_()),
            "band_keys": _fixed_size_lists(self.band_keys),
        }
        if self.signatures is not None:
            columns["signature"] = _fixed_size_lists(self.signatures)
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table) -> ShardSignatures:
        """The signatures :meth:`to_table` stored."""
        signatures = None
        if "signature" in table.column_names:
            signatures = _matrix(table.column("signature")).astype(np.uint32)
        return cls(
            _matrix(table.column("band_keys")).astype(np.uint64),
            table.column("has_shingles").to_numpy().astype(np.bool_),
            table.column("content_hash").to_pylist(),
            signatures,
        )


def _fixed_size_lists(matrix: npt.NDArray[Any]) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> npt.NDArray[Any]:
    lists = column.combine_chunks()
    values: npt.NDArray[Any] = lists.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(lists), lists.type.list_size)


class MinHasher:
    """Computes MinHash signatures and LSH band keys for texts, with one :class:`MinHashConfig`."""

    def __init__(self, config: MinHashConfig | None = None) -> None:
        self.config = config or MinHashConfig()
        count = self.config.num_hashes
        seed = self.config.seed
        self._a = np.array(
            [1 + stable_hash(f"a:{seed}:{i}") % (MERSENNE_PRIME - 1) for i in range(count)],
            np.uint64,
        )
        self._b = np.array(
            [stable_hash(f"b:{seed}:{i}") % MERSENNE_PRIME for i in range(count)], np.uint64
        )
        self._tokenizer = Tokenizer(numbers_as_zero=True)

    def shingles(self, texts: pa.Array) -> tuple[U64, I64]:
        """Every shingle hash of ``texts`` and the index of the text it is from, grouped by text."""
        tokens, owners, is_cjk = self._tokenizer.tokens(texts)
        if not is_cjk.any():
            return ngrams(tokens, owners, self.config.ngram)
        cjk = is_cjk[owners]
        words = ngrams(tokens[~cjk], owners[~cjk], self.config.ngram)
        letters = ngrams(tokens[cjk], owners[cjk], self.config.char_ngram)
        shingles = np.concatenate([words[0], letters[0]])
        shingle_owners = np.concatenate([words[1], letters[1]])
        order = np.argsort(shingle_owners, kind="stable")
        return shingles[order], shingle_owners[order]

    def signatures(self, texts: pa.Array) -> tuple[U32, npt.NDArray[np.bool_]]:
        """``(len(texts), num_hashes)`` MinHash signatures, and which texts had any shingle.

        Values are below the prime (31 bits); a text without shingles gets all-ones, a value no
        real minimum takes.
        """
        shingles, owners = self.shingles(texts)
        count = len(texts)
        out = np.full((count, self.config.num_hashes), np.iinfo(np.uint32).max, np.uint32)
        values = (shingles >> _SHIFT_33)[:, None]  # 31 bits, so a * x < 2**62
        hashed = np.empty((_BLOCK, self.config.num_hashes), np.uint64)
        folded = np.empty_like(hashed)
        for start in range(0, len(shingles), _BLOCK):
            block = values[start : start + _BLOCK]
            block_owners = owners[start : start + _BLOCK]
            size = len(block)
            work, low = hashed[:size], folded[:size]
            np.multiply(block, self._a, out=work)
            work += self._b
            for _ in range(2):  # x mod p = (x & p) + (x >> 31), twice brings it below p
                np.bitwise_and(work, _P, out=low)
                work >>= _SHIFT_31
                work += low
            work[work == _P] = 0
            starts = np.flatnonzero(np.r_[True, block_owners[1:] != block_owners[:-1]])
            minima = np.minimum.reduceat(work, starts, axis=0)
            rows = block_owners[starts]
            out[rows] = np.minimum(out[rows], minima.astype(np.uint32))
        has_shingles = np.zeros(count, np.bool_)
        has_shingles[owners] = True
        return out, has_shingles

    def band_keys(self, signatures: U32) -> U64:
        """One uint64 key per band: a hash of the band's rows of the signature."""
        bands, rows = self.config.bands, self.config.rows_per_band
        shaped = signatures.reshape(len(signatures), bands, rows).astype(np.uint64)
        keys = np.zeros((len(signatures), bands), np.uint64)
        for row in range(rows):
            keys = mix64(keys ^ shaped[:, :, row])
        return keys

    def shard_signatures(
        self, texts: pa.Array, content_hashes: list[str], *, keep_signatures: bool = False
    ) -> ShardSignatures:
        """The :class:`ShardSignatures` of one shard's (or batch's) texts.

        ``keep_signatures`` keeps the MinHash values, which :func:`find_near_duplicates` needs to
        check candidates against a ``min_similarity``.
        """
        signatures, has_shingles = self.signatures(texts)
        return ShardSignatures(
            self.band_keys(signatures),
            has_shingles,
            content_hashes,
            signatures if keep_signatures else None,
        )


@dataclass(frozen=True)
class NearDuplicates:
    """What clustering found: the rows to drop, and how many clusters there are of each size.

    ``drops`` maps ``(shard index, row index)`` of each row to drop to the content hash of its
    cluster's first row; ``cluster_sizes`` counts clusters of two or more rows by size.
    """

    drops: dict[tuple[int, int], str]
    cluster_sizes: dict[int, int]


def find_near_duplicates(
    shards: Sequence[ShardSignatures], *, min_similarity: float | None = None
) -> NearDuplicates:
    """Cluster the rows of all ``shards`` and say which to drop, keeping each cluster's first.

    Rows are ordered by shard, then by row within the shard: that is source order. Rows sharing a
    band key are candidates; with ``min_similarity``, a candidate pair is joined only if the share
    of equal MinHash values (an estimate of their Jaccard similarity) reaches it, which the shards
    need ``signatures`` for. A cluster is a connected component of joined rows (union-find).
    """
    roots = _clusters(shards, min_similarity)
    hashes = [value for shard in shards for value in shard.content_hashes]
    lengths = [len(shard.content_hashes) for shard in shards]
    shard_of = np.repeat(np.arange(len(shards), dtype=np.int64), lengths)
    shard_start = np.cumsum([0, *lengths])
    drops: dict[tuple[int, int], str] = {}
    for row in np.flatnonzero(roots != np.arange(len(roots))).tolist():
        shard = int(shard_of[row])
        drops[(shard, row - int(shard_start[shard]))] = hashes[int(roots[row])]
    sizes = Counter(Counter(roots.tolist()).values())
    return NearDuplicates(drops, {size: sizes[size] for size in sorted(sizes) if size > 1})


def _clusters(shards: Sequence[ShardSignatures], min_similarity: float | None) -> I64:
    """For every row, in order, the global index of the first row of its cluster."""
    if not shards:
        return np.zeros(0, np.int64)
    bands = {shard.band_keys.shape[1] for shard in shards}
    if len(bands) != 1:
        raise CurationError(f"near dedup: shards have different band counts {sorted(bands)}")
    keys = np.concatenate([shard.band_keys for shard in shards])
    valid = np.concatenate([shard.has_shingles for shard in shards])
    parent = np.arange(len(keys), dtype=np.int64)
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        return parent
    # In each band, rows with equal keys are candidates: pair each with the group's first row
    # and with the row before it, which connects the group whatever is verified.
    sources: list[I64] = []
    targets: list[I64] = []
    for band in range(keys.shape[1]):
        column = keys[rows, band]
        order = np.lexsort((rows, column))
        sorted_keys, sorted_rows = column[order], rows[order]
        starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        members = ~starts
        firsts = sorted_rows[starts][np.cumsum(starts) - 1]
        previous = np.r_[sorted_rows[:1], sorted_rows[:-1]]
        sources += [sorted_rows[members], sorted_rows[members]]
        targets += [firsts[members], previous[members]]
    pairs = np.unique(np.stack([np.concatenate(sources), np.concatenate(targets)]), axis=1)
    left, right = pairs[0], pairs[1]
    if min_similarity is not None and len(left):
        if any(shard.signatures is None for shard in shards):
            raise CurationError("near dedup: min_similarity needs the shards' MinHash signatures")
        signatures = np.concatenate(
            [shard.signatures for shard in shards if shard.signatures is not None]
        )
        similar = np.concatenate(
            [
                np.mean(
                    signatures[left[start : start + 65536]]
                    == signatures[right[start : start + 65536]],
                    axis=1,
                )
                >= min_similarity
                for start in range(0, len(left), 65536)
            ]
        )
        left, right = left[similar], right[similar]
    return _union_find(parent, left, right)


def _union_find(
    parent: npt.NDArray[np.int64], left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Union the pairs ``(left[i], right[i])``, always under the smaller root; return the roots.

    Vectorised: hook each pair's larger root under the smaller, then compress paths by pointer
    jumping, until every pair shares a root. Every root is its component's smallest index.
    """
    while len(left):
        root_left, root_right = parent[left], parent[right]
        low = np.minimum(root_left, root_right)
        np.minimum.at(parent, root_left, low)
        np.minimum.at(parent, root_right, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        pending = parent[left] != parent[right]
        left, right = left[pending], right[pending]
    return parent


class NearDedup(Filter):
    """Drop rows whose text is a near duplicate of an earlier row's (MinHash LSH).

    ``columns`` are the columns whose text is compared (default: all text columns); ``ngram``,
    ``char_ngram``, ``bands``, ``rows_per_band`` and ``seed`` are those of
    :class:`MinHashConfig`; ``min_similarity`` (default :data:`DEFAULT_MIN_SIMILARITY`) joins
    only candidates whose estimated Jaccard similarity reaches it, and None joins every candidate
    as datatrove does. The step holds the run's batches until the last, since a row's fate can
    depend on rows after it.
    """

    name = "near_dedup"
    row_local = False

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        ngram: int = MinHashConfig.ngram,
        char_ngram: int = MinHashConfig.char_ngram,
        bands: int = MinHashConfig.bands,
        rows_per_band: int = MinHashConfig.rows_per_band,
        seed: int = MinHashConfig.seed,
        min_similarity: float | None = DEFAULT_MIN_SIMILARITY,
    ) -> None:
        super().__init__()
        if min_similarity is not None and not 0 < min_similarity <= 1:
            raise CurationError(
                f"near dedup: min_similarity must be in (0, 1], not {min_similarity!r}"
            )
        self.columns = list(columns) if columns is not None else None
        self.config = MinHashConfig(ngram, char_ngram, bands, rows_per_band, seed)
        self.min_similarity = min_similarity
        self._hasher = MinHasher(self.config)
        self._drops: dict[int, str] = {}
        self._next_row = 0
        self._cluster_sizes: dict[int, int] = {}

    @property
    def params(self) -> dict[str, Any]:
        config = self.config
        return {
            "columns": self.columns,
            "ngram": config.ngram,
            "char_ngram": config.char_ngram,
            "bands": config.bands,
            "rows_per_band": config.rows_per_band,
            "seed": config.seed,
            "min_similarity": self.min_similarity,
        }

    @property
    def details(self) -> dict[str, Any]:
        return {
            "candidate_threshold": round(self.config.threshold, 4),
            "clusters": sum(self._cluster_sizes.values()),
            "cluster_sizes": {str(size): count for size, count in self._cluster_sizes.items()},
        }

    def reason_key(self, reason: str) -> str:
        return DUPLICATE_REASON

    def record_clusters(self, cluster_sizes: Mapping[int, int]) -> None:
        """Take the clusters an executor found across shards, for :attr:`details`."""
        self._cluster_sizes = dict(cluster_sizes)

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []
        parts: list[ShardSignatures] = []
        for batch in batches:
            held.append(batch)
            parts.append(
                self._hasher.shard_signatures(
                    text_of(batch, self.columns, self.name),
                    batch.column(CONTENT_HASH_COLUMN).to_pylist(),
                    keep_signatures=self.min_similarity is not None,
                )
            )
        if not held:
            return
        found = find_near_duplicates(
            [ShardSignatures.concat(parts)], min_similarity=self.min_similarity
        )
        self._drops = {row: kept for (_, row), kept in found.drops.items()}
        self._cluster_sizes = found.cluster_sizes
        self._next_row = 0
        yield from super().run(iter(held))

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        start, self._next_row = self._next_row, self._next_row + batch.num_rows
        reasons: list[str | None] = []
        for row in range(start, self._next_row):
            kept = self._drops.get(row)
            reasons.append(None if kept is None else f"{DUPLICATE_REASON} of {kept}")
        return pa.array([reason is None for reason in reasons], pa.bool_()), reasons
