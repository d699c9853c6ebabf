"""Render a dataset card as a Hugging Face ``README.md`` and read it back.

The README is YAML front matter holding only the Hub's card metadata (in the Hub's spelling),
then markdown for people. The exchange fields the Hub has no key for travel in a fenced JSON block
after an ``<!-- aidx:exchange-record -->`` marker, so ``parse_readme(render_readme(card)) == card``.
The markdown prose is generated from the card and is not read back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import ValidationError

from dataset_cards.autofill import missing_fields
from dataset_cards.errors import CardParseError
from dataset_cards.render.text import (
    describe_license_class,
    describe_pii,
    describe_review,
    describe_scores,
    describe_volume,
)
from dataset_cards.schema import (
    EXCHANGE_FIELDS,
    HF_METADATA_FIELDS,
    HUMAN_FIELDS,
    PROVENANCE_COLUMNS,
    DatasetCard,
    Feature,
)

EXCHANGE_RECORD_MARKER = "<!-- aidx:exchange-record -->"
_FENCE_OPEN = "```json"
_FENCE_CLOSE = "```"
_FEATURE_KEYS = frozenset({"name", "dtype", "list", "struct", "length"})


# --- rendering -------------------------------------------------------------------------------


def render_readme(card: DatasetCard) -> str:
    """The card as a Hugging Face ``README.md``: YAML front matter, then markdown sections.

    The sections follow Datasheets for Datasets (motivation, composition, collection process,
    preprocessing, uses, distribution, maintenance), after a summary and the exchange's product
    description.
    """
    front = yaml.safe_dump(
        front_matter(card), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    sections = [
        f"# {_one_line(card.pretty_name)}",
        _summary(card),
        _product(card),
        _text_section("Motivation", card.motivation),
        _composition(card),
        _collection(card),
        _preprocessing(card),
        _uses(card),
        _distribution(card),
        _maintenance(card),
        _text_section("Citation", card.citation),
        _exchange(card),
        _missing(card),
    ]
    return f"---\n{front}---\n\n" + "\n\n".join(sections) + "\n"


def front_matter(card: DatasetCard) -> dict[str, Any]:
    """The Hub card metadata as it goes into the YAML front matter; empty values are left out."""
    data = card.model_dump(mode="json", include=set(HF_METADATA_FIELDS))
    data["dataset_info"]["features"] = [_feature_to_hf(f) for f in card.dataset_info.features]
    for config in data["configs"]:
        for entry in config["data_files"]:
            if len(entry["path"]) == 1:
                entry["path"] = entry["path"][0]
    return {key: data[key] for key in HF_METADATA_FIELDS if data[key] not in (None, [])}


def _feature_to_hf(feature: Feature) -> dict[str, Any]:
    return {"name": feature.name, **_type_to_hf(feature)}


def _type_to_hf(feature: Feature) -> dict[str, Any]:
    if feature.dtype is not None:
        return {"dtype": feature.dtype}
    if feature.struct is not None:
        return {"struct": [_feature_to_hf(member) for member in feature.struct]}
    assert feature.item is not None  # the model allows exactly one kind
    length = {} if feature.length is None else {"length": feature.length}
    return {"list": _element_to_hf(feature.item), **length}


def _element_to_hf(item: Feature) -> Any:
    """A list element in the Hub's simplified form: a dtype, a member list, or a nested list."""
    if item.dtype is not None:
        return item.dtype
    if item.struct is not None:
        return [_feature_to_hf(member) for member in item.struct]
    return _type_to_hf(item)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


_NOT_PROVIDED = "_Not provided yet._"


def _text(value: str | None) -> str:
    return value.strip() if value else _NOT_PROVIDED


def _text_section(title: str, value: str | None) -> str:
    return f"## {title}\n\n{_text(value)}"


def _summary(card: DatasetCard) -> str:
    body = card.description.strip() or "_No description has been provided yet._"
    return f"## Dataset summary\n\n{body}"


