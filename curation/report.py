"""A version's quality report: what each stage removed and why, and the GB/T 36344 dimensions.

:func:`quality_report` measures facts from a run's result and its output files (rows in and out
per step with the reasons, text lengths, languages, PII found, duplicate clusters, missing
cells, repeated rows, file integrity) and scores the six dimensions of GB/T 36344-2018
(normativity, completeness, accuracy, consistency, timeliness, accessibility) from them, each in
[0, 1] or ``None`` when nothing measured it. ``docs/quality-report.md`` gives every formula.
Accuracy needs human review: without a review summary it is ``None``, never a guess;
:func:`apply_review` recomputes a stored version report once a review round is decided
(``curation/review.py``).

:func:`write_quality_report` writes ``report.json``, ``report.md`` and a standalone
``report.html`` (plots inlined), with the plots as PNGs under ``plots/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.executors import CurationResult
from curation.steps import CONTENT_HASH_COLUMN, data_columns
from curation.steps.text import string_columns, text_of

DIMENSIONS = (
    "normativity",
    "completeness",
    "accuracy",
    "consistency",
    "timeliness",
    "accessibility",
)
#: Dated rows count as timely when they are at most this many days old.
TIMELY_DAYS = 5 * 365
_LENGTH_BINS = 30


def quality_report(
    result: CurationResult,
    out_dir: Path,
    *,
    review: Mapping[str, Any] | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Measure the version ``result`` wrote to ``out_dir`` and score it; JSON-ready."""
    today = today or dt.date.today()
    facts = _measure(result, out_dir, today)
    scores, notes = _score(result, facts, review)
    return {
        "recipe": result.report["recipe"],
        "content_hash": result.content_hash,
        "rows_in": result.rows_in,
        "rows_out": result.num_rows,
        "stages": [
            {
                "step": step["step"],
                "rows_in": step["rows_in"],
                "rows_out": step["rows_out"],
                "dropped_by_reason": step["dropped_by_reason"],
            }
            for step in result.steps
        ],
        "facts": facts,
        "review": dict(review) if review is not None else None,
        "quality_scores": scores,
        "score_notes": notes,
    }


def write_quality_report(
    result: CurationResult,
    out_dir: Path,
    *,
    review: Mapping[str, Any] | None = None,
    today: dt.date | None = None,
) -> list[Path]:
    """Write the report beside the version's files; return the paths written (JSON, MD, HTML)."""
    report = quality_report(result, out_dir, review=review, today=today)
    plots = _plots(report, out_dir / "plots")
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
    paths[0].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(_markdown(report, plots), encoding="utf-8")
    paths[2].write_text(_html(report, plots, out_dir), encoding="utf-8")
    return paths


# Facts


def _measure(result: CurationResult, out_dir: Path, today: dt.date) -> dict[str, Any]:
    lengths: list[np.ndarray[Any, Any]] = []
    cells = missing = rows = 0
    hashes: Counter[str] = Counter()
    dated = timely = 0
    verified = 0
    for shard in result.shards:
        path = out_dir / shard.path
        with path.open("rb") as file:
            if hashlib.file_digest(file, "sha256").hexdigest() == shard.sha256:
                verified += 1
        table = pq.read_table(path)
        rows += table.num_rows
        hashes.update(table.column(CONTENT_HASH_COLUMN).to_pylist())
        for name in data_columns(table.schema):
            column = table.column(name)
            cells += len(column)
            absent = pc.is_null(column)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                blank = pc.equal(pc.utf8_trim_whitespace(column), "")
                absent = pc.or_kleene(absent, pc.fill_null(blank, True))
            missing += int(pc.sum(absent).as_py() or 0)
            if pa.types.is_temporal(column.type):
                values = pc.drop_null(column).to_pylist()
                dated += len(values)
                timely += sum(1 for value in values if _age_days(value, today) <= TIMELY_DAYS)
        if string_columns(table.schema):
            for batch in table.to_batches():
                texts = text_of(batch, None, "report")
                lengths.append(pc.utf8_length(texts).to_numpy(zero_copy_only=False))
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    details = {step["step"]: step.get("details") or {} for step in result.report["steps"]}
    languages = details.get("language_filter", {}).get("likeliest_languages") or details.get(
        "language_tag", {}
    ).get("languages")
    pii = details.get("pii_redact", {}).get("matches_by_kind") if "pii_redact" in details else None
    near = details.get("near_dedup", {}).get("cluster_sizes") if "near_dedup" in details else None
    return {
        "text_lengths": _length_summary(all_lengths),
        "languages": languages,
        "pii_counts": pii,
        "duplicate_clusters": {
            "exact": _exact_cluster_sizes(out_dir, result) if _ran(result, "exact_dedup") else None,
            "near": near,
        },
        "cells": cells,
        "missing_cells": missing,
        "rows_with_repeated_content": sum(count for count in hashes.values() if count > 1),
        "dated_values": dated,
        "timely_values": timely,
        "files": len(result.shards),
        "files_verified": verified,
        "format_violations": _format_violations(result),
        "profile_validity": _profile_validity(result),
    }


