"""render_croissant writes Croissant 1.1 that mlcroissant validates and reads; it parses back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import mlcroissant as mlc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_cards.autofill import card_from_curation
from dataset_cards.errors import CardParseError
from dataset_cards.render.croissant import (
    croissant_document,
    croissant_fields,
    parse_croissant,
    render_croissant,
)
from dataset_cards.schema import DatasetCard


def _metadata(path: Path, *, complete: bool = True) -> mlc.Dataset:
    """The dataset mlcroissant loads; no errors, and no warnings unless the card is incomplete
    (then only about recommended properties it lacks)."""
    dataset = mlc.Dataset(jsonld=path)
    issues = dataset.metadata.ctx.issues
    assert issues.errors == set()
    if complete:
        assert issues.warnings == set()
    else:
        assert all("is recommended, but does not exist" in w for w in issues.warnings)
    return dataset


@pytest.fixture(scope="module")
def croissant_path(complete_card: DatasetCard, dataset_root: Path) -> Path:
    """croissant.json at the root of the dataset folder, beside data/."""
    path = dataset_root / "croissant.json"
    path.write_text(render_croissant(complete_card), encoding="utf-8")
    return path


def test_mlcroissant_validates_the_card_without_errors_or_warnings(
    complete_card: DatasetCard, croissant_path: Path
) -> None:
    metadata = _metadata(croissant_path).metadata

    assert metadata.name == complete_card.pretty_name
    assert metadata.version == "1.0.0"
    assert metadata.date_published == dt.datetime(2026, 1, 2)
    assert [creator.name for creator in metadata.creators] == ["OpenAI", "Example Math Co-op"]
    assert metadata.in_language == ["en"]
    assert metadata.cite_as == complete_card.citation
    assert [license_.url for license_ in metadata.license or []] == [
        "https://spdx.org/licenses/MIT.html"
    ]
    assert [r.name for r in metadata.record_sets] == ["default/train", "default/test"]


def test_rai_fields_hold_the_contributors_text_and_the_measured_facts(
    complete_card: DatasetCard, croissant_path: Path
) -> None:
    metadata = _metadata(croissant_path).metadata

    assert metadata.data_collection == complete_card.data_collection
    assert metadata.data_biases == [complete_card.biases]
    assert metadata.data_limitations == [complete_card.limitations]
    assert metadata.data_use_cases == [complete_card.intended_uses]
    assert metadata.data_social_impact == complete_card.social_impact
    assert metadata.data_release_maintenance_plan == complete_card.maintenance_plan
    assert metadata.personal_sensitive_information == [
        complete_card.personal_sensitive_information,
        "aidx curation: the PII scan found nothing (email, phone, cn_id_number)",
    ]
    assert metadata.data_preprocessing_protocol == [
        "aidx curation: step 1 of 2, normalize_whitespace: 7,473 rows in, 7,473 rows out;"
        ' parameters {"columns": ["question", "answer"]}',
        "aidx curation: step 2 of 2, exact_dedup: 7,473 rows in, 7,473 rows out;"
        ' parameters {"columns": ["question"], "keep": "first"}',
    ]
    [annotation] = metadata.data_annotation_protocol or []
    assert annotation.startswith("aidx curation: human review of a sample of 200 rows")


def test_mlcroissant_reads_every_record_from_the_parquet_files(
    croissant_path: Path, train_table: pa.Table
) -> None:
    dataset = _metadata(croissant_path)

    train = list(dataset.records("default/train"))
    assert len(train) == train_table.num_rows == 7_473
    assert sum(1 for _ in dataset.records("default/test")) == 1_319
    first, expected = train[0], train_table.slice(0, 1).to_pylist()[0]
    assert first["default/train/question"].decode() == expected["question"]
    assert [s.decode() for s in first["default/train/steps"]] == expected["steps"]
    meta = first["default/train/meta"]
    assert meta["default/train/meta/final_answer"].decode() == "72"
    assert int(meta["default/train/meta/num_lines"]) == expected["meta"]["num_lines"]
    assert int(first["default/train/_source_row"]) == 0


def test_the_distribution_lists_each_file_with_its_digest_size_and_rows(
    complete_card: DatasetCard,
) -> None:
    doc = croissant_document(complete_card)
    objects = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    sets = [d for d in doc["distribution"] if d["@type"] == "cr:FileSet"]

    assert [
        (o["contentUrl"], o["sha256"], o["contentSize"], o["aidx:numRows"]) for o in objects
    ] == [(f.path, f.sha256, f"{f.num_bytes} B", f.num_rows) for f in complete_card.files]
    assert [(s["@id"], s["includes"]) for s in sets] == [
        ("default/train/files", ["data/train-00000-of-00001.parquet"]),
        ("default/test/files", ["data/test-00000-of-00001.parquet"]),
    ]
    assert {o["encodingFormat"] for o in objects + sets} == {"application/x-parquet"}


def test_field_data_types_follow_the_arrow_schema(complete_card: DatasetCard) -> None:
    fields = {f["name"]: f for f in croissant_document(complete_card)["recordSet"][0]["field"]}

    assert fields["question"]["dataType"] == "sc:Text"
    assert fields["question"]["source"] == {
        "fileSet": {"@id": "default/train/files"},
        "extract": {"column": "question"},
    }
    assert (fields["steps"]["isArray"], fields["steps"]["arrayShape"]) == (True, "-1")
    assert [(m["name"], m["dataType"]) for m in fields["meta"]["subField"]] == [
        ("final_answer", "sc:Text"),
        ("num_lines", "cr:Int32"),
    ]
    assert fields["meta"]["subField"][1]["source"]["transform"] == {"jsonPath": "num_lines"}
    assert fields["_source_row"]["dataType"] == "cr:Int64"
    assert fields["_source_file"]["description"].startswith("Provenance: ")


@pytest.mark.parametrize("which", ["card", "complete_card"])
def test_render_parse_render_is_stable(which: str, request: pytest.FixtureRequest) -> None:
    card: DatasetCard = request.getfixturevalue(which)
    text = render_croissant(card)

    assert parse_croissant(text) == card
    assert render_croissant(parse_croissant(text)) == text


def test_an_other_license_and_deep_types_round_trip_and_read(tmp_path: Path) -> None:
    table = pa.table(
        {
            "文本": pa.array(["甲", "乙"]),
            "spans": pa.array(
                [[{"start": 1, "label": "a"}], []],
                pa.list_(pa.struct([("start", pa.int32()), ("label", pa.string())])),
            ),
            "embedding": pa.array([[1, 2, 3, 4], [5, 6, 7, 8]], pa.list_(pa.float32(), 4)),
            "grid": pa.array([[[1, 2], [3]], []], pa.list_(pa.list_(pa.int8()))),
            "at": pa.array([1, 2], pa.timestamp("us", tz="UTC")),
            "ok": pa.array([True, False]),
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet")
    data = (tmp_path / "part-0.parquet").read_bytes()

    card = card_from_curation(
        dataset_id="ds_zh",
        version_id="ver_1",
        name="小学数学: 应用题",
        description="示例数据。",
        license="other",
        license_name="acme-data-1.0",
        license_link="https://example.org/acme-data-1.0",
        provider="示例数据公司",
        schema=table.schema,
        files=[
            {
                "path": "part-0.parquet",
                "sha256": hashlib.sha256(data).hexdigest(),
                "num_bytes": len(data),
                "num_rows": 2,
            }
        ],
        steps=[],
        content_hash="sha256:" + "0" * 64,
        language=["zh"],
    )
    text = render_croissant(card)
    (tmp_path / "croissant.json").write_text(text, encoding="utf-8")

    assert parse_croissant(text) == card
    assert render_croissant(parse_croissant(text)) == text
    dataset = _metadata(tmp_path / "croissant.json", complete=False)
    records = list(dataset.records("default/train"))
    assert records[0]["default/train/grid"] == [[1, 2], [3]]
    assert list(records[1]["default/train/embedding"]) == [5, 6, 7, 8]
    assert records[0]["default/train/spans"][0]["default/train/spans/label"] == b"a"
    assert croissant_document(card)["license"] == {
        "@type": "sc:CreativeWork",
        "name": "acme-data-1.0",
        "url": "https://example.org/acme-data-1.0",
    }


# --- bad input ---------------------------------------------------------------------------------


def test_text_that_is_not_json_is_refused_with_its_line() -> None:
    with pytest.raises(
        CardParseError, match=r"^line 2: not a Croissant file: the text is not JSON"
    ):
        parse_croissant('{"@context": {},\n  oops}')


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"name": "x", "license": "mit"},
            r"field '\$.@context': .*without an @context is not JSON-LD",
        ),
        (["not", "an", "object"], r"field '\$': .*must be a JSON object"),
        (
            {"@context": {"@vocab": "https://schema.org/"}, "@type": "sc:Person"},
            r"field '\$.@type'",
        ),
    ],
)
def test_json_that_is_not_a_croissant_document_is_refused(doc: Any, message: str) -> None:
    with pytest.raises(CardParseError, match=message):
        parse_croissant(json.dumps(doc))


def _edited(card: DatasetCard, change: Any) -> str:
    doc = croissant_document(card)
    change(doc)
    return json.dumps(doc)


def test_a_bad_digest_names_its_json_path(complete_card: DatasetCard) -> None:
    text = _edited(complete_card, lambda d: d["distribution"][1].update(sha256="XYZ"))

    with pytest.raises(CardParseError, match=r"field '\$.distribution\[1\].sha256': .*64 lower"):
        parse_croissant(text)


def test_an_unknown_license_names_the_license_property(complete_card: DatasetCard) -> None:
    text = _edited(complete_card, lambda d: d.update(license="https://example.org/my-licence"))

    with pytest.raises(CardParseError, match=r"field '\$.license': license .* names no known"):
        parse_croissant(text)


def test_a_bad_value_in_the_exchange_record_names_its_path(complete_card: DatasetCard) -> None:
    text = _edited(complete_card, lambda d: d["aidx:card"].update(update_frequency="hourly"))

    with pytest.raises(CardParseError, match=r"field '\$.aidx:card.update_frequency'"):
        parse_croissant(text)


def test_an_unknown_exchange_record_key_is_refused(complete_card: DatasetCard) -> None:
    text = _edited(complete_card, lambda d: d["aidx:card"].update(surprise=1))

    with pytest.raises(CardParseError, match=r"field '\$.aidx:card.surprise': unknown"):
        parse_croissant(text)


# --- a Croissant file another tool wrote ------------------------------------------------------

HUB_STYLE: dict[str, Any] = {
    "@context": {
        "@language": "en",
        "@vocab": "https://schema.org/",
        "cr": "http://mlcommons.org/croissant/",
        "dataBiases": "cr:dataBiases",
        "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
        "field": "cr:field",
        "recordSet": "cr:recordSet",
        "references": "cr:references",
        "subField": "cr:subField",
        "isArray": "cr:isArray",
        "arrayShape": "cr:arrayShape",
    },
    "@type": "sc:Dataset",
    "conformsTo": "http://mlcommons.org/croissant/1.1",
    "name": "apple_storage",
    "description": {"en": "Robot episodes.", "zh": "机器人数据。"},
    "license": "https://choosealicense.com/licenses/apache-2.0/",
    "dataBiases": "Recorded in one lab.",
    "recordSet": [
        {
            "@type": "cr:RecordSet",
            "dataType": "cr:Split",
            "@id": "default_splits",
            "field": [{"@type": "cr:Field", "name": "split_name", "dataType": "sc:Text"}],
        },
        {
            "@type": "cr:RecordSet",
            "@id": "default",
            "field": [
                {
                    "@type": "cr:Field",
                    "name": "default/split",
                    "dataType": "sc:Text",
                    "references": {"field": {"@id": "default_splits/split_name"}},
                },
                {"@type": "cr:Field", "name": "default/state", "dataType": "sc:Float",
                 "isArray": True, "arrayShape": "19"},
                {"@type": "cr:Field", "name": "default/index", "dataType": "cr:Int64"},
            ],
        },
    ],
}  # fmt: skip


def test_a_croissant_file_from_another_tool_yields_its_fields() -> None:
    fields = croissant_fields(json.dumps(HUB_STYLE))

    assert fields["pretty_name"] == "apple_storage"
    assert fields["description"] == "Robot episodes."
    assert fields["license"] == "apache-2.0"
    assert fields["biases"] == "Recorded in one lab."
    assert fields["dataset_info"] == {
        "features": [
            {"name": "state", "item": {"name": None, "dtype": "float64"}, "length": 19},
            {"name": "index", "dtype": "int64"},
        ]
    }


def test_a_croissant_file_without_the_exchange_record_names_what_is_missing() -> None:
    with pytest.raises(CardParseError, match=r"field 'dataset_id \(missing from the document\)'"):
        parse_croissant(json.dumps(HUB_STYLE))
