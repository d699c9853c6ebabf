"""The bilingual product description: every item labelled in English and Chinese."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from dataset_cards.render.product_page import (
    PRODUCT_LABELS,
    product_items,
    render_product_html,
    render_product_markdown,
)
from dataset_cards.schema import DatasetCard


class _Collector(HTMLParser):
    """Checks that tags nest and collects the text and row ids."""

    VOID = frozenset({"meta", "br", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.row_ids: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "tr":
            self.row_ids.append(dict(attrs)["id"] or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack.pop() == tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_labels_each_item_in_both_languages() -> None:
    zh = {key: labels[1] for key, labels in PRODUCT_LABELS.items()}

    assert zh["provider"] == "数据提供方"
    assert zh["lawful_source_statement"] == "合法来源声明"
    assert zh["quality"] == "质量评价"
    assert zh["compliance_assessment"] == "合规评估结果"
    assert zh["update_frequency"] == "更新频率"
    assert zh["usage_restrictions"] == "使用限制"
    assert zh["license_template"] == "合同示范文本"
    assert zh["price_plans"] == "价格方案"


def test_the_items_of_a_complete_card_are_all_provided(complete_card: DatasetCard) -> None:
    items = {item.key: item for item in product_items(complete_card)}

    assert [key for key, item in items.items() if item.value is None] == []
    assert items["update_frequency"].value == "one-off / 一次性"
    assert items["compliance_assessment"].value is not None
    assert items["compliance_assessment"].value.startswith("passed / 通过 (Exchange listing")
    assert items["volume"].value is not None
    assert items["volume"].value.startswith("8,792 rows / 行 (train 7,473, test 1,319); 2 files")
    assert items["license_class"].value == (
        "commercial use allowed; attribution required; no share-alike"
        " / 允许商业使用\uff1b需署名\uff1b无需相同方式共享"
    )
    assert items["co_contributors"].value == "Example Math Co-op"
    assert items["quality"].value is not None and "合格率 99.0%" in items["quality"].value


def test_markdown_has_a_bilingual_heading_per_item(complete_card: DatasetCard) -> None:
    text = render_product_markdown(complete_card)

    assert text.startswith("# GSM8K grade-school math\n")
    assert "## 数据提供方 Data provider\n\nOpenAI\n" in text
    assert "## 合法来源声明 Lawful-source statement\n\nPublished by OpenAI" in text
    assert text.count("\n## ") == len(PRODUCT_LABELS) - 1


def test_markdown_marks_what_is_not_provided(card: DatasetCard) -> None:
    text = render_product_markdown(card)

    assert "## 合法来源声明 Lawful-source statement\n\n_未提供 Not provided_" in text


def test_html_is_a_standalone_well_formed_page(complete_card: DatasetCard) -> None:
    page = render_product_html(complete_card)
    parser = _Collector()
    parser.feed(page)
    parser.close()

    assert page.startswith("<!DOCTYPE html>\n")
    assert parser.stack == []
    assert parser.scripts == 0
    assert parser.row_ids == list(PRODUCT_LABELS)
    text = "".join(parser.text)
    assert "数据提供方" in text and "Data provider" in text
    assert "质量评价" in text and "Answers checked on a sample" in text


@pytest.mark.parametrize("hostile", ["<script>alert(1)</script>", 'a"b<i>&amp;'])
def test_html_escapes_what_the_contributor_wrote(complete_card: DatasetCard, hostile: str) -> None:
    card = complete_card.model_copy(update={"scope": hostile, "pretty_name": hostile})
    page = render_product_html(card)
    parser = _Collector()
    parser.feed(page)

    assert parser.scripts == 0
    assert hostile not in page
    assert hostile in "".join(parser.text)
