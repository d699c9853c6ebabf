"""Render a dataset card as Croissant 1.1 JSON-LD (``croissant.json``) and read it back.

What Croissant has a property for goes there: name, description, licence, languages, keywords,
creators, version, publication date, citation, the Responsible-AI (``rai:``) fields, one
``cr:FileObject`` per data file (with its sha256 and size), one ``cr:FileSet`` and one
``cr:RecordSet`` per split, with a field per column whose data type follows the Arrow schema.
The rest of the card travels in one ``aidx:card`` JSON literal, so
``parse_croissant(render_croissant(card)) == card``.

The RAI fields hold the contributor's text first, then sentences the exchange derives from its
measurements (steps run, PII found, review); those start with ``aidx curation:`` and are
re-derived rather than read back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dataset_cards.errors import CardParseError
from dataset_cards.licenses import license_id_from_reference, license_url
from dataset_cards.render.text import (
    MACHINE_PREFIX,
    describe_pii,
    describe_review,
    describe_step,
)
from dataset_cards.schema import PROVENANCE_COLUMNS, DataFile, DatasetCard, Feature

CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
CROISSANT_RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"
AIDX_NAMESPACE = "urn:aidx:"
SCHEMA_ORG = "https://schema.org/"
CR = "http://mlcommons.org/croissant/"
RAI = "http://mlcommons.org/croissant/RAI/"

# The standard Croissant 1.1 context (as mlcroissant writes it), plus the exchange's namespace.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "aidx": AIDX_NAMESPACE,
    "aidx:card": {"@id": "aidx:card", "@type": "@json"},
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": CR,
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "rai": RAI,
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# Card text fields and the single-valued (ONE) or list-valued (MANY) RAI property each fills.
RAI_TEXT_FIELDS: dict[str, tuple[str, bool]] = {
    "data_collection": ("dataCollection", False),
    "preprocessing_notes": ("dataPreprocessingProtocol", True),
    "annotation_protocol": ("dataAnnotationProtocol", True),
    "personal_sensitive_information": ("personalSensitiveInformation", True),
    "biases": ("dataBiases", True),
    "limitations": ("dataLimitations", True),
    "intended_uses": ("dataUseCases", True),
    "social_impact": ("dataSocialImpact", False),
    "maintenance_plan": ("dataReleaseMaintenancePlan", False),
}
# Card fields carried by standard Croissant properties; everything else goes in ``aidx:card``.
STANDARD_FIELDS: frozenset[str] = frozenset(
    [
        "pretty_name",
        "description",
        "license",
        "license_name",
        "license_link",
        "language",
        "tags",
        "version_number",
        "date_published",
        "provider",
        "co_contributors",
        "citation",
        "files",
        *RAI_TEXT_FIELDS,
    ]
)
RECORD_FIELDS: tuple[str, ...] = tuple(
    name for name in DatasetCard.model_fields if name not in STANDARD_FIELDS
)

# Hugging Face dtype -> Croissant data type; anything not listed is sc:Text.
_DATA_TYPES: dict[str, str] = {
    "bool": "sc:Boolean",
    "int8": "cr:Int8",
    "int16": "cr:Int16",
    "int32": "cr:Int32",
    "int64": "cr:Int64",
    "uint8": "cr:UInt8",
    "uint16": "cr:UInt16",
    "uint32": "cr:UInt32",
    "uint64": "cr:UInt64",
    "float16": "cr:Float16",
    "float32": "cr:Float32",
    "float64": "cr:Float64",
    "date32": "sc:Date",
    "date64": "sc:Date",
}
# Croissant data type (expanded IRI) -> Hugging Face dtype, for cards written by other tools.
_DTYPES: dict[str, str] = {
    SCHEMA_ORG + "Text": "string",
    SCHEMA_ORG + "URL": "string",
    SCHEMA_ORG + "Boolean": "bool",
    SCHEMA_ORG + "Integer": "int64",
    SCHEMA_ORG + "Float": "float64",
    SCHEMA_ORG + "Number": "float64",
    SCHEMA_ORG + "Date": "date32",
    SCHEMA_ORG + "DateTime": "timestamp[us]",
    SCHEMA_ORG + "Time": "time64[us]",
    **{CR + value.removeprefix("cr:"): key for key, value in _DATA_TYPES.items() if "cr:" in value},
}
_ENCODING_FORMATS: dict[str, str] = {
    ".parquet": "application/x-parquet",
    ".jsonl": "application/jsonlines",
    ".json": "application/json",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".arrow": "application/vnd.apache.arrow.file",
}
# Prefixes Croissant files use; a file that forgets to declare one still reads as intended.
_WELL_KNOWN_PREFIXES: dict[str, str] = {
    "sc": SCHEMA_ORG,
    "cr": CR,
    "rai": RAI,
    "dct": "http://purl.org/dc/terms/",
    "aidx": AIDX_NAMESPACE,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:B|bytes?)?\s*$")


# --- rendering -------------------------------------------------------------------------------


def render_croissant(card: DatasetCard) -> str:
    """The card as ``croissant.json`` text: indented JSON-LD ending with a newline."""
    return json.dumps(croissant_document(card), ensure_ascii=False, indent=2) + "\n"


def croissant_document(card: DatasetCard) -> dict[str, Any]:
    """The card as a Croissant 1.1 JSON-LD document (a dict)."""
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_1_1, CROISSANT_RAI_1_0],
        "name": card.pretty_name,
    }
    if card.description.strip():
        doc["description"] = card.description
    if card.version_number is not None:
        doc["version"] = f"{card.version_number}.0.0"
    if card.date_published is not None:
        doc["datePublished"] = card.date_published.isoformat()
    if card.license is not None:
        doc["license"] = _license_node(card)
    if card.language:
        doc["inLanguage"] = card.language
    if card.tags:
        doc["keywords"] = card.tags
    doc["creator"] = [
        {"@type": "sc:Organization", "name": name}
        for name in [card.provider, *card.co_contributors]
    ]
    if card.citation is not None:
        doc["citeAs"] = card.citation
    doc.update(_rai(card))
    doc["aidx:card"] = card.model_dump(mode="json", include=set(RECORD_FIELDS))
    doc["distribution"] = [_file_object(f) for f in card.files] + [fs for fs, _ in _file_sets(card)]
    record_sets = [_record_set(card, set_id, name) for _, (set_id, name) in _file_sets(card)]
    if record_sets:
        doc["recordSet"] = record_sets
    return doc


def _license_node(card: DatasetCard) -> dict[str, Any]:
    assert card.license is not None
    if card.license == "other":
        return {"@type": "sc:CreativeWork", "name": card.license_name, "url": card.license_link}
    node: dict[str, Any] = {"@type": "sc:CreativeWork", "name": card.license}
    url = license_url(card.license)
    if url is not None:
        node["url"] = url
    return node


def _machine_lines(card: DatasetCard, field: str) -> list[str]:
    if field == "preprocessing_notes":
        total = len(card.preprocessing)
        return [
            MACHINE_PREFIX + describe_step(number, total, step)
            for number, step in enumerate(card.preprocessing, start=1)
        ]
    if field == "annotation_protocol" and card.review is not None:
        return [MACHINE_PREFIX + describe_review(card.review)]
    if field == "personal_sensitive_information" and card.pii_counts is not None:
        return [MACHINE_PREFIX + describe_pii(card.pii_counts)]
    return []


def _rai(card: DatasetCard) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, (prop, many) in RAI_TEXT_FIELDS.items():
        text: str | None = getattr(card, field)
        if many:
            values = ([text] if text is not None else []) + _machine_lines(card, field)
            if values:
                out[f"rai:{prop}"] = values
        elif text is not None:
            out[f"rai:{prop}"] = text
    return out


def _encoding_format(path: str) -> str:
    for suffix, mime in _ENCODING_FORMATS.items():
        if path.lower().endswith(suffix):
            return mime
    return "application/octet-stream"


def _file_object(data_file: DataFile) -> dict[str, Any]:
    return {
        "@type": "cr:FileObject",
        "@id": data_file.path,
        "name": data_file.path,
        "contentUrl": data_file.path,
        "encodingFormat": _encoding_format(data_file.path),
        "contentSize": f"{data_file.num_bytes} B",
        "sha256": data_file.sha256,
        "aidx:numRows": data_file.num_rows,
    }


def _file_sets(card: DatasetCard) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """One FileSet per (config, split), with the record set it feeds: (set id, record set id)."""
    out = []
    for config in card.configs:
        for entry in config.data_files:
            record_set_id = f"{config.config_name}/{entry.split}"
            set_id = f"{record_set_id}/files"
            file_set = {
                "@type": "cr:FileSet",
                "@id": set_id,
                "name": set_id,
                "description": f"The files of split {entry.split!r} of config"
                f" {config.config_name!r}.",
                "encodingFormat": _encoding_format(entry.path[0]),
                "includes": entry.path,
            }
            out.append((file_set, (set_id, record_set_id)))
    return out


def _record_set(card: DatasetCard, set_id: str, record_set_id: str) -> dict[str, Any]:
    config, split = record_set_id.split("/", 1)
    source = {"fileSet": {"@id": set_id}}
    return {
        "@type": "cr:RecordSet",
        "@id": record_set_id,
        "name": record_set_id,
        "description": f"The rows of split {split!r} of config {config!r}.",
        "field": [
            _field(feature, record_set_id, source, feature.name or "", [])
            for feature in card.dataset_info.features
        ],
    }


def _field(
    feature: Feature, parent_id: str, source: dict[str, Any], column: str, json_path: list[str]
) -> dict[str, Any]:
    """A Croissant field for a feature: lists become array dimensions, structs sub-fields."""
    field_id = f"{parent_id}/{feature.name}"
    dims: list[int] = []
    base = feature
    while base.item is not None:
        dims.append(base.length or -1)
        base = base.item
    out: dict[str, Any] = {"@type": "cr:Field", "@id": field_id, "name": feature.name}
    if feature.is_provenance and feature.name in PROVENANCE_COLUMNS:
        out["description"] = "Provenance: " + PROVENANCE_COLUMNS[feature.name]
    else:
        out["description"] = f"Column {column!r}" + (
            f", member {'.'.join(json_path)!r}" if json_path else ""
        )
    if base.dtype is not None:
        out["dataType"] = _DATA_TYPES.get(
            base.dtype, "sc:DateTime" if base.dtype.startswith("timestamp") else "sc:Text"
        )
        extract: dict[str, Any] = {**source, "extract": {"column": column}}
        if json_path:
            extract["transform"] = {"jsonPath": ".".join(json_path)}
        out["source"] = extract
        out["aidx:dtype"] = base.dtype
    else:
        # Below an array, members are addressed relative to the element.
        prefix = [] if dims else json_path
        out["subField"] = [
            _field(member, field_id, source, column, [*prefix, member.name or ""])
            for member in base.struct or []
        ]
    if dims:
        out["isArray"] = True
        out["arrayShape"] = ",".join(str(d) for d in dims)
    return out


# --- parsing ---------------------------------------------------------------------------------


def parse_croissant(text: str) -> DatasetCard:
    """Read a card back from ``croissant.json`` text written by :func:`render_croissant`.

    Raises :class:`CardParseError` naming the JSON path (``$.distribution[0].sha256``) that is
    wrong, or saying why the text is not a Croissant JSON-LD document.
    """
    fields, where = _fields(text)
    try:
        return DatasetCard.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors()
        first = tuple(errors[0]["loc"])
        detail = "; ".join(
            (".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"] for e in errors
        )
        raise CardParseError(detail, field=where(first)) from exc


def croissant_fields(text: str) -> dict[str, Any]:
    """The card fields a Croissant document states, unvalidated. Works on Croissant files that
    other tools wrote (a contributor's own card), which lack the exchange's record.

    Raises :class:`CardParseError` when the text is not a Croissant JSON-LD document.
    """
    return _fields(text)[0]


@dataclass
class _Reader:
    """Expands a document's keys and values to IRIs with its own ``@context`` (prefixes, terms
    and ``@vocab``), so documents that spell properties differently read the same."""

    terms: dict[str, str]
    prefixes: dict[str, str]
    vocab: str

    @classmethod
    def from_context(cls, context: Any) -> _Reader:
        contexts = context if isinstance(context, list) else [context]
        terms: dict[str, str] = {}
        vocab = SCHEMA_ORG
        for ctx in contexts:
            if not isinstance(ctx, dict):
                continue  # a remote context by URL: fall back on the standard spellings
            for key, value in ctx.items():
                if key == "@vocab" and isinstance(value, str):
                    vocab = value
                elif not key.startswith("@"):
                    iri = value.get("@id") if isinstance(value, dict) else value
                    if isinstance(iri, str):
                        terms[key] = iri
        prefixes = {**_WELL_KNOWN_PREFIXES, **{k: v for k, v in terms.items() if ":" not in k}}
        return cls(terms=terms, prefixes=prefixes, vocab=vocab)

    def iri(self, key: str) -> str:
        value = self.terms.get(key, key)
        if "://" in value or value.startswith("urn:"):
            return _normalise_schema(value)
        if ":" in value:
            prefix, local = value.split(":", 1)
            if prefix in self.prefixes:
                return _normalise_schema(self.prefixes[prefix] + local)
            return value
        return _normalise_schema(self.vocab + value)

    def get(self, node: dict[str, Any], iri: str, *alternatives: str) -> tuple[str, Any] | None:
        """The (key, value) of the first property of ``node`` that expands to one of the IRIs."""
        wanted = {iri, *alternatives}
        for key, value in node.items():
            if not key.startswith("@") and self.iri(key) in wanted:
                return key, value
        return None

    def type_of(self, node: dict[str, Any]) -> str:
        kind = node.get("@type")
        kind = kind[0] if isinstance(kind, list) and kind else kind
        return self.iri(kind) if isinstance(kind, str) else ""


def _normalise_schema(iri: str) -> str:
    """schema.org IRIs with ``http:`` read as the ``https:`` ones Croissant uses."""
    if iri.startswith("http://schema.org/"):
        return SCHEMA_ORG + iri.removeprefix("http://schema.org/")
    return iri


def _fields(text: str) -> tuple[dict[str, Any], Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardParseError(
            f"not a Croissant file: the text is not JSON ({exc.msg})", line=exc.lineno
        ) from exc
    if not isinstance(doc, dict):
        raise CardParseError("not a Croissant file: JSON-LD must be a JSON object", field="$")
    if "@context" not in doc:
        raise CardParseError(
            "not a Croissant file: JSON without an @context is not JSON-LD", field="$.@context"
        )
    reader = _Reader.from_context(doc["@context"])
    if reader.type_of(doc) != SCHEMA_ORG + "Dataset":
        raise CardParseError(
            f"a Croissant document is a sc:Dataset, not {doc.get('@type')!r}", field="$.@type"
        )
    fields: dict[str, Any] = {}
    keys: dict[str, str] = {}  # card field -> JSON path, for error messages

    def take(field: str, iri: str, convert: Any, *alternatives: str) -> None:
        found = reader.get(doc, iri, *alternatives)
        if found is not None:
            key, value = found
            keys[field] = f"$.{key}"
            fields[field] = convert(value, f"$.{key}")

    take("pretty_name", SCHEMA_ORG + "name", _one_text)
    take("description", SCHEMA_ORG + "description", _one_text)
    take("version_number", SCHEMA_ORG + "version", _version_number)
    take("date_published", SCHEMA_ORG + "datePublished", _one_text)
    take("language", SCHEMA_ORG + "inLanguage", _texts)
    take("tags", SCHEMA_ORG + "keywords", _texts)
    take("citation", CR + "citeAs", _one_text)
    license_ = reader.get(doc, SCHEMA_ORG + "license")
    if license_ is not None:
        path = f"$.{license_[0]}"
        keys.update(
            dict.fromkeys(("license", "license_name", "license_link", "license_class"), path)
        )
        fields.update(_license(license_[1], path, reader))
    creators = reader.get(doc, SCHEMA_ORG + "creator")
    if creators is not None:
        names = [_name(c, f"$.{creators[0]}", reader) for c in _as_list(creators[1])]
        if names:
            keys["provider"] = keys["co_contributors"] = f"$.{creators[0]}"
            fields["provider"], fields["co_contributors"] = names[0], names[1:]
    for field, (prop, many) in RAI_TEXT_FIELDS.items():
        found = reader.get(doc, RAI + prop, CR + prop)
        if found is None:
            continue
        key, value = found
        keys[field] = f"$.{key}"
        values = _texts(value, f"$.{key}") if many else [_one_text(value, f"$.{key}")]
        human = [v for v in values if not v.startswith(MACHINE_PREFIX)]
        if human:
            fields[field] = "\n\n".join(human)
    distribution = reader.get(doc, SCHEMA_ORG + "distribution")
    if distribution is not None:
        fields["files"], file_paths = _files(distribution, reader)
        keys.update({f"files.{i}": path for i, path in enumerate(file_paths)})
    record = reader.get(doc, AIDX_NAMESPACE + "card")
    if record is not None:
        key, value = record
        value = value.get("@value", value) if isinstance(value, dict) else value
        if not isinstance(value, dict):
            raise CardParseError("the exchange record must be a JSON object", field=f"$.{key}")
        for name in value:
            if name not in RECORD_FIELDS:
                raise CardParseError(
                    f"unknown exchange record key {name!r}; expected one of"
                    f" {', '.join(RECORD_FIELDS)}",
                    field=f"$.{key}.{name}",
                )
            keys[name] = f"$.{key}.{name}"
        fields.update(value)
    elif "dataset_info" not in fields:
        features = _features_from_record_sets(doc, reader)
        if features:
            fields["dataset_info"] = {"features": features}

    def where(loc: tuple[str | int, ...]) -> str:
        if not loc:
            return "$"
        head = str(loc[0])
        if head == "files" and len(loc) > 1 and f"files.{loc[1]}" in keys:
            return keys[f"files.{loc[1]}"] + "".join(f".{p}" for p in loc[2:])
        base = keys.get(head)
        if base is None:
            return f"{head} (missing from the document)"
        if base.startswith("$.aidx:card"):
            return base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        return base

    return fields, where


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _one_text(value: Any, path: str) -> str:
    texts = _texts(value, path)
    if len(texts) != 1:
        raise CardParseError(f"expected one text value, found {len(texts)}", field=path)
    return texts[0]


def _texts(value: Any, path: str) -> list[str]:
    out: list[str] = []
    for index, item in enumerate(_as_list(value)):
        where = f"{path}[{index}]" if isinstance(value, list) else path
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("@value"), str):
            out.append(item["@value"])
        elif isinstance(item, dict) and item and all(isinstance(v, str) for v in item.values()):
            # a language map, as Croissant 1.1 allows for name and description
            out.append(item.get("en") or next(iter(item.values())))
        else:
            raise CardParseError(f"expected text, found {json.dumps(item)[:60]}", field=where)
    return out


def _version_number(value: Any, path: str) -> int:
    text = str(value.get("@value") if isinstance(value, dict) else value)
    match = re.fullmatch(r"(\d+)(?:\.0\.0)?", text.strip())
    if match is None:
        raise CardParseError(
            f"version {text!r} is not an exchange version number (N or N.0.0)", field=path
        )
    return int(match.group(1))


def _name(node: Any, path: str, reader: _Reader) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        found = reader.get(node, SCHEMA_ORG + "name")
        if found is not None:
            return _one_text(found[1], f"{path}.{found[0]}")
    raise CardParseError("a creator must be a name or an object with a name", field=path)


def _license(value: Any, path: str, reader: _Reader) -> dict[str, Any]:
    values = _as_list(value)
    if len(values) != 1:
        raise CardParseError(f"expected one licence, found {len(values)}", field=path)
    node = values[0]
    if isinstance(node, str):
        license_id = license_id_from_reference(node)
        if license_id is None:
            raise CardParseError(
                f"license {node!r} names no known licence (an id such as mit, an SPDX id or"
                " an SPDX URL); describe any other licence as a CreativeWork with name and url",
                field=path,
            )
        return {"license": license_id}
    if not isinstance(node, dict):
        raise CardParseError("a licence is a URL, an id or a CreativeWork", field=path)
    name = reader.get(node, SCHEMA_ORG + "name")
    url = reader.get(node, SCHEMA_ORG + "url")
    name_text = _one_text(name[1], f"{path}.{name[0]}") if name else None
    url_text = _one_text(url[1], f"{path}.{url[0]}") if url else None
    for reference in (name_text, url_text):
        if reference is not None and (known := license_id_from_reference(reference)):
            return {"license": known}
    if name_text is None or url_text is None:
        raise CardParseError(
            "a licence that is not a known id needs both a name and a url", field=path
        )
    return {"license": "other", "license_name": name_text, "license_link": url_text}


def _files(found: tuple[str, Any], reader: _Reader) -> tuple[list[dict[str, Any]], list[str]]:
    key, value = found
    files: list[dict[str, Any]] = []
    paths: list[str] = []
    for index, node in enumerate(_as_list(value)):
        path = f"$.{key}[{index}]"
        if not isinstance(node, dict):
            raise CardParseError("a distribution entry must be an object", field=path)
        if reader.type_of(node) != CR + "FileObject":
            continue
        entry: dict[str, Any] = {}
        for card_key, iri in (
            ("path", SCHEMA_ORG + "contentUrl"),
            ("sha256", SCHEMA_ORG + "sha256"),
            ("num_bytes", SCHEMA_ORG + "contentSize"),
            ("num_rows", AIDX_NAMESPACE + "numRows"),
        ):
            hit = (
                reader.get(node, iri, CR + "sha256")
                if card_key == "sha256"
                else reader.get(node, iri)
            )
            if hit is None:
                continue
            raw = hit[1].get("@value") if isinstance(hit[1], dict) else hit[1]
            if card_key == "num_bytes" and isinstance(raw, str):
                size = _SIZE_RE.match(raw)
                if size is None:
                    raise CardParseError(
                        f"contentSize {raw!r} is not a byte count such as '1024 B'",
                        field=f"{path}.{hit[0]}",
                    )
                raw = int(size.group(1))
            entry[card_key] = raw
        files.append(entry)
        paths.append(path)
    return files, paths


def _features_from_record_sets(doc: dict[str, Any], reader: _Reader) -> list[dict[str, Any]]:
    """Features of a Croissant file without the exchange record: its first record set's fields
    (a split field, which references the split record set, is left out)."""
    found = reader.get(doc, CR + "recordSet")
    if found is None:
        return []
    for index, record_set in enumerate(_as_list(found[1])):
        if not isinstance(record_set, dict):
            continue
        data_type = reader.get(record_set, CR + "dataType")
        if data_type is not None and reader.iri(str(data_type[1])) == CR + "Split":
            continue
        fields = reader.get(record_set, CR + "field")
        if fields is None:
            continue
        path = f"$.{found[0]}[{index}].{fields[0]}"
        return [
            _feature_from_field(f, f"{path}[{i}]", reader, top=True)
            for i, f in enumerate(_as_list(fields[1]))
            if isinstance(f, dict) and reader.get(f, CR + "references") is None
        ]
    return []


def _feature_from_field(
    node: dict[str, Any], path: str, reader: _Reader, *, top: bool
) -> dict[str, Any]:
    name_hit = reader.get(node, SCHEMA_ORG + "name")
    name = _one_text(name_hit[1], path) if name_hit else None
    if top and name is not None and "/" in name:
        name = name.rsplit("/", 1)[1]  # Hub-written files prefix names with the record set
    subs = reader.get(node, CR + "subField")
    base: dict[str, Any]
    if subs is not None:
        base = {
            "struct": [
                _feature_from_field(s, f"{path}.{subs[0]}[{i}]", reader, top=False)
                for i, s in enumerate(_as_list(subs[1]))
                if isinstance(s, dict)
            ]
        }
    else:
        exact = reader.get(node, AIDX_NAMESPACE + "dtype")
        data_type = reader.get(node, CR + "dataType")
        if exact is not None:
            base = {"dtype": str(exact[1])}
        elif data_type is not None:
            iris = [reader.iri(str(t)) for t in _as_list(data_type[1])]
            dtype = next((_DTYPES[i] for i in iris if i in _DTYPES), "string")
            base = {"dtype": dtype}
        else:
            raise CardParseError("a field needs a dataType or subFields", field=path)
    shape = reader.get(node, CR + "arrayShape")
    is_array = reader.get(node, CR + "isArray")
    dims: list[int] = []
    if shape is not None:
        dims = [int(d) for d in str(shape[1]).split(",") if d.strip()]
    elif is_array is not None and is_array[1] is True:
        dims = [-1]
    for length in reversed(dims):
        base = {"list": base, **({"length": length} if length > 0 else {})}
    return _feature_dict(name, base)


def _feature_dict(name: str | None, shape: dict[str, Any]) -> dict[str, Any]:
    """A Feature as plain values, from the nested ``list``/``struct``/``dtype`` shape above."""
    if "list" in shape:
        out: dict[str, Any] = {"name": name, "item": _feature_dict(None, shape["list"])}
        if "length" in shape:
            out["length"] = shape["length"]
        return out
    if "struct" in shape:
        return {"name": name, "struct": shape["struct"]}
    return {"name": name, "dtype": shape["dtype"]}