def _ran(result: CurationResult, name: str) -> bool:
    return any(step["step"] == name for step in result.steps)


def _age_days(value: Any, today: dt.date) -> float:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return float((today - value).days)
    return float("inf")


def _length_summary(lengths: np.ndarray[Any, Any]) -> dict[str, Any] | None:
    if not len(lengths):
        return None
    top = max(int(lengths.max()), 1)
    counts, edges = np.histogram(lengths, bins=_LENGTH_BINS, range=(0, top))
    return {
        "count": len(lengths),
        "mean": round(float(lengths.mean()), 1),
        "median": float(np.median(lengths)),
        "p5": float(np.percentile(lengths, 5)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "histogram": {"edges": [round(float(e), 1) for e in edges], "counts": counts.tolist()},
    }


def _exact_cluster_sizes(out_dir: Path, result: CurationResult) -> dict[str, int]:
    """Clusters of exact copies by size: a kept row and the copies dropped as its duplicates."""
    if result.exclusions is None:
        return {}
    table = pq.read_table(out_dir / result.exclusions.path, columns=["step", "reason"])
    copies = Counter(
        reason.rsplit(" ", 1)[-1]
        for step, reason in zip(
            table.column("step").to_pylist(), table.column("reason").to_pylist(), strict=True
        )
        if step == "exact_dedup"
    )
    sizes = Counter(count + 1 for count in copies.values())
    return {str(size): sizes[size] for size in sorted(sizes)}


_FORMAT_RULE = re.compile(r"^chat_format: (?!same )")


def _format_violations(result: CurationResult) -> int:
    """Rows dropped for breaking the data's format rules (malformed conversations)."""
    return sum(
        count
        for step in result.steps
        for reason, count in step["dropped_by_reason"].items()
        if _FORMAT_RULE.match(reason)
    )


def _profile_validity(result: CurationResult) -> float | None:
    for step in result.report["steps"]:
        columns = (step.get("details") or {}).get("columns")
        if step["step"] == "tabular_profile" and columns:
            return round(float(np.mean([c["validity"] for c in columns.values()])), 6)
    return None


# Scores


def _score(
    result: CurationResult, facts: Mapping[str, Any], review: Mapping[str, Any] | None
) -> tuple[dict[str, float | None], dict[str, str]]:
    scores: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    conform = 1 - facts["format_violations"] / result.rows_in if result.rows_in else 1.0
    validity = facts["profile_validity"]
    scores["normativity"] = _unit(conform * (validity if validity is not None else 1.0))
    notes["normativity"] = (
        f"{facts['format_violations']} of {result.rows_in} input rows broke format rules"
        + (f"; mean column validity {validity}" if validity is not None else "")
    )
    cells = facts["cells"]
    scores["completeness"] = _unit(1 - facts["missing_cells"] / cells) if cells else None
    notes["completeness"] = f"{facts['missing_cells']} of {cells} data cells missing or blank"
    scores["accuracy"], notes["accuracy"] = accuracy_score(review)
    rows = result.num_rows
    repeated = facts["rows_with_repeated_content"]
    scores["consistency"] = _unit(1 - repeated / rows) if rows else None
    notes["consistency"] = f"{repeated} of {rows} output rows repeat another row's content"
    dated = facts["dated_values"]
    scores["timeliness"] = _unit(facts["timely_values"] / dated) if dated else None
    notes["timeliness"] = (
        f"{facts['timely_values']} of {dated} dated values are at most {TIMELY_DAYS} days old"
        if dated
        else "no date or time column to measure timeliness by"
    )
    files = facts["files"]
    scores["accessibility"] = _unit(facts["files_verified"] / files) if files else None
    notes["accessibility"] = (
        f"{facts['files_verified']} of {files} Parquet files re-read with their recorded SHA-256"
    )
    return scores, notes


def accuracy_score(review: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """The accuracy dimension and its note: the pass rate human review measured, else ``None``."""
    pass_rate = (review or {}).get("pass_rate")
    if review is None or pass_rate is None:
        return None, "no human review yet; accuracy is not scored until a sample is reviewed"
    note = f"human review pass rate {float(pass_rate):.3f}"
    interval = review.get("pass_rate_interval")
    if interval:
        note += f" (Wilson 95% interval {interval[0]:.3f} to {interval[1]:.3f})"
    annotated = review.get("annotated_tasks")
    if annotated is not None:
        note += f" over {annotated} reviewed rows"
    note += f" of a sample of {review.get('sample_size')}"
    if review.get("agreement") is not None:
        note += f"; {review.get('agreement_metric')} {float(review['agreement']):.3f}"
    if review.get("reviewers"):
        note += f" between {review['reviewers']} reviewers"
    if review.get("round_id"):
        note += f"; review round {review['round_id']}"
        if review.get("decision"):
            note += f" {review['decision']}"
    return _unit(float(pass_rate)), note


def apply_review(report: Mapping[str, Any], review: Mapping[str, Any]) -> dict[str, Any]:
    """A version's stored report recomputed with a human review: a new dict, ``report`` is kept.

    ``report`` is a version's ``report`` JSON (the run's report, its quality report under
    ``quality`` and the non-null scores under ``quality_scores``). The review goes to
    ``quality.review``, the accuracy score and note are recomputed from it, the non-null scores
    are copied up to ``quality_scores`` again, and ``review`` holds the summary the dataset card
    shows (:class:`~dataset_cards.schema.ReviewSummary`'s fields). Every other score stays as
    curation measured it.
    """
    updated: dict[str, Any] = json.loads(json.dumps(report))
    quality = updated.get("quality")
    if not isinstance(quality, dict) or "quality_scores" not in quality:
        raise ValueError("the report has no quality report to add a review to")
    quality["review"] = json.loads(json.dumps(dict(review)))
    score, note = accuracy_score(review)
    quality["quality_scores"]["accuracy"] = score
    quality.setdefault("score_notes", {})["accuracy"] = note
    updated["quality_scores"] = {
        name: value for name, value in quality["quality_scores"].items() if value is not None
    }
    summary = {key: review.get(key) for key in _CARD_REVIEW_FIELDS if review.get(key) is not None}
    updated["review"] = {"tool": "Label Studio", **summary}
    return updated


# The fields of the dataset card's review summary (dataset_cards.schema.ReviewSummary).
_CARD_REVIEW_FIELDS = (
    "sample_size",
    "reviewers",
    "pass_rate",
    "agreement",
    "agreement_metric",
    "tool",
)


def _unit(value: float) -> float:
    return round(min(max(value, 0.0), 1.0), 4)


# Plots


def _plots(report: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    facts = report["facts"]

    def save(name: str, figure: Any) -> None:
        path = folder / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(figure)
        made[name] = path

    stages = report["stages"]
    if stages:
        figure, axes = plt.subplots(figsize=(9, 0.55 * len(stages) + 1.6))
        labels = [f"{i + 1}. {stage['step']}" for i, stage in enumerate(stages)]
        kept = [stage["rows_out"] for stage in stages]
        dropped = [stage["rows_in"] - stage["rows_out"] for stage in stages]
        positions = np.arange(len(stages))[::-1]
        axes.barh(positions, kept, color="#4c72b0", label="kept")
        axes.barh(positions, dropped, left=kept, color="#dd8452", label="dropped")
        top = max(stage["rows_in"] for stage in stages) or 1
        for position, stage, gone in zip(positions, stages, dropped, strict=True):
            reasons = sorted(stage["dropped_by_reason"].items(), key=lambda item: -item[1])
            text = f"-{gone:,}" + (f"  ({_short(reasons[0][0])})" if reasons else "")
            axes.text(top * 1.01, position, text if gone else "", va="center", fontsize=8)
        axes.set_yticks(positions, labels)
        axes.set_xlim(0, top * 1.6)
        axes.set_xlabel("rows")
        axes.set_title("Rows kept and dropped per step (main reason)")
        axes.legend(loc="lower right")
        save("stages", figure)
    lengths = facts["text_lengths"]
    if lengths:
        figure, axes = plt.subplots(figsize=(7, 3.6))
        edges = lengths["histogram"]["edges"]
        axes.stairs(lengths["histogram"]["counts"], edges, fill=True, color="#4c72b0")
        axes.set_xlabel("characters per row")
        axes.set_ylabel("rows")
        axes.set_title(f"Text length (median {lengths['median']:.0f}, p95 {lengths['p95']:.0f})")
        save("lengths", figure)
    for name, values, title in (
        ("languages", facts["languages"], "Likeliest language per row"),
        ("pii", facts["pii_counts"], "Personal data found and redacted, by type"),
        ("exact_clusters", facts["duplicate_clusters"]["exact"], "Exact-copy clusters by size"),
        ("near_clusters", facts["duplicate_clusters"]["near"], "Near-duplicate clusters by size"),
    ):
        if not values:
            continue
        items = list(values.items())[:15]
        figure, axes = plt.subplots(figsize=(7, 3.4))
        axes.bar([str(key) for key, _ in items], [count for _, count in items], color="#55a868")
        axes.set_title(title)
        axes.set_ylabel("rows" if name in ("languages",) else "count")
        if name.endswith("clusters"):
            axes.set_xlabel("rows in the cluster")
        save(name, figure)
    return made


def _short(reason: str, limit: int = 38) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


# Pages


def _markdown(report: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    lines = [
        f"# Quality report: {report['recipe']}",
        "",
        f"{report['rows_in']:,} rows in, {report['rows_out']:,} rows out. "
        f"Content hash `{report['content_hash']}`.",
        "",
        "## GB/T 36344 dimensions",
        "",
        "| dimension | score | measured |",
        "|---|---|---|",
    ]
    for name in DIMENSIONS:
        score = report["quality_scores"][name]
        shown = "not scored" if score is None else f"{score:.3f}"
        lines.append(f"| {name} | {shown} | {report['score_notes'][name]} |")
    lines += ["", "Formulas: `docs/quality-report.md`.", "", "## Steps", ""]
    lines += ["| step | rows in | rows out | dropped because |", "|---|---|---|---|"]
    for stage in report["stages"]:
        reasons = "; ".join(f"{r} ({n:,})" for r, n in stage["dropped_by_reason"].items())
        lines.append(
            f"| {stage['step']} | {stage['rows_in']:,} | {stage['rows_out']:,} | {reasons} |"
        )
    for name, path in plots.items():
        lines += ["", f"![{name}](plots/{path.name})"]
    return "\n".join(lines) + "\n"


def _html(report: Mapping[str, Any], plots: Mapping[str, Path], out_dir: Path) -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{'not scored' if score is None else f'{score:.3f}'}</td>"
        f"<td>{html.escape(report['score_notes'][name])}</td></tr>"
        for name in DIMENSIONS
        for score in [report["quality_scores"][name]]
    )
    steps = "".join(
        f"<tr><td>{html.escape(stage['step'])}</td><td>{stage['rows_in']:,}</td>"
        f"<td>{stage['rows_out']:,}</td><td>"
        + html.escape("; ".join(f"{r} ({n:,})" for r, n in stage["dropped_by_reason"].items()))
        + "</td></tr>"
        for stage in report["stages"]
    )
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"></figure>'
        for name, path in plots.items()
    )
    title = html.escape(f"Quality report: {report['recipe']}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>{title}</h1><p>{report['rows_in']:,} rows in, {report['rows_out']:,} rows out. "
        f"Content hash <code>{report['content_hash']}</code>.</p>"
        "<h2>GB/T 36344 dimensions</h2><table><tr><th>dimension</th><th>score</th>"
        f"<th>measured</th></tr>{rows}</table>"
        "<h2>Steps</h2><table><tr><th>step</th><th>rows in</th><th>rows out</th>"
        f"<th>dropped because</th></tr>{steps}</table>{images}</body></html>\n"
    )