def _product(card: DatasetCard) -> str:
    lines = [
        "## Product description",
        "",
        f"- Provider: {_one_line(card.provider)}",
    ]
    if card.co_contributors:
        lines.append("- Co-contributors: " + ", ".join(_one_line(c) for c in card.co_contributors))
    lines += [
        f"- Scope: {_one_line(card.scope) if card.scope else _NOT_PROVIDED}",
        f"- Update frequency: {card.update_frequency or _NOT_PROVIDED}",
        f"- Volume: {describe_volume(card)}",
        f"- Licence: {_license_words(card)}",
        "- Licence template: "
        + (_code(card.license_template) if card.license_template else _NOT_PROVIDED),
        "- Price plans: "
        + (", ".join(_code(p) for p in card.price_plans) if card.price_plans else _NOT_PROVIDED),
        f"- Compliance assessment: {_compliance(card)}",
        f"- Quality evaluation: {_quality(card)}",
        "",
        "### Lawful source",
        "",
        _text(card.lawful_source_statement),
        "",
        "### Usage restrictions",
        "",
        _text(card.usage_restrictions),
    ]
    return "\n".join(lines)


def _license_words(card: DatasetCard) -> str:
    if card.license is None:
        return _NOT_PROVIDED
    if card.license == "other":
        named = f"[{card.license_name}]({card.license_link}) (`other`)"
    else:
        named = _code(card.license)
    return f"{named}; {describe_license_class(card.license_class)}"


def _compliance(card: DatasetCard) -> str:
    assessment = card.compliance_assessment
    if assessment is None:
        return "_Not assessed yet._"
    text = (
        f"{assessment.result}, by {_one_line(assessment.assessed_by)}"
        f" on {assessment.assessed_on.isoformat()}"
    )
    if assessment.reference:
        text += f" (ref. {_one_line(assessment.reference)})"
    if assessment.summary:
        text += f": {_one_line(assessment.summary)}"
    return text


def _quality(card: DatasetCard) -> str:
    summary = _one_line(card.quality_summary) if card.quality_summary else "_Not evaluated yet._"
    if card.quality_scores is None:
        return summary
    return f"{summary} Scores: {describe_scores(card.quality_scores)}."


def _composition(card: DatasetCard) -> str:
    info = card.dataset_info
    lines = ["## Composition", ""]
    if card.composition:
        lines += [card.composition.strip(), ""]
    lines += ["### Structure", ""]
    if info.splits:
        lines += ["| split | examples | bytes |", "|---|---:|---:|"]
        lines += [f"| {s.name} | {s.num_examples:,} | {s.num_bytes:,} |" for s in info.splits]
        lines += ["", "Byte counts are of the stored data files.", ""]
    lines += ["| column | type | note |", "|---|---|---|"]
    for feature in info.features:
        name = feature.name or ""
        note = ""
        if feature.is_provenance:
            note = "provenance: " + PROVENANCE_COLUMNS.get(name, "added by the exchange")
        lines.append(f"| {_code(_cell(name))} | {_code(_cell(feature.type_label()))} | {note} |")
    if any(f.is_provenance for f in info.features):
        lines += [
            "",
            "Columns whose names begin with `_` are provenance columns added by the exchange during"
            " curation. They record where each row came from; they are not contributed content.",
        ]
    lines += [
        "",
        "### Personal and sensitive information",
        "",
        _text(card.personal_sensitive_information),
        "",
        _sentence(describe_pii(card.pii_counts)),
    ]
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _collection(card: DatasetCard) -> str:
    creators = ", ".join(_code(c) for c in card.annotations_creators) or _NOT_PROVIDED
    lines = [
        "## Collection process",
        "",
        _text(card.data_collection),
        "",
        "### Annotation",
        "",
        f"- Annotations creators: {creators}",
        f"- Review: {_sentence(describe_review(card.review))}",
    ]
    if card.annotation_protocol:
        lines += ["", card.annotation_protocol.strip()]
    return "\n".join(lines)


