"""A benchmark corpus of English web-like documents with planted near and exact duplicates.

Documents are made from the real English prose in the shared data folder (C4, Wikipedia, five
Project Gutenberg books and GSM8K's problems; see its ``SOURCES.md``): the texts are split into
sentences, and each base document is three or four paragraphs of three or four sentences drawn
at random from that pool. Drawing single sentences, not runs of them, keeps two base documents from
sharing more than a sentence or two even at 200,000 documents, so the only close pairs are the
planted ones (runs of consecutive sentences, tried first, made thousands of unplanned pairs
sharing a whole paragraph).

A share of the documents are planted near duplicates of a base document (its *cluster*): every
word is edited with a probability drawn per copy from 5-30 % (replaced by a word from elsewhere
in the pool, deleted, or followed by an inserted word), and half of the copies also have their
sentences reordered. Another share are exact copies. Everything is seeded, so a size and a seed
always give the same corpus; the order is shuffled, so copies land in other shards than their
originals. ``cluster`` is the ground truth: documents with equal ids are duplicates.

    .venv/bin/python bench/corpus.py --docs 200000 --out /tmp/corpus   # corpus.jsonl + truth
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(os.environ.get("AIDX_BENCH_DATA", "/work/shared/data"))
SOURCES = (
    "text_en/c4_demo.jsonl",
    "text_en/wiki_demo.txt",
    "text_en/gutenberg/pg11.txt",
    "text_en/gutenberg/pg1342.txt",
    "text_en/gutenberg/pg1661.txt",
    "text_en/gutenberg/pg174.txt",
    "text_en/gutenberg/pg98.txt",
    "bench/gsm8k_train.jsonl",
    "bench/gsm8k_test.jsonl",
)
MIN_EDIT, MAX_EDIT = 0.05, 0.30
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]?\s+(?=[\"'\u201c\u2018(]?[A-Z])")
_WORDS = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Corpus:
    """Documents in order, each with its ground-truth cluster id and how it was made.

    ``kinds`` is ``unique`` (a base document nothing copies), ``original`` (a base document with
    planted copies), ``near`` (an edited copy) or ``exact`` (a byte-for-byte copy).
    """

    texts: list[str]
    clusters: np.ndarray
    kinds: list[str]
    edit_rates: np.ndarray  # the word edit rate of each near copy, 0 for the others

    def __len__(self) -> int:
        return len(self.texts)

    def true_pairs(self, *, include_exact: bool = True) -> int:
        """Pairs of documents in the same cluster."""
        clusters = self.clusters
        if not include_exact:
            clusters = clusters[np.array([kind != "exact" for kind in self.kinds])]
        _, counts = np.unique(clusters, return_counts=True)
        return int((counts * (counts - 1) // 2).sum())


def source_texts(data_dir: Path = DATA) -> Iterable[str]:
    """The prose of every source file, one paragraph or article at a time."""
    missing = [name for name in SOURCES if not (data_dir / name).is_file()]
    if missing:
        raise SystemExit(f"corpus: {data_dir} lacks {', '.join(missing)} (set AIDX_BENCH_DATA)")
    for name in SOURCES:
        path = data_dir / name
        if name.endswith(".jsonl"):
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    if "text" in row:
                        yield from row["text"].split("\n")
                    else:  # GSM8K: the question, and the worked answer without its markup
                        yield row["question"]
                        yield re.sub(r"<<[^>]*>>|####.*", "", row["answer"]).replace("\n", " ")
        elif "gutenberg" in name:
            text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
            yield from (" ".join(block.split()) for block in text.split("\n\n"))
        else:
            yield from path.read_text(encoding="utf-8").splitlines()


def sentence_pool(data_dir: Path = DATA) -> list[str]:
    """The sources' sentences of 5 to 50 words, mostly letters, in source order."""
    pool = []
    for paragraph in source_texts(data_dir):
        for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
            words = sentence.split()
            letters = len(_WORDS.findall(sentence))
            if 5 <= len(words) <= 50 and letters >= 0.7 * len(sentence.replace(" ", "")):
                pool.append(sentence)
    return pool


