"""render_readme writes a Hugging Face README; parse_readme reads it back exactly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from dataset_cards.autofill import card_from_curation
from dataset_cards.errors import CardParseError
from dataset_cards.render import EXCHANGE_RECORD_MARKER, front_matter, parse_readme, render_readme
from dataset_cards.schema import DatasetCard

HF_KEYS = {
    "pretty_name",
    "license",
    "license_name",
    "license_link",
    "language",
    "task_categories",
    "task_ids",
    "size_categories",
    "source_datasets",
    "annotations_creators",
    "tags",
    "configs",
    "dataset_info",
}


def _front_matter(text: str) -> Any:
    lines = text.split("\n")
    assert lines[0] == "---"
    return yaml.safe_load("\n".join(lines[1 : lines.index("---", 1)]))


@pytest.fixture(scope="module")
def readme(card: DatasetCard) -> str:
    return render_readme(card)


@pytest.fixture(scope="module")
def dropping_card(curation_facts: dict[str, Any]) -> DatasetCard:
    """A card whose curation dropped rows, with every optional field filled in."""
    steps = [
        *curation_facts["steps"],
        {
            "step": "quality_filter",
            "params": {"min_chars": 20, "threshold": 0.5},
            "rows_in": 7_473,
            "rows_out": 7_400,
            "dropped_by_reason": {"too_short": 50, "low_quality": 23},
        },
    ]
    card = card_from_curation(
        **curation_facts
        | {
            "steps": steps,
            "license": "other",
            "license_name": "acme-data-1.0",
            "license_link": "https://example.org/acme-data-1.0",
            "source_datasets": ["extended|openai/gsm8k"],
            "tags": ["math", "reasoning"],
            "description": "Math | word problems.\n\nSecond paragraph with `code` and ``` fences.",
        }
    )
    return card.model_copy(
        update={
            "lawful_source_statement": "Released by OpenAI under the MIT licence; copied verbatim.",
            "intended_uses": "Fine-tuning and evaluating arithmetic reasoning.",
            "limitations": "English only.\nGrade-school level.",
        }
    )


def test_render_parse_render_is_identical(card: DatasetCard, readme: str) -> None:
    parsed = parse_readme(readme)

    assert parsed == card
    assert render_readme(parsed) == readme


def test_round_trip_keeps_every_optional_field_and_the_other_license(
    dropping_card: DatasetCard,
) -> None:
    text = render_readme(dropping_card)

    assert parse_readme(text) == dropping_card
    assert render_readme(parse_readme(text)) == text


@pytest.mark.parametrize("name", ["小学数学: 应用题", "no", "1e3", "- x", "a\n---\nb", "x # y"])
def test_round_trip_is_exact_for_unicode_yaml_lookalikes_and_deep_types(name: str) -> None:
    schema = pa.schema(
        [
            ("文本", pa.string()),
            ("spans", pa.list_(pa.struct([("start", pa.int32()), ("label", pa.string())]))),
            ("embedding", pa.list_(pa.float32(), 4)),
            ("grid", pa.list_(pa.list_(pa.int8()))),
        ]
    )
    card = card_from_curation(
        dataset_id="ds_zh",
        version_id="ver_1",
        name=name,
        description="---\n示例数据。",
        license="CC-BY-4.0",
        provider="示例数据公司",
        schema=schema,
        files=[],
        steps=[],
        content_hash="sha256:" + "0" * 64,
        language=["zh", "no"],
        tags=["yes", "null"],
    )
    text = render_readme(card)

    assert parse_readme(text) == card
    assert render_readme(parse_readme(text)) == text
    features = _front_matter(text)["dataset_info"]["features"]
    assert features[1:] == [
        {
            "name": "spans",
            "list": [{"name": "start", "dtype": "int32"}, {"name": "label", "dtype": "string"}],
        },
        {"name": "embedding", "list": "float32", "length": 4},
        {"name": "grid", "list": {"list": "int8"}},
    ]


def test_front_matter_is_yaml_with_the_hub_keys_in_hub_spelling(readme: str) -> None:
    front = _front_matter(readme)

    assert set(front) <= HF_KEYS
    assert list(front) == [
        "pretty_name",
        "license",
        "language",
        "task_categories",
        "size_categories",
        "configs",
        "dataset_info",
    ]
    assert front["license"] == "mit"
    assert front["size_categories"] == ["1K<n<10K"]
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-00000-of-00001.parquet"},
                {"split": "test", "path": "data/test-00000-of-00001.parquet"},
            ],
        }
    ]
    info = front["dataset_info"]
    assert info["features"][2:4] == [
        {"name": "steps", "list": "string"},
        {
            "name": "meta",
            "struct": [
                {"name": "final_answer", "dtype": "string"},
                {"name": "num_lines", "dtype": "int32"},
            ],
        },
    ]
    assert info["splits"][0] == {
        "name": "train",
        "num_examples": 7_473,
        "num_bytes": info["splits"][0]["num_bytes"],
    }
    assert info["download_size"] == info["dataset_size"] > 0


def test_exchange_fields_stay_out_of_the_front_matter(readme: str) -> None:
    front_text = yaml.safe_dump(_front_matter(readme))
    for field in ("dataset_id", "version_id", "content_hash", "provider", "preprocessing"):
        assert f"{field}:" not in front_text


def test_huggingface_hub_reads_the_card_metadata(card: DatasetCard, readme: str) -> None:
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")

    data = hub.DatasetCard(readme).data.to_dict()

    assert data["license"] == "mit"
    assert data["pretty_name"] == card.pretty_name
    assert data["size_categories"] == ["1K<n<10K"]
    assert data["configs"][0]["data_files"][0]["split"] == "train"


def test_huggingface_hub_reads_an_other_license(dropping_card: DatasetCard) -> None:
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")

    data = hub.DatasetCard(render_readme(dropping_card)).data.to_dict()

    assert (data["license"], data["license_name"], data["license_link"]) == (
        "other",
        "acme-data-1.0",
        "https://example.org/acme-data-1.0",
    )


def test_readme_sections_follow_the_datasheet_and_describe_the_version(
    card: DatasetCard, readme: str
) -> None:
    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert headings == [
        "Dataset summary",
        "Product description",
        "Motivation",
        "Composition",
        "Collection process",
        "Preprocessing",
        "Uses",
        "Distribution",
        "Maintenance",
        "Citation",
        "Exchange metadata",
        "Missing information",
    ]
    assert readme.startswith("---\n")
    assert f"\n# {card.pretty_name}\n" in readme
    assert "| `meta` | `struct<final_answer: string, num_lines: int32>` |  |" in readme
    assert "| `_source_file` | `string` | provenance: the uploaded file" in readme
    assert "provenance columns added by the exchange" in readme
    for data_file in card.files:
        assert f"| `{data_file.path}` | {data_file.num_rows:,} |" in readme
        assert data_file.sha256 in readme
    assert "1. `normalize_whitespace`: 7,473 rows in, 7,473 rows out." in readme
    assert "- Provider: OpenAI" in readme
    assert "- Co-contributors: Example Math Co-op" in readme
    assert "- Volume: 8,792 rows in 2 splits; 2 files," in readme
    assert (
        "- Licence: `mit`; commercial use allowed; attribution required; no share-alike" in readme
    )
    assert "No PII scan was recorded." in readme
    assert f"| version id | `{card.version_id}` |" in readme
    assert f"| content hash | `{card.content_hash}` |" in readme
    missing = readme.split("## Missing information", 1)[1]
    assert re.findall(r"^- `(\w+)`", missing, flags=re.MULTILINE)[:3] == [
        "motivation",
        "annotations_creators",
        "lawful_source_statement",
    ]


def test_a_complete_card_shows_every_section_filled_in(complete_card: DatasetCard) -> None:
    text = render_readme(complete_card)

    assert "_Not provided yet._" not in text
    assert "None: every field a person provides is filled in." in text
    assert "- Compliance assessment: passed, by Exchange listing review on 2026-01-05" in text
    assert "The PII scan found nothing (email, phone, cn_id_number)." in text
    assert "- Review: Human review of a sample of 200 rows by 2 reviewers (label-studio):" in text
    assert "Scores: completeness 1, accuracy 0.99." in text
    assert parse_readme(text) == complete_card
    assert render_readme(parse_readme(text)) == text


def test_readme_shows_dropped_rows_by_reason_and_filled_fields(dropping_card: DatasetCard) -> None:
    text = render_readme(dropping_card)

    assert "3. `quality_filter`: 7,473 rows in, 7,400 rows out." in text
    assert "   - dropped: `too_short` 50, `low_quality` 23" in text
    assert '   - parameters: `{"min_chars": 20, "threshold": 0.5}`' in text
    assert "[acme-data-1.0](https://example.org/acme-data-1.0)" in text
    assert "Released by OpenAI under the MIT licence" in text
    assert "- `intended_uses`" not in text.split("## Missing information", 1)[1]


def test_render_is_deterministic(card: DatasetCard, readme: str) -> None:
    rebuilt = DatasetCard.model_validate(card.model_dump(mode="json"))
    assert render_readme(rebuilt) == readme


# --- malformed input ---------------------------------------------------------------------------


def _replace_line(text: str, old: str, new: str) -> tuple[str, int]:
    """Replace one whole line; return the new text and that line's 1-based number."""
    lines = text.split("\n")
    index = lines.index(old)
    lines[index] = new
    return "\n".join(lines), index + 1