def _preprocessing(card: DatasetCard) -> str:
    lines = ["## Preprocessing", ""]
    if not card.preprocessing:
        lines.append("_No curation steps were recorded._")
    else:
        lines += ["The steps below ran, in this order, to produce this version.", ""]
    for number, step in enumerate(card.preprocessing, start=1):
        lines.append(
            f"{number}. {_code(step.step)}: {step.rows_in:,} rows in, {step.rows_out:,} rows out."
        )
        if step.dropped_by_reason:
            dropped = ", ".join(
                f"{_code(reason)} {count:,}" for reason, count in step.dropped_by_reason.items()
            )
            lines.append(f"   - dropped: {dropped}")
        else:
            lines.append("   - dropped: nothing")
        if step.params:
            params = json.dumps(step.params, ensure_ascii=False, sort_keys=True)
            lines.append(f"   - parameters: {_code(params)}")
    if card.preprocessing_notes:
        lines += ["", card.preprocessing_notes.strip()]
    return "\n".join(lines)


def _uses(card: DatasetCard) -> str:
    return "\n".join(
        [
            "## Uses",
            "",
            "### Intended uses",
            "",
            _text(card.intended_uses),
            "",
            "### Limitations",
            "",
            _text(card.limitations),
            "",
            "### Biases",
            "",
            _text(card.biases),
            "",
            "### Social impact",
            "",
            _text(card.social_impact),
        ]
    )


def _distribution(card: DatasetCard) -> str:
    lines = ["## Distribution", ""]
    if card.license is None:
        lines.append("_No licence has been given yet._")
    else:
        lines.append(f"This dataset is distributed under the licence {_license_words(card)}.")
    if card.source_datasets:
        lines += ["", "Source datasets: " + ", ".join(_code(s) for s in card.source_datasets)]
    lines += ["", "### Files", ""]
    if not card.files:
        lines.append("_No files are listed._")
    else:
        lines += ["| path | rows | bytes | sha256 |", "|---|---:|---:|---|"]
        lines += [
            f"| {_code(_cell(f.path))} | {f.num_rows:,} | {f.num_bytes:,} | {_code(f.sha256)} |"
            for f in card.files
        ]
    return "\n".join(lines)


def _maintenance(card: DatasetCard) -> str:
    frequency = card.update_frequency or _NOT_PROVIDED
    return "\n".join(
        ["## Maintenance", "", _text(card.maintenance_plan), "", f"Update frequency: {frequency}"]
    )


def _exchange(card: DatasetCard) -> str:
    record = card.model_dump(mode="json", include=set(EXCHANGE_FIELDS))
    record_json = json.dumps(record, ensure_ascii=False, indent=2)
    return "\n".join(
        [
            "## Exchange metadata",
            "",
            "| field | value |",
            "|---|---|",
            f"| dataset id | {_code(_cell(card.dataset_id))} |",
            f"| version id | {_code(_cell(card.version_id))} |",
            f"| content hash | {_code(_cell(card.content_hash))} |",
            f"| provider | {_cell(card.provider)} |",
            "",
            "The block below is the exchange's machine-readable record of this card and is read"
            " back by aidx; change the card through aidx rather than by editing it here.",
            "",
            EXCHANGE_RECORD_MARKER,
            _FENCE_OPEN,
            record_json,
            _FENCE_CLOSE,
        ]
    )


def _missing(card: DatasetCard) -> str:
    missing = missing_fields(card)
    if not missing:
        return "## Missing information\n\nNone: every field a person provides is filled in."
    lines = [
        "## Missing information",
        "",
        "A person must still provide:",
        "",
    ]
    lines += [f"- {_code(name)}: {HUMAN_FIELDS[name]}" for name in missing]
    return "\n".join(lines)


# --- parsing ---------------------------------------------------------------------------------

FieldPath = tuple[str | int, ...]
Locate = Callable[[FieldPath], int | None]


