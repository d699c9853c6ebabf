"""Sentences every rendering writes the same way: volume, licence class, PII scan, review, steps.

They describe machine facts of the card; renderings that people read (README, product page) and
Croissant's free-text RAI fields all use them, so the three never disagree.
"""

from __future__ import annotations

import json

from dataset_cards.licenses import LicenseClass
from dataset_cards.schema import DatasetCard, PreprocessingStep, ReviewSummary

# Croissant's RAI fields mix these machine sentences with the contributor's text; the prefix marks
# the machine ones so a parser can tell them apart (they are re-derived, never read back).
MACHINE_PREFIX = "aidx curation: "


def describe_volume(card: DatasetCard) -> str:
    """Rows, splits, files and stored bytes, e.g. ``8,792 rows in 2 splits; 2 files, 3.1 MB``."""
    splits = len(card.dataset_info.splits)
    files = len(card.files)
    text = f"{card.num_rows:,} rows in {splits} split{'s' if splits != 1 else ''}"
    if files:
        size = human_bytes(card.num_bytes)
        text += f"; {files} file{'s' if files != 1 else ''}, {size} ({card.num_bytes:,} bytes)"
    return text


def human_bytes(num_bytes: int) -> str:
    """A byte count in decimal units, e.g. ``3.1 MB``."""
    value = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{num_bytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def describe_license_class(license_class: LicenseClass | None) -> str:
    """The class in words, e.g. ``commercial use; attribution required; no share-alike``."""
    if license_class is None:
        return "not stated"
    use = {
        "commercial": "commercial use allowed",
        "non-commercial": "non-commercial use only",
        "academic": "academic use only",
        "unspecified": "allowed use unspecified",
    }[license_class.allowed_use]
    attribution = (
        "attribution required" if license_class.attribution_required else "no attribution needed"
    )
    share = "share-alike" if license_class.share_alike else "no share-alike"
    return f"{use}; {attribution}; {share}"


def describe_pii(pii_counts: dict[str, int] | None) -> str:
    """What the PII scan found, e.g. ``PII scan found email 3, phone 1``."""
    if pii_counts is None:
        return "no PII scan was recorded"
    found = {kind: count for kind, count in pii_counts.items() if count > 0}
    if not found:
        scanned = ", ".join(pii_counts) or "all types"
        return f"the PII scan found nothing ({scanned})"
    detail = ", ".join(f"{kind} {count:,}" for kind, count in found.items())
    return f"the PII scan found {detail}"


def describe_review(review: ReviewSummary | None) -> str:
    """What human review of a sample found."""
    if review is None:
        return "no human review was recorded"
    parts = [f"human review of a sample of {review.sample_size:,} rows"]
    if review.reviewers is not None:
        parts[0] += f" by {review.reviewers} reviewer{'s' if review.reviewers != 1 else ''}"
    if review.tool is not None:
        parts[0] += f" ({review.tool})"
    if review.pass_rate is not None:
        parts.append(f"pass rate {review.pass_rate:.1%}")
    if review.agreement is not None:
        parts.append(f"agreement {review.agreement:.2f} ({review.agreement_metric})")
    return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def describe_scores(scores: dict[str, float] | None) -> str:
    """Quality scores, e.g. ``completeness 0.98, accuracy 0.95``."""
    if scores is None:
        return "no quality scores were recorded"
    return ", ".join(f"{name} {score:g}" for name, score in scores.items()) or "none"


def describe_step(number: int, total: int, step: PreprocessingStep) -> str:
    """One curation step in a sentence."""
    text = (
        f"step {number} of {total}, {step.step}: {step.rows_in:,} rows in,"
        f" {step.rows_out:,} rows out"
    )
    if step.dropped_by_reason:
        text += "; dropped " + ", ".join(
            f"{reason} {count:,}" for reason, count in step.dropped_by_reason.items()
        )
    if step.params:
        text += "; parameters " + json.dumps(step.params, ensure_ascii=False, sort_keys=True)
    return text
