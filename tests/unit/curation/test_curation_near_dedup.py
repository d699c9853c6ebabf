"""NearDedup: MinHash LSH finds edited and reordered copies of real text, keeps the first of each
cluster, and resolves clusters the same way whether the rows come in one run or in shards."""

from __future__ import annotations

import csv
import itertools
import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from curation.pipeline import Pipeline
from curation.steps import NearDedup
from curation.steps.near_dedup import (
    DATATROVE_CONFIG,
    DEFAULT_MIN_SIMILARITY,
    MinHashConfig,
    MinHasher,
    ShardSignatures,
    find_near_duplicates,
)
from curation.steps.provenance import content_hashes
from curation.steps.text import sentences
from tests.unit.curation.conftest import FIXTURES, RunSteps

# The project's default: word 2-grams, 56 bands of 2 rows, candidates checked at 0.3.
DEFAULT = {"ngram": 2, "char_ngram": 3, "bands": 56, "rows_per_band": 2, "min_similarity": 0.3}
# Datatrove's default: 5-grams, 14 bands of 8 rows, every candidate joined.
DATATROVE = {"ngram": 5, "char_ngram": 5, "bands": 14, "rows_per_band": 8, "min_similarity": None}
EDIT_RATES = (0.05, 0.10, 0.15, 0.20, 0.30)


