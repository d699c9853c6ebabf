"""Heuristic quality filters for web text, with datatrove's thresholds, and a Chinese set.

Each filter reads a row's text (its ``columns``, default all text columns, joined by newlines) and
drops it on the first rule it breaks, in datatrove's order, with a reason naming the rule, the
measured value and the limit, e.g. ``gopher_quality: mean word length 11.2 > 10``; the report
counts drops per rule and limit (``gopher_quality: mean word length > 10``).

- :class:`GopherQuality` and :class:`GopherRepetition`: the rules of Gopher (Rae et al. 2021,
  table A1), as datatrove's ``GopherQualityFilter`` and ``GopherRepetitionFilter`` apply them.
- :class:`C4Filter` drops documents as datatrove's ``C4QualityFilter`` does (lorem ipsum, a curly
  bracket in a kept line, fewer than five sentences in the kept lines); :class:`C4Clean` keeps only
  the lines that filter keeps (terminal punctuation, at least three words, no "javascript", no
  cookie or terms-of-use notice, citation marks removed), as a transform.
- :class:`FineWebQuality`: datatrove's ``FineWebQualityFilter``.
- :class:`ChineseQuality`: share of CJK characters, average line length, characters covered by
  repeated 13-character grams, and a minimum length; thresholds of our own, on visible characters.

Where datatrove uses NLTK (word tokens, punkt sentences, which need a model download), we use the
regular-expression stand-ins of :mod:`curation.steps.text`, so counts can differ by a token here
and there.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import Filter, Transform
from curation.steps.text import CJK_CHARACTER, sentences, string_columns, text_of, word_tokens

_MEASURED = re.compile(r"^(?P<rule>.+?) -?\d+(?:\.\d+)?(?:e-?\d+)? (?P<limit>[<>]=? .+)$")
_HAS_WORD_CHARACTER = re.compile(r"\w")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAKS = re.compile(r"\n+")
_WHITESPACE = re.compile(r"\s+")

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


class TextFilter(Filter):
    """A filter deciding on each row's text alone; subclasses implement :meth:`check`.

    Subclasses name their settings in ``THRESHOLDS`` (attributes of the same names), which is
    what their :attr:`params` report.
    """

    THRESHOLDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, **{name: getattr(self, name) for name in self.THRESHOLDS}}

    @abstractmethod
    def check(self, text: str) -> str | None:
        """The rule ``text`` breaks, as ``"<what> <value> <op> <limit>"``, or None if it passes."""

    def broken(self, what: str, value: float, op: str, limit: float) -> str:
        return f"{self.name}: {what} {_number(value)} {op} {_number(limit)}"

    def reason_key(self, reason: str) -> str:
        match = _MEASURED.match(reason)
        return f"{match['rule']} {match['limit']}" if match else reason

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        reasons = [self.check(text) for text in text_of(batch, self.columns, self.name).to_pylist()]
        return pa.array([reason is None for reason in reasons], pa.bool_()), reasons


class GopherQuality(TextFilter):
    """Gopher's quality rules: length, mean word length, symbols, bullets, ellipses, stop words.

    Thresholds and order are datatrove's; a threshold set to None turns its rule off. Words are
    tokens with at least one letter or digit; the stop words are compared as written (case
    matters, as in datatrove).
    """

    name = "gopher_quality"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        min_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Sequence[str] = STOP_WORDS,
    ) -> None:
        super().__init__(columns)
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = list(stop_words)
        self._stop_words = frozenset(stop_words)

    THRESHOLDS = (
        "min_doc_words",
        "max_doc_words",
        "min_avg_word_length",
        "max_avg_word_length",
        "max_symbol_word_ratio",
        "max_bullet_lines_ratio",
        "max_ellipsis_lines_ratio",
        "min_alpha_words_ratio",
        "min_stop_words",
        "stop_words",
    )

    def check(self, text: str) -> str | None:
        tokens = word_tokens(text)
        words = [token for token in tokens if _HAS_WORD_CHARACTER.search(token)]
        count = len(words)
        if self.min_doc_words is not None and count < self.min_doc_words:
            return self.broken("words", count, "<", self.min_doc_words)
        if self.max_doc_words is not None and count > self.max_doc_words:
            return self.broken("words", count, ">", self.max_doc_words)
        if not count:
            return None  # nothing left to measure, and no minimum asked for
        mean_length = sum(map(len, words)) / count
        if self.min_avg_word_length is not None and mean_length < self.min_avg_word_length:
            return self.broken("mean word length", mean_length, "<", self.min_avg_word_length)
        if self.max_avg_word_length is not None and mean_length > self.max_avg_word_length:
            return self.broken("mean word length", mean_length, ">", self.max_avg_word_length)
        limit = self.max_symbol_word_ratio
        if limit is not None:
            hashes = text.count("#") / len(tokens)
            if hashes > limit:
                return self.broken("hash-to-word ratio", hashes, ">", limit)
            ellipses = (text.count("...") + text.count("\u2026")) / len(tokens)
            if ellipses > limit:
                return self.broken("ellipsis-to-word ratio", ellipses, ">", limit)
        lines = text.splitlines() or [""]
        limit = self.max_bullet_lines_ratio
        if limit is not None:
            bullets = sum(line.lstrip().startswith(("\u2022", "-")) for line in lines) / len(lines)
            if bullets > limit:
                return self.broken("share of lines starting with a bullet", bullets, ">", limit)
        limit = self.max_ellipsis_lines_ratio
        if limit is not None:
            endings = sum(line.rstrip().endswith(("...", "\u2026")) for line in lines) / len(lines)
            if endings > limit:
                return self.broken("share of lines ending with an ellipsis", endings, ">", limit)
        limit = self.min_alpha_words_ratio
        if limit is not None:
            alpha = sum(any(c.isalpha() for c in token) for token in tokens) / len(tokens)
            if alpha < limit:
                return self.broken("share of words with a letter", alpha, "<", limit)
        if self.min_stop_words is not None:
            stop = sum(token in self._stop_words for token in tokens)
            if stop < self.min_stop_words:
                return self.broken("stop words", stop, "<", self.min_stop_words)
        return None


def _duplicates(items: list[str]) -> tuple[int, int]:
    """How many of ``items`` repeat an earlier one, and their characters."""
    seen: set[str] = set()
    count = characters = 0
    for item in items:
        if item in seen:
            count += 1
            characters += len(item)
        else:
            seen.add(item)
    return count, characters


class GopherRepetition(TextFilter):
    """Gopher's repetition rules: repeated paragraphs and lines, top n-grams, repeated n-grams.

    ``top_ngrams`` maps n to the largest share of characters the most frequent n-gram may cover;
    ``dup_ngrams`` maps n to the largest share of characters in repeated n-grams (counted as
    datatrove counts them: scanning left to right, a repeat skips past itself). Defaults are
    datatrove's.
    """

    name = "gopher_repetition"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_ngrams: dict[int, float] | None = None,
        dup_ngrams: dict[int, float] | None = None,
    ) -> None:
        super().__init__(columns)
        self.dup_line_frac = dup_line_frac
        self.dup_para_frac = dup_para_frac
        self.dup_line_char_frac = dup_line_char_frac
        self.dup_para_char_frac = dup_para_char_frac
        self.top_ngrams = _ngram_limits(top_ngrams, {2: 0.2, 3: 0.18, 4: 0.16})
        self.dup_ngrams = _ngram_limits(
            dup_ngrams, {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
        )

    @property
    def params(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "dup_line_frac": self.dup_line_frac,
            "dup_para_frac": self.dup_para_frac,
            "dup_line_char_frac": self.dup_line_char_frac,
            "dup_para_char_frac": self.dup_para_char_frac,
            "top_ngrams": {str(n): limit for n, limit in self.top_ngrams.items()},
            "dup_ngrams": {str(n): limit for n, limit in self.dup_ngrams.items()},
        }

    def check(self, text: str) -> str | None:
        if not text:
            return None
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        repeated, characters = _duplicates(paragraphs)
        found = self._share("repeated paragraphs", repeated / len(paragraphs), self.dup_para_frac)
        found = found or self._share(
            "characters in repeated paragraphs", characters / len(text), self.dup_para_char_frac
        )
        if found:
            return found
        lines = _LINE_BREAKS.split(text)
        repeated, characters = _duplicates(lines)
        found = self._share("repeated lines", repeated / len(lines), self.dup_line_frac)
        found = found or self._share(
            "characters in repeated lines", characters / len(text), self.dup_line_char_frac
        )
        if found:
            return found
        words = word_tokens(text)
        if not words:
            return None
        # Within one text, Python's string hash identifies n-grams well enough and fast.
        hashes = np.fromiter(map(hash, words), np.int64, len(words))
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        for n, limit in self.top_ngrams.items():
            if len(words) < n:
                continue
            grams = _ngram_hashes(hashes, n)
            _, first, counts = np.unique(grams, return_index=True, return_counts=True)
            top = np.flatnonzero(counts == counts.max())
            start = int(first[top].min())  # Counter.most_common keeps the first seen on ties
            covered = (int(lengths[start : start + n].sum()) + n - 1) * int(counts.max())
            found = self._share(f"characters in the top {n}-gram", covered / len(text), limit)
            if found:
                return found
        for n, limit in self.dup_ngrams.items():
            if len(words) < n:
                continue
            grams = _ngram_hashes(hashes, n)
            if len(np.unique(grams)) == len(grams):
                break  # no n-gram repeats, and so no longer one does either
            characters = _repeated_ngram_characters(grams, lengths, n)
            found = self._share(f"characters in repeated {n}-grams", characters / len(text), limit)
            if found:
                return found
        return None

    def _share(self, what: str, value: float, limit: float | None) -> str | None:
        return self.broken(what, value, ">", limit) if limit is not None and value > limit else None


def _ngram_limits(given: dict[int, float] | None, default: dict[int, float]) -> dict[int, float]:
    limits = default if given is None else given
    try:
        return {int(n): float(limit) for n, limit in sorted(limits.items())}
    except (TypeError, ValueError, AttributeError):
        raise CurationError(f"n-gram limits must map n to a share, not {given!r}") from None


def _ngram_hashes(hashes: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    count = len(hashes) - n + 1
    combined = hashes[:count].copy()
    multiplier = np.int64(1_000_003)
    with np.errstate(over="ignore"):
        for offset in range(1, n):
            combined = combined * multiplier ^ hashes[offset : offset + count]
    return combined


def _repeated_ngram_characters(
    grams: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], n: int
) -> int:
    """Characters (spaces left out) of n-grams repeating an earlier visited one, skipping past
    each repeat, as datatrove's ``find_all_duplicate`` counts them."""
    seen: set[int] = set()
    gram_list = grams.tolist()
    length_list = lengths.tolist()
    characters = index = 0
    while index < len(gram_list):
        gram = gram_list[index]
        if gram in seen:
            characters += sum(length_list[index : index + n])
            index += n
        else:
            seen.add(gram)
            index += 1
    return characters


