"""Checks on everything a client can send: e-mail, phone, text, money, addresses."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from resolvers.errors import Field, Problem

NAME_MAX = 200
COMPANY_MAX = 200
ADDRESS_LINE_MAX = 500
LABEL_MAX = 100
EMAIL_MAX = 254
SHORT_TEXT_MAX = 200
TEXT_MAX = 5_000
URL_MAX = 2_000

ADDRESS_LIMITS = {
    "name": NAME_MAX,
    "company": COMPANY_MAX,
    "line1": ADDRESS_LINE_MAX,
    "line2": ADDRESS_LINE_MAX,
    "postalCode": 20,
    "city": SHORT_TEXT_MAX,
    "region": SHORT_TEXT_MAX,
    "countryCode": 2,
    "phone": 40,
}

# C0 and C1 control characters (and DEL); tab and line breaks pass in multi-line text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Money up to a trillion with at most 4 decimal places: enough for any shop's
# order and small enough that sums of millions of orders stay exact in Decimal128.
MONEY_MAX = Decimal("1000000000000")


class Checker:
    """Collects every problem of one input so a client sees them all at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, field: Field | None, message: str, code: str) -> None:
        self.problems.append(Problem(field, message, code))

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(
        self,
        field: Field,
        value: str | None,
        limit: int,
        *,
        required: bool = False,
        multiline: bool = False,
    ) -> str | None:
        """Trimmed text, None for empty; REQUIRED, TOO_LONG and INVALID as they apply."""
        if value is None:
            if required:
                self.add(field, f"{_label(field)} is required.", "REQUIRED")
            return None
        cleaned = value.strip()
        if not cleaned:
            if required:
                self.add(field, f"{_label(field)} is required.", "REQUIRED")
            return None
        if len(cleaned) > limit:
            self.add(field, f"{_label(field)} is longer than {limit} characters.", "TOO_LONG")
            return None
        bad = (_CONTROL if multiline else _CONTROL_ONE_LINE).search(cleaned)
        if bad:
            self.add(field, f"{_label(field)} contains control characters.", "INVALID")
            return None
        return unicodedata.normalize("NFC", cleaned)

    def email(
        self, field: Field, value: str | None, *, required: bool = True
    ) -> tuple[str, str] | None:
        """(email as given, identity key) or None; the key is the normalized address lower-cased."""
        text = self.text(field, value, EMAIL_MAX, required=required)
        if text is None:
            return None
        try:
            result = validate_email(text, check_deliverability=False)
        except EmailNotValidError as err:
            self.add(field, f"Email is not valid: {err}", "INVALID")
            return None
        return result.normalized, email_key(result.normalized)

    def phone(self, field: Field, value: str | None, region: str | None = None) -> str | None:
        text = self.text(field, value, 40)
        if text is None:
            return None
        e164 = parse_phone(text, region)
        if e164 is None:
            self.add(field, "Phone number is not valid.", "INVALID")
        return e164

    def money(
        self, field: Field, value: Decimal | None, *, required: bool = False
    ) -> Decimal | None:
        if value is None:
            if required:
                self.add(field, f"{_label(field)} is required.", "REQUIRED")
            return None
        if not value.is_finite():
            self.add(field, f"{_label(field)} must be a finite amount.", "INVALID")
            return None
        if value < 0:
            self.add(field, f"{_label(field)} must not be negative.", "INVALID")
            return None
        if value >= MONEY_MAX:
            self.add(field, f"{_label(field)} is too large.", "INVALID")
            return None
        if value.as_tuple().exponent < -4:  # type: ignore[operator]
            self.add(field, f"{_label(field)} has more than 4 decimal places.", "INVALID")
            return None
        return value

    def address(self, field: Field, value: Mapping[str, Any] | None) -> dict[str, str] | None:
        if value is None:
            return None
        address: dict[str, str] = {}
        for name, limit in ADDRESS_LIMITS.items():
            raw = value.get(name)
            if name == "phone":
                # A national number is read in the address's own country
                # (countryCode comes before phone in ADDRESS_LIMITS).
                phone = self.phone((*field, name), raw, address.get("countryCode"))
                if phone:
                    address[name] = phone
                continue
            text = self.text((*field, name), raw, limit)
            if text is None:
                continue
            if name == "countryCode":
                if not re.fullmatch(r"[A-Za-z]{2}", text):
                    self.add(
                        (*field, name), "Country code must be two letters (ISO 3166-1).", "INVALID"
                    )
                    continue
                text = text.upper()
            address[name] = text
        return address or None


def _label(field: Field | None) -> str:
    if not field:
        return "Value"
    last = next((p for p in reversed(field) if isinstance(p, str)), "value")
    spaced = re.sub(r"(?<!^)(?=[A-Z])", " ", last).lower()
    return spaced[:1].upper() + spaced[1:]


def email_key(normalized: str) -> str:
    """The identity of an address: `Ann@X.com` and `ann@x.com` are one contact."""
    return normalized.lower()


def parse_phone(text: str, region: str | None = None) -> str | None:
    """E.164 for a number that parses as possible; None otherwise."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Zeros a country does not dial after its code ("00008063608" in DE gives
    # "+490008063608") read back as another number: what is stored must read
    # back as itself, or every export and import would change it again.
    again = phonenumbers.parse(e164)
    if phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) != e164:
        return None
    return e164


def parse_decimal(text: str) -> Decimal:
    """A decimal from its wire form; ValueError for anything else (no floats, no NaN)."""
    if not isinstance(text, str | int) or isinstance(text, bool):
        raise ValueError('Decimal must be given as a string such as "19.90".')
    raw = str(text).strip()
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", raw) or len(raw) > 40:
        raise ValueError(f'{text!r} is not a decimal number such as "19.90".')
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number.") from None