def test_malformed_front_matter_names_the_line(readme: str) -> None:
    broken, line = _replace_line(readme, "license: mit", "license: mit: apache-2.0")

    with pytest.raises(
        CardParseError, match=rf"^line {line}: the front matter is not valid YAML: mapping values"
    ) as caught:
        parse_readme(broken)
    assert (caught.value.line, caught.value.field) == (line, None)


def test_a_bad_feature_in_front_matter_names_its_own_line(readme: str) -> None:
    broken, line = _replace_line(readme, "  - name: steps", "  - title: steps")

    with pytest.raises(
        CardParseError, match=rf"^line {line}, field 'dataset_info.features.2': .*'name'"
    ):
        parse_readme(broken)


def test_a_bad_nested_dtype_names_its_line_and_path(readme: str) -> None:
    broken, line = _replace_line(readme, "    - name: num_lines", "    - name: [num_lines]")

    with pytest.raises(
        CardParseError, match=rf"^line {line}, field 'dataset_info.features.3.struct.1'"
    ):
        parse_readme(broken)


def test_a_readme_without_front_matter_is_rejected_at_line_1(readme: str) -> None:
    with pytest.raises(CardParseError, match=r"^line 1: "):
        parse_readme(readme.removeprefix("---\n"))


def test_unclosed_front_matter_is_rejected(readme: str) -> None:
    unclosed = readme.replace("\n---\n", "\n", 1)
    assert unclosed.count("\n---\n") == 0

    with pytest.raises(CardParseError, match="never closed"):
        parse_readme(unclosed)


