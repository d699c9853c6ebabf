"""PII: e-mail, IP addresses, phone numbers, mainland resident IDs and bank cards are found and
replaced by typed placeholders; look-alike numbers are left alone."""

from __future__ import annotations

import csv
from datetime import date

import pytest

from curation.errors import CurationError
from curation.steps import RedactPii
from curation.steps.pii import (
    PiiMatch,
    detect_pii,
    is_cn_resident_id,
    luhn_valid,
    redact,
)
from tests.unit.curation.conftest import FIXTURES, RunSteps, read_json

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(region: str, born: str, sequence: str) -> str:
    """An 18-character number with the GB 11643 check character."""
    body = region + born + sequence
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


@pytest.fixture(scope="module")
def identities() -> list[dict[str, str]]:
    with (FIXTURES / "fakenamegenerator_100.csv").open(encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def chinese_answers() -> list[str]:
    return [record["output"] for record in read_json("alpaca_zh_demo.json")[:50]]


def found(text: str) -> list[tuple[str, str]]:
    return [(match.kind, text[match.start : match.end]) for match in detect_pii(text)]


def test_fake_identities_emails_phones_and_cards(identities: list[dict[str, str]]) -> None:
    for person in identities:
        phone = f"+{person['TelephoneCountryCode']} {person['TelephoneNumber']}"
        text = f"Write to {person['EmailAddress']} or call {phone}; card {person['CCNumber']}."

        assert found(text) == [
            ("EMAIL", person["EmailAddress"]),
            ("PHONE", phone),
            ("BANK_CARD", person["CCNumber"]),
        ], text


def test_card_numbers_grouped_in_fours_and_luhn_failures(identities: list[dict[str, str]]) -> None:
    number = identities[0]["CCNumber"]
    grouped = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)

    assert luhn_valid(number) and not luhn_valid(wrong)
    assert found(f"Card: {grouped}.") == [("BANK_CARD", grouped)]
    assert found(f"Order {wrong} shipped.") == []


def test_mainland_resident_ids_are_checked_before_redaction(chinese_answers: list[str]) -> None:
    valid = [
        resident_id("110105", "19491001", "002"),
        resident_id("440305", "20000229", "123"),
        resident_id("310104", "19870716", "451"),
    ]
    valid.append(resident_id("510107", "19650103", "777"))
    wrong_check = valid[0][:-1] + ("0" if valid[0][-1] != "0" else "1")
    no_such_day = resident_id("110105", "19990230", "002")
    no_such_region = resident_id("990105", "19491001", "002")
    future = resident_id("110105", "20991001", "002")

    assert all(is_cn_resident_id(number) for number in valid)
    for number in (wrong_check, no_such_day, no_such_region, future):
        assert not is_cn_resident_id(number), number
    assert is_cn_resident_id(valid[0], today=date(1949, 10, 1))
    assert not is_cn_resident_id(valid[0], today=date(1949, 9, 30))

    for number, answer in zip(valid, chinese_answers, strict=False):
        text = f"{answer}\n身份证号：{number}。"
        redacted, counts = redact(text)
        assert redacted == f"{answer}\n身份证号：[CN_ID]。"
        assert counts == {"CN_ID": 1}
    for number in (wrong_check, no_such_day, no_such_region):
        text = f"订单号{number}已发货。"
        assert redact(text) == (text, {}), number


def test_the_x_check_character_counts() -> None:
    # 11010519491231002X is the standard's own example.
    assert is_cn_resident_id("11010519491231002X")
    assert is_cn_resident_id("11010519491231002x")
    assert found("证件号码 11010519491231002X，") == [("CN_ID", "11010519491231002X")]


@pytest.mark.parametrize(
    "number",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+8613812345678",
        "0086-13812345678",
        "(+86)13912345678",
    ],
)
def test_mainland_mobile_forms(number: str, chinese_answers: list[str]) -> None:
    text = f"{chinese_answers[1][:40]}联系电话：{number}，欢迎来电。"

    assert found(text) == [("PHONE", number)]


@pytest.mark.parametrize(
    "text",
    [
        "编号12812345678号",  # 12 is no mobile prefix
        "共计138123456789元",  # twelve digits
        "电话 138 12345 678",  # not 3-4-4
        "version 1.2.3.4.5 released",
        "at 12:30:45 on the day",
        "ISBN 978-3-16-148410-0",
        "the years 1990-2000 and 2001-2010",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert detect_pii(text) == []


def test_ip_addresses(c4_texts: list[str]) -> None:
    text = (
        f"{c4_texts[0][:120]} Server 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334, "
        "fallback ::ffff:10.0.0.1, not 256.1.1.1."
    )

    assert [kind for kind, _ in found(text)] == ["IPV4", "IPV6", "IPV6"]
    assert found(text)[0] == ("IPV4", "192.168.10.254")
    assert found(text)[1] == ("IPV6", "2001:db8:85a3::8a2e:370:7334")


def test_c4_pages_phone_numbers_and_emails(c4_texts: list[str]) -> None:
    matches = [match for text in c4_texts for match in detect_pii(text)]

    assert sum(m.kind == "EMAIL" for m in matches) == 7
    assert sum(m.kind == "PHONE" for m in matches) == 23
    first = c4_texts[0]
    assert detect_pii(first) == [
        PiiMatch("PHONE", first.index("780-800-7092"), first.index("780-800-7092") + 12)
    ]
    assert redact(first)[0].endswith(
        "give McKinley Heating Service Experts a call at [PHONE] to get "
        "your questions or concerns related to your HVAC system addressed."
    )


def test_kinds_can_be_limited(identities: list[dict[str, str]]) -> None:
    person = identities[1]
    text = f"{person['EmailAddress']}, card {person['CCNumber']}"

    assert redact(text, kinds=["EMAIL"]) == (f"[EMAIL], card {person['CCNumber']}", {"EMAIL": 1})


def test_step_redacts_columns_and_nested_messages(
    run_steps: RunSteps, identities: list[dict[str, str]]
) -> None:
    rows = [
        {
            "name": person["GivenName"],
            "contact": f"Mail {person['EmailAddress']} or phone +{person['TelephoneCountryCode']} "
            f"{person['TelephoneNumber']}.",
            "messages": [
                {"role": "user", "content": f"My card is {person['CCNumber']}."},
                {"role": "assistant", "content": "Thanks, noted."},
            ],
        }
        for person in identities[:30]
    ]
    step = RedactPii()

    table = run_steps([step], rows, batch_size=8)

    assert table.column("contact").to_pylist()[0] == "Mail [EMAIL] or phone [PHONE]."
    assert table.column("messages").to_pylist()[0][0] == {
        "role": "user",
        "content": "My card is [BANK_CARD].",
    }
    assert table.column("name").to_pylist() == [p["GivenName"] for p in identities[:30]]
    assert step.details == {
        "matches_by_kind": {"EMAIL": 30, "BANK_CARD": 30, "PHONE": 30},
        "rows_with_pii": 30,
    }
    unredacted = run_steps([], rows)
    assert table.column("_content_hash") != unredacted.column("_content_hash")


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(CurationError, match="unknown PII kinds SSN"):
        RedactPii(kinds=["SSN"])