def parse_readme(text: str) -> DatasetCard:
    """Read back a README written by :func:`render_readme`.

    Raises :class:`CardParseError` naming the README line (1-based) and the field that is wrong.
    """
    lines = text.splitlines()
    front, locate_front = _front_matter(lines)
    record, locate_record = _exchange_record(lines)
    try:
        return DatasetCard.model_validate({**front, **record})
    except ValidationError as exc:
        errors = exc.errors()
        path: FieldPath = tuple(errors[0]["loc"])
        locate = locate_record if path and path[0] in record else locate_front
        detail = "; ".join(
            (_dotted(tuple(e["loc"])) + ": " if e["loc"] else "") + e["msg"] for e in errors
        )
        raise CardParseError(detail, line=locate(path), field=_dotted(path) or None) from exc


def readme_fields(text: str) -> dict[str, Any]:
    """The card fields a README states, unvalidated: its front matter and, when it has one, the
    exchange record. Lets a contributor bring a Hub README that aidx did not write.

    Raises :class:`CardParseError` naming the line when the front matter cannot be read.
    """
    lines = text.splitlines()
    front, _ = _front_matter(lines)
    info = front.get("dataset_info")
    if isinstance(info, dict) and "features" in info:
        features = [f.model_dump(mode="json", exclude_none=True) for f in info["features"]]
        front = {**front, "dataset_info": {**info, "features": features}}
    if any(line.strip() == EXCHANGE_RECORD_MARKER for line in lines):
        record, _ = _exchange_record(lines)
        return {**front, **record}
    return front


def _dotted(path: FieldPath) -> str:
    return ".".join(str(part) for part in path)


def _locator(snippet: list[str], first_line: int) -> Locate:
    """Map a path of keys and indices to the README line of the deepest node it reaches.

    ``snippet`` is YAML (JSON is YAML too) whose first line is README line ``first_line``.
    """
    try:
        root: yaml.Node | None = yaml.compose("\n".join(snippet))
    except yaml.YAMLError:
        root = None

    def locate(path: FieldPath) -> int | None:
        node, line = root, None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if k.value == str(part)), None)
                key = next((k for k, _ in node.value if k.value == str(part)), None)
                if match is None or key is None:
                    break
                node, line = match, key.start_mark.line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line
            else:
                break
        return None if line is None else first_line + line

    return locate


def _front_matter(lines: list[str]) -> tuple[dict[str, Any], Locate]:
    """The front matter's keys (features converted back) and a locator of its lines."""
    if not lines or lines[0].rstrip() != "---":
        raise CardParseError("the README must open with a '---' line (front matter)", line=1)
    close = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if close is None:
        raise CardParseError("the front matter opened here is never closed by a '---' line", line=1)
    snippet = lines[1:close]
    try:
        loaded = yaml.safe_load("\n".join(snippet))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None  # +1 for 1-based, +1 for the '---'
        problem = getattr(exc, "problem", None) or str(exc)
        raise CardParseError(f"the front matter is not valid YAML: {problem}", line=line) from exc
    if not isinstance(loaded, dict):
        raise CardParseError("the front matter must be a YAML mapping of keys", line=2)
    locate = _locator(snippet, first_line=2)
    for key in loaded:
        if key not in HF_METADATA_FIELDS:
            raise CardParseError(
                f"unknown front matter key {key!r}; expected one of"
                f" {', '.join(HF_METADATA_FIELDS)}",
                line=locate((key,)),
                field=str(key),
            )
    info = loaded.get("dataset_info")
    if isinstance(info, dict) and "features" in info:
        path: FieldPath = ("dataset_info", "features")
        features = info["features"]
        if not isinstance(features, list):
            raise CardParseError("features must be a list", line=locate(path), field=_dotted(path))
        converted = [_feature_from_hf(f, (*path, i), locate) for i, f in enumerate(features)]
        loaded = {**loaded, "dataset_info": {**info, "features": converted}}
    return loaded, locate


