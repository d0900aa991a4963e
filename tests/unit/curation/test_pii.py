import pytest

from megatron_kanana.curation.config import PIISection
from megatron_kanana.curation.pii import Anonymiser, luhn_valid

ANON = Anonymiser(PIISection())

REPLACED = [
    ("메일은 hong.gildong+news@example.co.kr 입니다", "메일은 <EMAIL> 입니다"),
    ("휴대폰 010-1234-5678 로", "휴대폰 <PHONE> 로"),
    ("서울 02-123-4567 번", "서울 <PHONE> 번"),
    ("국제 +82 10 1234 5678 번", "국제 <PHONE> 번"),
    ("경기 (031)123-4567 번", "경기 <PHONE> 번"),
    ("call +1 415 555 2671 now", "call <PHONE> now"),
    ("London +44 20 7946 0958.", "London <PHONE>."),
    ("주민번호 900101-1234567 입니다", "주민번호 <RRN> 입니다"),
    ("born 2001: 010203-3456789", "born 2001: <RRN>"),
    ("card 4111 1111 1111 1111 ok", "card <CARD> ok"),
    ("amex 3782-822463-10005 ok", "amex <CARD> ok"),
    ("server 192.168.0.1 up", "server <IP> up"),
    ("v6 2001:db8::1 and fe80::1ff:fe23:4567:890a.", "v6 <IP> and <IP>."),
]
NOT_PII = [
    "a non-Luhn number 4111 1111 1111 1112 stays",
    "an order id 1234567812345678 stays",
    "invalid date 991332-1234567 stays",
    "February 30th: 900230-1234567 stays",
    "not an IP 999.1.1.1 nor 1.2.3",
    "a time 12:30:45 and version 3.10.2",
    "a date 2024-05-01 and a price 1,234,567원 and 12345",
    "user at example dot com",
    "grammar: assignment_stmt ::= target_list and C++ std::vector",
]


@pytest.mark.parametrize("text, expected", REPLACED)
def test_pii_replaced_with_typed_placeholder(text, expected):
    assert ANON.anonymise(text)[0] == expected


@pytest.mark.parametrize("text", NOT_PII)
def test_look_alikes_are_left_alone(text):
    out, counts = ANON.anonymise(text)
    assert out == text and not counts


def test_counts_per_placeholder_and_switches():
    text = "a@b.io 010-1234-5678 c@d.io"
    assert ANON.anonymise(text)[1] == {"<EMAIL>": 2, "<PHONE>": 1}
    assert Anonymiser(PIISection(email=False)).anonymise(text)[0] == "a@b.io <PHONE> c@d.io"


def test_rrn_checksum_option():
    # 800101-1000008: check digit computed by the pre-2020 rule; ...003 fails it (weights 2..9,2..5: 36 mod 11 = 3, 11 - 3 = 8).
    strict = Anonymiser(PIISection(rrn_checksum=True))
    assert strict.anonymise("800101-1000008")[0] == "<RRN>"
    assert strict.anonymise("800101-1000003")[0] == "800101-1000003"
    assert ANON.anonymise("800101-1000003")[0] == "<RRN>"


def test_luhn():
    assert luhn_valid("4539 1488 0343 6467") and not luhn_valid("4539 1488 0343 6468")
    assert not luhn_valid("0" * 12)  # too short to be a card