def build_corpus(
    docs: int,
    *,
    seed: int = 20261130,
    near_share: float = 0.2,
    exact_share: float = 0.02,
    data_dir: Path = DATA,
    progress: bool = False,
) -> Corpus:
    """``docs`` documents, ``near_share`` of them planted near copies, ``exact_share`` exact."""
    if docs < 10:
        raise SystemExit(f"corpus: --docs must be at least 10, not {docs}")
    if not (near_share >= 0 and exact_share >= 0 and near_share + exact_share < 0.9):
        raise SystemExit("corpus: near and exact shares must be >= 0 and below 0.9 together")
    rng = np.random.default_rng(seed)
    pool = sentence_pool(data_dir)
    vocabulary = [word for sentence in pool[::7] for word in sentence.split()]
    near = int(docs * near_share)
    exact = int(docs * exact_share)
    base = docs - near - exact
    copies_per_cluster = rng.integers(1, 4, size=max(1, near))  # 1-3 copies each, 2 on average
    ends = np.cumsum(copies_per_cluster)
    clusters_with_copies = int(np.searchsorted(ends, near, side="left")) + 1 if near else 0
    if clusters_with_copies > base:
        raise SystemExit("corpus: too many planted copies for the number of documents")

    structures: list[list[list[str]]] = []  # document, paragraph, sentence
    for _ in range(base):
        paragraphs = []
        for _ in range(int(rng.integers(3, 5))):
            picks = rng.integers(0, len(pool), size=int(rng.integers(3, 5))).tolist()
            paragraphs.append([pool[pick] for pick in picks])
        structures.append(paragraphs)

    texts = [_render(paragraphs) for paragraphs in structures]
    clusters = list(range(base))
    kinds = ["unique"] * base
    edit_rates = [0.0] * base
    made = 0
    started = time.monotonic()
    for cluster in range(clusters_with_copies):
        kinds[cluster] = "original"
        for _ in range(int(copies_per_cluster[cluster])):
            if made == near:
                break
            rate = float(rng.uniform(MIN_EDIT, MAX_EDIT))
            texts.append(_edited(structures[cluster], rate, rng, vocabulary))
            clusters.append(cluster)
            kinds.append("near")
            edit_rates.append(rate)
            made += 1
        if progress and cluster % 5000 == 0:
            _progress("near copies", made, near, started)
    for source in rng.integers(0, base, size=exact).tolist():
        texts.append(texts[source])
        clusters.append(source)
        kinds.append("exact")
        edit_rates.append(0.0)
    order = rng.permutation(docs)
    if progress:
        _progress("near copies", near, near, started)
        print(file=sys.stderr)
    return Corpus(
        texts=[texts[i] for i in order],
        clusters=np.asarray(clusters, np.int64)[order],
        kinds=[kinds[i] for i in order],
        edit_rates=np.asarray(edit_rates)[order],
    )


def _render(paragraphs: Sequence[Sequence[str]]) -> str:
    return "\n".join(" ".join(sentences) for sentences in paragraphs)


def _edited(
    paragraphs: list[list[str]], rate: float, rng: np.random.Generator, vocabulary: list[str]
) -> str:
    """A copy with each word edited with probability ``rate``; half the time also reordered."""
    sizes = [len(sentences) for sentences in paragraphs]
    sentences = [sentence for group in paragraphs for sentence in group]
    if rng.random() < 0.5:
        sentences = [sentences[i] for i in rng.permutation(len(sentences))]
    edited = []
    for sentence in sentences:
        words = sentence.split()
        draws = rng.random(len(words))
        kinds = rng.random(len(words))
        out: list[str] = []
        for word, draw, kind in zip(words, draws, kinds, strict=True):
            if draw >= rate:
                out.append(word)
            elif kind < 0.6:
                out.append(vocabulary[int(rng.integers(len(vocabulary)))])
            elif kind < 0.8:
                continue
            else:
                out += [word, vocabulary[int(rng.integers(len(vocabulary)))]]
        edited.append(" ".join(out or words[:1]))
    regrouped, start = [], 0
    for size in sizes:
        regrouped.append(edited[start : start + size])
        start += size
    return _render(regrouped)


def write_corpus(corpus: Corpus, folder: Path) -> tuple[Path, Path]:
    """``corpus.jsonl`` (one ``{"text"}`` per line) and ``truth.parquet`` (row, cluster, kind)."""
    folder.mkdir(parents=True, exist_ok=True)
    documents = folder / "corpus.jsonl"
    with documents.open("w", encoding="utf-8") as handle:
        for text in corpus.texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    truth = folder / "truth.parquet"
    pq.write_table(
        pa.table(
            {
                "row": pa.array(np.arange(len(corpus)), pa.int64()),
                "cluster": pa.array(corpus.clusters, pa.int64()),
                "kind": pa.array(corpus.kinds, pa.string()),
                "edit_rate": pa.array(corpus.edit_rates, pa.float64()),
            }
        ),
        truth,
    )
    return documents, truth


def _progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    print(f"\r{label}: {done:,}/{total:,} ({elapsed:.0f} s)", end="", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents (default 200000)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--out", type=Path, required=True, help="folder for the two files")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    corpus = build_corpus(args.docs, seed=args.seed, progress=True)
    documents, truth = write_corpus(corpus, args.out)
    size = documents.stat().st_size / 1e6
    print(
        f"{len(corpus):,} documents ({size:.0f} MB), {corpus.true_pairs():,} duplicate pairs, "
        f"in {time.perf_counter() - started:.1f} s: {documents}, {truth}"
    )


if __name__ == "__main__":
    main()