# C4

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_END_PUNCTUATION = (".", "?", "!", '"', "'")
_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


class _C4Rules:
    """The line rules of C4, shared by the document filter and the line cleaner."""

    def __init__(
        self,
        *,
        remove_citations: bool,
        filter_no_terminal_punct: bool,
        min_words_per_line: int | None,
        max_word_length: int | None,
        filter_javascript: bool,
        filter_policy: bool,
    ) -> None:
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_javascript = filter_javascript
        self.filter_policy = filter_policy

    def candidate(self, line: str) -> str | None:
        """``line`` stripped and uncited if it passes the checks before lorem-ipsum, else None."""
        line = line.strip()
        words = line.split()
        if self.max_word_length is not None and any(len(w) > self.max_word_length for w in words):
            return None
        if self.remove_citations:
            line = _CITATION.sub("", line)
        if self.filter_no_terminal_punct and (
            not line.endswith(_END_PUNCTUATION) or line.endswith("...")
        ):
            return None
        if self.min_words_per_line is not None and len(words) < self.min_words_per_line:
            return None
        return line

    def drops_line(self, lowered: str) -> bool:
        """Whether a candidate line (lower-cased) goes for mentioning javascript or a policy."""
        if self.filter_javascript and "javascript" in lowered:
            return True
        return self.filter_policy and any(phrase in lowered for phrase in _POLICY)