def edit_words(text: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    """Change ``rate`` of the words: half replaced, a quarter deleted, a quarter with one added."""
    words = text.split()
    for index in rng.sample(range(len(words)), max(1, round(rate * len(words)))):
        roll = rng.random()
        if roll < 0.5:
            words[index] = rng.choice(vocabulary)
        elif roll < 0.75:
            words[index] = ""
        else:
            words[index] += " " + rng.choice(vocabulary)
    return " ".join(word for word in words if word)


def reorder_sentences(text: str, rng: random.Random) -> str:
    parts = sentences(text)
    rng.shuffle(parts)
    return " ".join(parts)


def planted_corpus(
    originals: list[str], seed: int = 7
) -> tuple[list[str], dict[int, int], dict[int, str]]:
    """Originals, then a near copy of every second one (edited 5-30% or sentences reordered).

    Returns the texts, each copy's position -> its original's, and each copy's kind.
    """
    rng = random.Random(seed)
    vocabulary = [word for text in originals for word in text.split()]
    texts = list(originals)
    truth: dict[int, int] = {}
    kinds: dict[int, str] = {}
    for index, original in enumerate(originals):
        if index % 2:
            continue
        kind = rng.choice([*(f"edit {rate:.0%}" for rate in EDIT_RATES), "reordered"])
        copy = (
            reorder_sentences(original, rng)
            if kind == "reordered"
            else edit_words(original, float(kind.split()[1].rstrip("%")) / 100, vocabulary, rng)
        )
        truth[len(texts)] = index
        kinds[len(texts)] = kind
        texts.append(copy)
    return texts, truth, kinds


def drops_of(texts: list[str], **params: Any) -> dict[int, int]:
    """Dropped row -> kept row, for ``texts`` deduplicated in one shard."""
    config = MinHashConfig(**{k: v for k, v in params.items() if k != "min_similarity"})
    minimum = params.get("min_similarity", DEFAULT_MIN_SIMILARITY)
    signatures = MinHasher(config).shard_signatures(
        pa.array(texts), [str(i) for i in range(len(texts))], keep_signatures=minimum is not None
    )
    found = find_near_duplicates([signatures], min_similarity=minimum)
    return {row: int(kept) for (_, row), kept in found.drops.items()}


def precision_recall(drops: dict[int, int], truth: dict[int, int]) -> tuple[float, float]:
    right = sum(1 for row, kept in drops.items() if truth.get(row) == kept)
    return right / max(1, len(drops)), right / len(truth)


@pytest.fixture(scope="module")
def originals(c4_texts: list[str], wiki_passages: list[str]) -> list[str]:
    """C4 documents of at least 50 words and Wikipedia passages, minus one real near pair."""
    texts = [text for text in c4_texts if len(text.split()) >= 50] + wiki_passages[:300]
    # C4's sample itself holds one near-duplicate pair (two pages of one site): keep one of it.
    pairs = drops_of(texts)
    assert len(pairs) == 1
    (copy,) = pairs
    return [text for index, text in enumerate(texts) if index != copy]


def test_default_config_finds_edited_and_reordered_copies(originals: list[str]) -> None:
    texts, truth, kinds = planted_corpus(originals)

    drops = drops_of(texts)

    precision, recall = precision_recall(drops, truth)
    assert precision == 1.0
    assert recall >= 0.97
    for kind in sorted(set(kinds.values())):
        copies = [row for row, k in kinds.items() if k == kind]
        found = sum(1 for row in copies if drops.get(row) == truth[row])
        assert found / len(copies) >= 0.85, kind


def test_datatrove_defaults_find_light_edits_only_and_never_a_wrong_row(
    originals: list[str],
) -> None:
    """5-gram 14x8 joins documents above Jaccard ~0.72: a copy with one changed word in a hundred,
    yes; one with a tenth of its words changed (5-gram Jaccard ~0.4), mostly not."""
    rng = random.Random(11)
    vocabulary = [word for text in originals for word in text.split()]
    light = [edit_words(text, 0.01, vocabulary, rng) for text in originals[::2]]
    heavy = [edit_words(text, 0.10, vocabulary, rng) for text in originals[1::2]]
    texts = originals + light + heavy
    truth = {len(originals) + i: 2 * i for i in range(len(light))}
    truth |= {len(originals) + len(light) + i: 2 * i + 1 for i in range(len(heavy))}

    drops = drops_of(texts, **DATATROVE)

    assert all(truth.get(row) == kept for row, kept in drops.items())
    light_found = sum(1 for row in drops if row < len(originals) + len(light))
    heavy_found = len(drops) - light_found
    assert light_found >= 0.95 * len(light)
    assert heavy_found <= 0.2 * len(heavy)


def test_chinese_copies_are_found_by_character_ngrams(lunyu_paragraphs: list[str]) -> None:
    documents = ["".join(lunyu_paragraphs[i : i + 4]) for i in range(0, 480, 4)]
    rng = random.Random(5)
    texts = list(documents)
    truth = {}
    for index, document in enumerate(documents[:60]):
        characters = list(document)
        for position in rng.sample(range(len(characters)), len(characters) // 10):
            characters[position] = rng.choice(document)
        truth[len(texts)] = index
        texts.append("".join(characters))

    drops = drops_of(texts)

    precision, recall = precision_recall(drops, truth)
    assert (precision, recall) == (1.0, 1.0)


def test_step_keeps_the_first_row_and_names_its_hash(
    run_steps: RunSteps, originals: list[str]
) -> None:
    texts, truth, _ = planted_corpus(originals[:120], seed=3)
    rows = [{"text": text} for text in texts]
    step = NearDedup()

    table = run_steps([step], rows, batch_size=25)

    hashes = content_hashes(pa.RecordBatch.from_pylist(rows))
    dropped = {record["source_row"]: record for record in step.exclusions}
    assert table.num_rows == len(rows) - len(dropped)
    assert set(dropped) <= set(truth)
    assert len(dropped) >= 0.95 * len(truth)
    for row, record in dropped.items():
        kept = hashes[truth[row]]
        assert record["reason"] == f"near duplicate of {kept}"
        assert record["content_hash"] == hashes[row]
    assert step.stats.dropped_by_reason == {"near duplicate": len(dropped)}
    assert step.details["clusters"] == len(dropped)
    assert step.details["cluster_sizes"] == {"2": len(dropped)}
    assert table.column("_source_row").to_pylist() == [
        row for row in range(len(rows)) if row not in dropped
    ]


def test_a_chain_of_copies_is_one_cluster_kept_at_its_first_row(
    run_steps: RunSteps, c4_texts: list[str]
) -> None:
    """A ~ B and B ~ C while A and C share little: union-find puts all three under A."""
    words = " ".join(c4_texts[20:40]).split()[:600]
    other = " ".join(c4_texts[60:80]).split()
    a = " ".join(words)
    b = " ".join(words[:400] + other[:200])
    c = " ".join(other[300:500] + words[200:400] + other[:200])
    rows = [{"text": t} for t in (c4_texts[0], a, c4_texts[1], b, c)]
    step = NearDedup(ngram=5, bands=20, rows_per_band=3, min_similarity=None)

    table = run_steps([step], rows, batch_size=2)

    a_hash = content_hashes(pa.RecordBatch.from_pylist(rows[1:2]))[0]
    assert [r["source_row"] for r in step.exclusions] == [3, 4]
    assert {r["reason"] for r in step.exclusions} == {f"near duplicate of {a_hash}"}
    assert table.num_rows == 3
    assert step.details["cluster_sizes"] == {"3": 1}


def test_clusters_across_shards_match_one_run(originals: list[str]) -> None:
    texts, _, _ = planted_corpus(originals[:200], seed=9)
    hasher = MinHasher()
    hashes = [f"h{i}" for i in range(len(texts))]
    cuts = [0, 70, 71, 180, len(texts)]
    shards = [
        hasher.shard_signatures(pa.array(texts[lo:hi]), hashes[lo:hi], keep_signatures=True)
        for lo, hi in itertools.pairwise(cuts)
    ]
    whole = hasher.shard_signatures(pa.array(texts), hashes, keep_signatures=True)
    # Signatures travel between the phases as Arrow tables.
    shards = [ShardSignatures.from_table(shard.to_table()) for shard in shards]

    sharded = find_near_duplicates(shards, min_similarity=0.2)
    single = find_near_duplicates([whole], min_similarity=0.2)

    as_global = {cuts[shard] + row: kept for (shard, row), kept in sharded.drops.items()}
    assert as_global == {row: kept for (_, row), kept in single.drops.items()}
    assert sharded.cluster_sizes == single.cluster_sizes
    assert len(as_global) > 50


def test_signatures_do_not_depend_on_batching(c4_texts: list[str]) -> None:
    hasher = MinHasher()
    whole, _ = hasher.signatures(pa.array(c4_texts[:50]))
    parts = [
        MinHasher().signatures(pa.array(c4_texts[i : min(i + 7, 50)]))[0] for i in range(0, 50, 7)
    ]

    assert np.array_equal(whole, np.concatenate(parts))
    assert whole.dtype == np.uint32
    assert int(whole.max()) < (1 << 31) - 1


def test_rows_without_words_are_never_duplicates(run_steps: RunSteps) -> None:
    rows = [{"text": value} for value in ("", "...", "--- !!!", "", None)]
    step = NearDedup()

    table = run_steps([step], rows)

    assert table.num_rows == len(rows)


def test_estimated_similarity_matches_jaccard(c4_texts: list[str]) -> None:
    """The share of equal MinHash values estimates the Jaccard similarity of the shingle sets."""
    config = MinHashConfig(ngram=3, bands=64, rows_per_band=4)
    hasher = MinHasher(config)
    rng = random.Random(2)
    vocabulary = " ".join(c4_texts).split()
    pairs = [(t, edit_words(t, 0.1, vocabulary, rng)) for t in c4_texts if len(t.split()) > 300]
    errors = []
    for left, right in pairs:
        signatures, _ = hasher.signatures(pa.array([left, right]))
        estimate = float(np.mean(signatures[0] == signatures[1]))
        shingles, owners = hasher.shingles(pa.array([left, right]))
        a, b = set(shingles[owners == 0].tolist()), set(shingles[owners == 1].tolist())
        errors.append(abs(estimate - len(a & b) / len(a | b)))
    # 256 hashes: the standard error is at most 1/(2*sqrt(256)) = 0.031.
    assert np.mean(errors) < 0.03
    assert max(errors) < 0.12


def test_paraphrase_pairs_show_how_wording_overlap_drives_joins() -> None:
    """MinHash sees wording, not meaning. MSRP's pairs are sentences of one news story picked for
    their lexical overlap, paraphrases or not, so a loose configuration joins many of both.

    Measured: datatrove's default joins 1.3% of paraphrase and 0.3% of non-paraphrase pairs; the
    project's default (2-grams, similarity >= 0.3) 58% and 29%. On short texts the default is
    aggressive; it is meant for documents.
    """
    with (FIXTURES / "msrp_test.tsv").open(encoding="utf-8-sig", newline="") as file:
        pairs = [
            (row["Quality"], row["#1 String"], row["#2 String"])
            for row in csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    texts = [text for _, left, right in pairs for text in (left, right)]
    joined: dict[str, list[bool]] = {"datatrove": [], "default": []}
    for name, params in (("datatrove", DATATROVE), ("default", DEFAULT)):
        drops = drops_of(texts, **params)
        joined[name] = [drops.get(2 * i + 1) == 2 * i for i in range(len(pairs))]
    paraphrase = [quality == "1" for quality, _, _ in pairs]

    def rate(name: str, wanted: bool) -> float:
        hits = [j for j, p in zip(joined[name], paraphrase, strict=True) if p == wanted]
        return sum(hits) / len(hits)

    assert len(pairs) == 1725
    assert rate("datatrove", True) < 0.05
    assert rate("datatrove", False) < 0.02
    # More shared wording, more joins: paraphrases join about twice as often.
    assert 0.4 < rate("default", True) < 0.8
    assert 0.15 < rate("default", False) < rate("default", True) - 0.15


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(Exception, match="bands must be a positive integer"):
        NearDedup(bands=0)
    with pytest.raises(Exception, match="min_similarity"):
        NearDedup(min_similarity=1.5)


def test_recipe_builds_the_step_with_its_parameters() -> None:
    pipeline = Pipeline.from_recipe({"steps": [{"step": "near_dedup", **DATATROVE}]})

    (step,) = pipeline.steps
    assert isinstance(step, NearDedup)
    assert step.params == {"columns": None, "seed": 1, **DATATROVE}
    assert step.config == DATATROVE_CONFIG


def test_the_default_is_the_measured_one_and_datatrove_stays_selectable() -> None:
    """The default was chosen by bench/near_dedup_accuracy.py (docs/benchmarks.md)."""
    (step,) = Pipeline.from_recipe({"steps": ["near_dedup"]}).steps

    assert isinstance(step, NearDedup)
    assert step.params == {"columns": None, "seed": 1, **DEFAULT}
    assert step.config == MinHashConfig() != DATATROVE_CONFIG
    assert step.config.num_hashes == DATATROVE_CONFIG.num_hashes == 112
    # Candidates from Jaccard ~0.13 on (2-grams of a copy with 30% of words edited: ~0.3),
    # where datatrove's start at ~0.72.
    assert round(step.config.threshold, 2) == 0.13
    assert round(DATATROVE_CONFIG.threshold, 2) == 0.72
