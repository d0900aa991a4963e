"""Stage 5: PII anonymisation with typed placeholders.

E-mail -> <EMAIL>, resident registration number -> <RRN>, payment card ->
<CARD>, IPv4/IPv6 -> <IP>, phone -> <PHONE>. Candidates come from regular
expressions and are replaced only when they validate: an RRN needs a real birth
date (century from its gender digit) and optionally the pre-2020 check digit, a
card number must pass Luhn, an IP must parse. Order matters: RRNs and cards are
taken before phones, so their digits are not half-replaced as a phone number.
"""
from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter

from megatron_kanana.curation.config import PIISection

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
RRN = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})\s?-\s?([1-8])(\d{6})(?!\d)")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_SEP = r"[-. ]?"
PHONE = re.compile(
    r"(?<![\w+])(?:"
    # Korean: mobile 01X, Seoul 02, regions 0[3-6][1-5], 070 VoIP, with or without +82 (dropping the 0).
    rf"(?:\+82{_SEP}\(?0?\)?|\(?0)(?:1[016789]|2|[3-6][1-5]|70)\)?{_SEP}\d{{3,4}}{_SEP}\d{{4}}"
    # International: +CC then 6-12 digits in groups.
    rf"|\+[1-9]\d{{0,2}}(?:{_SEP}\(?\d{{1,4}}\)?){{2,4}}"
    # Korean nationwide numbers such as 1588-1234.
    r"|1[5-9]\d{2}-\d{4}"
    r")(?![\w])"
)

# RRN gender digit -> century of birth.
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}


def rrn_valid(match: re.Match, checksum: bool) -> bool:
    yy, mm, dd, gender, rest = match.groups()
    try:
        datetime.date(_CENTURY[gender] + int(yy), int(mm), int(dd))
    except ValueError:
        return False
    if not checksum:
        return True
    digits = [int(c) for c in yy + mm + dd + gender + rest]
    total = sum(d * w for d, w in zip(digits[:12], (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)))
    return (11 - total % 11) % 10 == digits[12]


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def ip_valid(candidate: str) -> bool:
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    # "::" and "::1"-style shorthands are mostly grammar ("a ::= b") or C++ scope
    # operators in text, not someone's address: require two hex groups with digits.
    if address.version == 6 and sum(1 for group in candidate.split(":") if group) < 2:
        return False
    return True


def _phone_valid(candidate: str) -> bool:
    return 8 <= sum(c.isdigit() for c in candidate) <= 15


class Anonymiser:
    def __init__(self, section: PIISection):
        s = section
        # (placeholder, pattern, validator); validators see the match object.
        self.rules = [
            ("<EMAIL>", EMAIL, None, s.email),
            ("<RRN>", RRN, lambda m: rrn_valid(m, s.rrn_checksum), s.rrn),
            ("<CARD>", CARD, lambda m: luhn_valid(m.group()), s.card),
            ("<IP>", IPV4, lambda m: ip_valid(m.group()), s.ip),
            ("<IP>", IPV6, lambda m: ip_valid(m.group()), s.ip),
            ("<PHONE>", PHONE, lambda m: _phone_valid(m.group()), s.phone),
        ]
        self.rules = [r[:3] for r in self.rules if r[3]]

    def anonymise(self, text: str) -> tuple[str, Counter]:
        """Return the text with PII replaced and the count of replacements per placeholder."""
        counts: Counter = Counter()
        for placeholder, pattern, valid in self.rules:
            def replace(m: re.Match, placeholder=placeholder, valid=valid) -> str:
                if valid is not None and not valid(m):
                    return m.group()
                counts[placeholder] += 1
                return placeholder
            text = pattern.sub(replace, text)
        return text, counts