class C4Filter(TextFilter):
    """Drop documents as C4 does: lorem ipsum, a curly bracket, or under five sentences kept.

    Lines are judged by the C4 line rules first (see :class:`C4Clean`); only lines passing the
    earlier rules count for lorem ipsum and the bracket, and sentences are counted in the lines
    kept, as in datatrove's ``C4QualityFilter``. Pair it with ``c4_clean`` to also drop the lines.
    """

    name = "c4_filter"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        min_num_sentences: int | None = 5,
        filter_lorem_ipsum: bool = True,
        filter_curly_bracket: bool = True,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_javascript: bool = True,
        filter_policy: bool = True,
    ) -> None:
        super().__init__(columns)
        self.min_num_sentences = min_num_sentences
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_curly_bracket = filter_curly_bracket
        self._rules = _C4Rules(
            remove_citations=remove_citations,
            filter_no_terminal_punct=filter_no_terminal_punct,
            min_words_per_line=min_words_per_line,
            max_word_length=max_word_length,
            filter_javascript=filter_javascript,
            filter_policy=filter_policy,
        )

    @property
    def params(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "min_num_sentences": self.min_num_sentences,
            "filter_lorem_ipsum": self.filter_lorem_ipsum,
            "filter_curly_bracket": self.filter_curly_bracket,
            **vars(self._rules),
        }

    def check(self, text: str) -> str | None:
        count = 0
        for raw in text.splitlines():
            line = self._rules.candidate(raw)
            if line is None:
                continue
            lowered = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lowered:
                return f"{self.name}: contains lorem ipsum"
            if self._rules.filter_javascript and "javascript" in lowered:
                continue
            if self.filter_curly_bracket and "{" in line:
                return f"{self.name}: contains a curly bracket"
            if self._rules.filter_policy and any(phrase in lowered for phrase in _POLICY):
                continue
            count += len(sentences(line)) or 1
        if self.min_num_sentences is not None and count < self.min_num_sentences:
            return self.broken("sentences", count, "<", self.min_num_sentences)
        return None