def _feature_from_hf(obj: Any, path: FieldPath, locate: Locate) -> Feature:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise _feature_error("a feature must be a mapping with a 'name'", path, locate)
    return _type_from_hf(obj, obj["name"], path, locate)


def _feature_error(message: str, path: FieldPath, locate: Locate) -> CardParseError:
    return CardParseError(message, line=locate(path), field=_dotted(path))


def _type_from_hf(
    obj: dict[str, Any], name: str | None, path: FieldPath, locate: Locate
) -> Feature:
    unknown = sorted(set(obj) - _FEATURE_KEYS)
    if unknown:
        raise _feature_error(
            f"unsupported feature keys {unknown}; this reader knows dtype, list, struct, length",
            (*path, unknown[0]),
            locate,
        )
    kinds = [k for k in ("dtype", "list", "struct") if k in obj]
    if len(kinds) != 1:
        raise _feature_error(
            f"a feature needs exactly one of dtype, list, struct; got {kinds}", path, locate
        )
    kind = kinds[0]
    try:
        if kind == "dtype":
            return Feature(name=name, dtype=obj["dtype"])
        if kind == "struct":
            members = obj["struct"]
            if not isinstance(members, list):
                raise _feature_error("struct must be a list of features", (*path, kind), locate)
            return Feature(
                name=name,
                struct=[
                    _feature_from_hf(m, (*path, kind, i), locate) for i, m in enumerate(members)
                ],
            )
        item = _element_from_hf(obj["list"], (*path, kind), locate)
        return Feature(name=name, item=item, length=obj.get("length"))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _feature_error(error["msg"], (*path, *error["loc"]), locate) from exc


def _element_from_hf(element: Any, path: FieldPath, locate: Locate) -> Feature:
    if isinstance(element, str):
        return Feature(dtype=element)
    if isinstance(element, list):
        return Feature(
            struct=[_feature_from_hf(m, (*path, i), locate) for i, m in enumerate(element)]
        )
    if isinstance(element, dict):
        return _type_from_hf(element, None, path, locate)
    raise _feature_error("a list element must be a dtype, a struct or a list", path, locate)


def _exchange_record(lines: list[str]) -> tuple[dict[str, Any], Locate]:
    """The JSON exchange record after the marker, and a locator of its lines."""
    markers = [i for i, line in enumerate(lines) if line.strip() == EXCHANGE_RECORD_MARKER]
    if not markers:
        raise CardParseError(
            f"no exchange record: the README lacks the {EXCHANGE_RECORD_MARKER} marker"
            f" followed by a {_FENCE_OPEN} block",
            field="exchange record",
        )
    opening = markers[-1] + 1
    if opening >= len(lines) or lines[opening].strip() != _FENCE_OPEN:
        raise CardParseError(
            f"the exchange record marker must be followed by a {_FENCE_OPEN} line",
            line=opening + 1,
        )
    closing = next(
        (i for i in range(opening + 1, len(lines)) if lines[i].strip() == _FENCE_CLOSE), None
    )
    if closing is None:
        raise CardParseError("the exchange record block is never closed", line=opening + 1)
    snippet = lines[opening + 1 : closing]
    first_line = opening + 2
    try:
        record = json.loads("\n".join(snippet))
    except json.JSONDecodeError as exc:
        raise CardParseError(
            f"the exchange record is not valid JSON: {exc.msg}", line=first_line - 1 + exc.lineno
        ) from exc
    if not isinstance(record, dict):
        raise CardParseError("the exchange record must be a JSON object", line=first_line)
    locate = _locator(snippet, first_line)
    for key in record:
        if key not in EXCHANGE_FIELDS:
            raise CardParseError(
                f"unknown exchange record key {key!r}; expected one of"
                f" {', '.join(EXCHANGE_FIELDS)}",
                line=locate((key,)),
                field=key,
            )
    return record, locate