def test_an_unknown_front_matter_key_names_its_line_and_field(readme: str) -> None:
    broken, line = _replace_line(readme, "license: mit", "licence: mit")

    with pytest.raises(CardParseError, match=rf"^line {line}, field 'licence': unknown") as caught:
        parse_readme(broken)
    assert caught.value.field == "licence"


def test_an_unknown_license_in_front_matter_names_its_line(readme: str) -> None:
    broken, line = _replace_line(readme, "license: mit", "license: mit-0.9")

    with pytest.raises(
        CardParseError, match=rf"^line {line}, field 'license': .*'mit-0.9' is not a known license"
    ):
        parse_readme(broken)


def test_a_broken_exchange_record_names_the_line(readme: str) -> None:
    lines = readme.split("\n")
    target = next(i for i, text in enumerate(lines) if text.startswith('  "version_id"'))
    lines[target] = lines[target].rstrip(",")
    with pytest.raises(CardParseError, match=rf"^line {target + 2}: .*not valid JSON"):
        parse_readme("\n".join(lines))


def test_a_bad_value_in_the_exchange_record_names_its_line_and_field(readme: str) -> None:
    lines = readme.split("\n")
    target = next(i for i, text in enumerate(lines) if text.startswith('  "provider"'))
    lines[target] = '  "provider": "",'

    with pytest.raises(CardParseError, match=rf"^line {target + 1}, field 'provider': "):
        parse_readme("\n".join(lines))


def test_a_bad_digest_deep_in_the_exchange_record_names_its_line(
    card: DatasetCard, readme: str
) -> None:
    digest = card.files[1].sha256
    lines = readme.split("\n")
    target = next(i for i, text in enumerate(lines) if digest in text and text.startswith("   "))
    lines[target] = lines[target].replace(digest, digest.upper())

    with pytest.raises(
        CardParseError, match=rf"^line {target + 1}, field 'files.1.sha256': .*64 lower-case hex"
    ):
        parse_readme("\n".join(lines))


def test_a_readme_without_the_exchange_record_is_rejected(readme: str) -> None:
    with pytest.raises(CardParseError, match="no exchange record"):
        parse_readme(readme.replace(EXCHANGE_RECORD_MARKER, "<!-- gone -->"))


def test_huggingface_hub_round_trips_the_metadata_of_a_complete_card(
    complete_card: DatasetCard, tmp_path: Path
) -> None:
    """The Hub client loads our README from disk, its metadata equals our front matter, and
    the README it writes back (its own YAML) parses to the same card."""
    from huggingface_hub import DatasetCard as HubCard

    path = tmp_path / "README.md"
    path.write_text(render_readme(complete_card), encoding="utf-8")

    hub_card = HubCard.load(path)
    assert hub_card.data.to_dict() == front_matter(complete_card)
    assert hub_card.data.to_dict()["annotations_creators"] == ["expert-generated"]

    saved = tmp_path / "saved" / "README.md"
    saved.parent.mkdir()
    hub_card.save(saved)
    assert parse_readme(saved.read_text(encoding="utf-8")) == complete_card


def test_task_ids_and_annotation_creators_are_hub_metadata(complete_card: DatasetCard) -> None:
    card = complete_card.model_copy(update={"task_ids": ["open-domain-qa"]})
    front = front_matter(card)

    assert front["task_ids"] == ["open-domain-qa"]
    assert front["annotations_creators"] == ["expert-generated"]
    assert list(front).index("task_ids") == list(front).index("task_categories") + 1