class C4Clean(Transform):
    """Keep only the lines of each text that C4's line rules keep, citation marks removed.

    A line goes when a word in it is over ``max_word_length`` characters, when it does not end in
    terminal punctuation (or ends in an ellipsis), when it has fewer than ``min_words_per_line``
    words, or when it mentions javascript or a cookie or terms-of-use notice. Applies to
    ``columns``, by default every string column; lists and structs are left alone.
    """

    name = "c4_clean"
    changes_content = True

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_javascript: bool = True,
        filter_policy: bool = True,
    ) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None
        self._rules = _C4Rules(
            remove_citations=remove_citations,
            filter_no_terminal_punct=filter_no_terminal_punct,
            min_words_per_line=min_words_per_line,
            max_word_length=max_word_length,
            filter_javascript=filter_javascript,
            filter_policy=filter_policy,
        )
        self.lines_in = 0
        self.lines_kept = 0

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, **vars(self._rules)}

    @property
    def details(self) -> dict[str, Any]:
        return {"lines_in": self.lines_in, "lines_kept": self.lines_kept}

    def clean(self, text: str) -> str:
        """``text`` with only the lines C4 keeps, joined by newlines."""
        kept = []
        for raw in text.splitlines():
            self.lines_in += 1
            line = self._rules.candidate(raw)
            if line is not None and not self._rules.drops_line(line.lower()):
                kept.append(line)
        self.lines_kept += len(kept)
        return "\n".join(kept).strip()

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = self.columns if self.columns is not None else string_columns(batch.schema)
        arrays = list(batch.columns)
        for name in names:
            index = batch.schema.get_field_index(name)
            if index < 0:
                raise CurationError(f"step {self.name}: no column named {name}")
            column = batch.column(index)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                if self.columns is None:
                    continue
                raise CurationError(f"step {self.name}: column {name} holds {column.type}")
            values = [None if v is None else self.clean(v) for v in column.to_pylist()]
            arrays[index] = pa.array(values, column.type)
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


