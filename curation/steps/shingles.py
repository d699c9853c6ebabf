"""Tokens and n-grams of many texts at once, as uint64 hashes, for near dedup and decontamination.

A text is CJK when :func:`~curation.steps.text.cjk_shares` says so; its tokens are then its letters
and digits, one character each. Otherwise its tokens are words: lower-cased, split on whitespace
(or on anything but letters, digits and marks) with punctuation stripped from their ends. Token
hashes are stable across processes and machines (BLAKE2b of the word, SplitMix64 of the code
point), so shards hashed apart can be compared. N-gram hashes combine token hashes by polynomial
mixing; everything runs over whole batches in pyarrow and numpy, grouped by text in order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from curation.steps.text import CJK_DOCUMENT_SHARE, cjk_shares

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_CODEPOINT_DOMAIN = np.uint64(1 << 40)
_NON_WORD = r"[^\p{L}\p{N}\p{M}]+"
# Stripped from both ends of whitespace-separated words; inner ones stay ("don't", "e-mail").
_PUNCTUATION = "".join(
    chr(code)
    for code in [*range(0x21, 0x7F), *range(0xA1, 0xC0), *range(0x2010, 0x205F), 0x3001, 0x3002]
    if not chr(code).isalnum()
)
_CACHE_LIMIT = 2_000_000


def mix64(values: U64) -> U64:
    """SplitMix64's finaliser: a bijection on uint64 spreading each input bit over the output."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    mixed: U64 = z ^ (z >> np.uint64(31))
    return mixed


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class Tokenizer:
    """Hashes the tokens of texts; holds a cache of word hashes, so keep one per step.

    ``split_on_punctuation`` splits words on anything but letters, digits and marks (``don't``
    gives ``don`` and ``t``) instead of on whitespace; ``numbers_as_zero`` makes every run of
    digits in a word ``0``, so texts differing only in numbers tokenise alike.
    """

    def __init__(
        self, *, split_on_punctuation: bool = False, numbers_as_zero: bool = False
    ) -> None:
        self.split_on_punctuation = split_on_punctuation
        self.numbers_as_zero = numbers_as_zero
        self._word_hashes: dict[str, int] = {}

    def tokens(self, texts: pa.Array) -> tuple[U64, I64, npt.NDArray[np.bool_]]:
        """Token hashes of ``texts``, the index of the text of each, and which texts are CJK."""
        texts = pc.utf8_lower(pc.fill_null(texts.cast(pa.string()), ""))
        is_cjk = cjk_shares(texts) >= CJK_DOCUMENT_SHARE
        parts = []
        word_rows = np.flatnonzero(~is_cjk)
        if len(word_rows):
            chosen = texts if len(word_rows) == len(texts) else texts.take(word_rows)
            tokens, owners = self.words(chosen)
            parts.append((tokens, word_rows[owners]))
        cjk_rows = np.flatnonzero(is_cjk)
        if len(cjk_rows):
            tokens, owners = characters(texts.take(cjk_rows))
            parts.append((tokens, cjk_rows[owners]))
        if len(parts) == 1:
            return parts[0][0], parts[0][1], is_cjk
        if not parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64), is_cjk
        tokens = np.concatenate([part[0] for part in parts])
        owners = np.concatenate([part[1] for part in parts])
        order = np.argsort(owners, kind="stable")
        return tokens[order], owners[order], is_cjk

    def words(self, texts: pa.Array) -> tuple[U64, I64]:
        """Hashes of the words of ``texts`` (already lower-cased) and the index of each's text."""
        if self.numbers_as_zero:
            texts = pc.replace_substring_regex(texts, pattern=r"\p{Nd}+", replacement="0")
        if self.split_on_punctuation:
            words = pc.split_pattern_regex(texts, pattern=_NON_WORD)
            flat = pc.list_flatten(words)
        else:
            words = pc.utf8_split_whitespace(texts)
            flat = pc.utf8_trim(pc.list_flatten(words), characters=_PUNCTUATION)
        owners = pc.list_parent_indices(words).to_numpy().astype(np.int64)
        nonempty = pc.greater(pc.binary_length(flat), 0)
        if nonempty.false_count:
            flat = flat.filter(nonempty)
            owners = owners[nonempty.to_numpy(zero_copy_only=False)]
        encoded = flat.dictionary_encode()
        known = self._word_hashes
        vocabulary = encoded.dictionary.to_pylist()
        for word in vocabulary:
            if word not in known:
                known[word] = stable_hash(word)
        table = np.fromiter((known[word] for word in vocabulary), np.uint64, len(vocabulary))
        if len(known) > _CACHE_LIMIT:
            known.clear()
        return table[encoded.indices.to_numpy()], owners


def characters(texts: pa.Array) -> tuple[U64, I64]:
    """Hashes of the letters and digits of ``texts``, one per character, and each's text."""
    letters = pc.replace_substring_regex(texts, pattern=_NON_WORD, replacement="")
    lengths = pc.utf8_length(letters).to_numpy(zero_copy_only=False).astype(np.int64)
    joined = "".join(letters.to_pylist())
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    owners = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return mix64(points | _CODEPOINT_DOMAIN), owners


def ngrams(tokens: U64, owners: I64, n: int, *, whole_if_shorter: bool = True) -> tuple[U64, I64]:
    """Hashes of each text's token n-grams, in order, and the index of each's text.

    ``tokens`` must be grouped by text (``owners`` non-decreasing). A text with fewer than n
    tokens gives one hash of all of them when ``whole_if_shorter``, else none.
    """
    count = len(tokens)
    if count == 0 or n < 1:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    padded_tokens = np.concatenate([tokens, np.zeros(n - 1, np.uint64)])
    padded_owners = np.concatenate([owners, np.full(n - 1, -1, np.int64)])
    combined = tokens.copy()
    for offset in range(1, n):
        same = padded_owners[offset : offset + count] == owners
        combined *= _MIX_1
        combined += padded_tokens[offset : offset + count] * same
    keep = padded_owners[n - 1 : n - 1 + count] == owners
    if whole_if_shorter:
        first = np.r_[True, owners[1:] != owners[:-1]]
        keep |= first & ~keep
    return mix64(combined[keep]), owners[keep]