class FineWebQuality(TextFilter):
    """FineWeb's rules: lines ending in punctuation, short lines, repeated lines, list-like text."""

    name = "fineweb_quality"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        line_punct_thr: float = 0.12,
        line_punct_exclude_zero: bool = False,
        short_line_thr: float = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float = 0.01,
        new_line_ratio: float = 0.3,
    ) -> None:
        super().__init__(columns)
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio

    THRESHOLDS = (
        "line_punct_thr",
        "line_punct_exclude_zero",
        "short_line_thr",
        "short_line_length",
        "char_duplicates_ratio",
        "new_line_ratio",
    )

    def check(self, text: str) -> str | None:
        lines = text.split("\n")
        ending = sum(line.endswith((".", "'", '"', "!", "?")) for line in lines) / len(lines)
        if ending <= self.line_punct_thr and not (ending == 0 and self.line_punct_exclude_zero):
            return self.broken(
                "share of lines ending in punctuation", ending, "<=", self.line_punct_thr
            )
        short = sum(len(line) <= self.short_line_length for line in lines) / len(lines)
        if short >= self.short_line_thr:
            return self.broken(
                f"share of lines of at most {self.short_line_length} characters",
                short,
                ">=",
                self.short_line_thr,
            )
        characters = len(text) - text.count("\n")
        _, repeated = _duplicates([line for line in lines if line.strip()])
        ratio = repeated / characters if characters else 0.0
        if ratio >= self.char_duplicates_ratio:
            return self.broken(
                "share of characters in repeated lines", ratio, ">=", self.char_duplicates_ratio
            )
        words = len(word_tokens(text))
        breaks = text.count("\n") / words if words else 0.0
        if breaks > self.new_line_ratio:
            return self.broken("line breaks per word", breaks, ">", self.new_line_ratio)
        return None


class ChineseQuality(TextFilter):
    """Rules for Chinese text, measured on visible characters (whitespace left out).

    In order: at least ``min_length`` characters; at least ``min_cjk_share`` of them Han or kana;
    lines (non-blank) of at least ``min_avg_line_length`` characters on average; and at most
    ``max_repeated_ngram_share`` of characters inside ``ngram``-character grams that occur more
    than once (boilerplate and spam repeat long phrases; prose rarely repeats 13 characters).
    """

    name = "chinese_quality"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        min_length: int | None = 50,
        min_cjk_share: float | None = 0.4,
        min_avg_line_length: float | None = 10,
        ngram: int = 13,
        max_repeated_ngram_share: float | None = 0.2,
    ) -> None:
        super().__init__(columns)
        if ngram < 1:
            raise CurationError(f"step {self.name}: ngram must be at least 1, not {ngram}")
        self.min_length = min_length
        self.min_cjk_share = min_cjk_share
        self.min_avg_line_length = min_avg_line_length
        self.ngram = ngram
        self.max_repeated_ngram_share = max_repeated_ngram_share

    THRESHOLDS = (
        "min_length",
        "min_cjk_share",
        "min_avg_line_length",
        "ngram",
        "max_repeated_ngram_share",
    )

    def check(self, text: str) -> str | None:
        visible = _WHITESPACE.sub("", text)
        length = len(visible)
        if self.min_length is not None and length < self.min_length:
            return self.broken("characters", length, "<", self.min_length)
        if not length:
            return None
        if self.min_cjk_share is not None:
            share = len(CJK_CHARACTER.findall(visible)) / length
            if share < self.min_cjk_share:
                return self.broken("share of CJK characters", share, "<", self.min_cjk_share)
        if self.min_avg_line_length is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            average = length / len(lines)
            if average < self.min_avg_line_length:
                return self.broken("mean line length", average, "<", self.min_avg_line_length)
        limit = self.max_repeated_ngram_share
        if limit is not None and length >= self.ngram:
            share = repeated_ngram_share(visible, self.ngram)
            if share > limit:
                return self.broken(
                    f"share of characters in repeated {self.ngram}-grams", share, ">", limit
                )
        return None


def repeated_ngram_share(text: str, n: int) -> float:
    """The share of ``text``'s characters inside an n-character gram that occurs twice or more."""
    if len(text) < n:
        return 0.0
    points = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.uint64)
    count = len(points) - n + 1
    grams = points[:count].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, n):
            grams = grams * np.uint64(0x100000001B3) ^ points[offset : offset + count]
    _, inverse, counts = np.unique(grams, return_inverse=True, return_counts=True)
    repeated = counts[inverse] > 1
    if not repeated.any():
        return 0.0
    cover = np.zeros(len(points) + 1, np.int64)
    starts = np.flatnonzero(repeated)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    return float(np.count_nonzero(np.cumsum(cover)[:-1])) / len(points)


__all__ = [
    "STOP_WORDS",
    "C4Clean",
    "C4Filter",
    "ChineseQuality",
    "FineWebQuality",
    "GopherQuality",
    "GopherRepetition",
    "TextFilter",
    "repeated_ngram_share",
]
