"""Small shared types: Money, Address, PageInfo, UserError, ErrorCode."""

from __future__ import annotations

from decimal import Decimal as PyDecimal
from enum import Enum
from typing import Any

import strawberry
from bson import Decimal128

from graph.types.scalars import Decimal
from loaders.keyset import Page
from resolvers.errors import Problem

NO_CURRENCY = "XXX"  # ISO 4217's code for "no currency": a shop before its first order


@strawberry.enum(description="Why a mutation refused its input.")
class ErrorCode(Enum):
    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    TAKEN = "TAKEN"
    NOT_FOUND = "NOT_FOUND"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    NOT_ALLOWED = "NOT_ALLOWED"


@strawberry.type(description="A problem with the input of a mutation; nothing was written.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field, e.g. ["input", "email"].'
    )
    message: str = strawberry.field(description="What is wrong, for a person.")
    code: ErrorCode = strawberry.field(description="What is wrong, for a program.")

    @classmethod
    def from_problem(cls, problem: Problem) -> UserError:
        field = [str(p) for p in problem.field] if problem.field is not None else None
        return cls(field=field, message=problem.message, code=ErrorCode(problem.code))


# Decimal128.to_decimal is pure Python (~10 µs); a page converts the same
# few amounts (0 for every lead) over and over. Decimals are immutable, so
# one converted value serves every request. Bounded: it stops growing, never evicts.
_DECIMALS: dict[bytes, PyDecimal] = {}
_DECIMALS_MAX = 4096


def to_decimal(value: Any) -> PyDecimal:
    if isinstance(value, Decimal128):
        bid = value.bid
        found = _DECIMALS.get(bid)
        if found is None:
            found = value.to_decimal()
            if len(_DECIMALS) < _DECIMALS_MAX:
                _DECIMALS[bid] = found
        return found
    if value is None:
        return PyDecimal(0)
    return PyDecimal(value)


@strawberry.type(description="An exact amount of money in one currency.")
class Money:
    amount: Decimal = strawberry.field(
        description='The amount as an exact decimal string, e.g. "19.90".'
    )
    currency_code: str = strawberry.field(description="ISO 4217 currency code, e.g. EUR.")

    @classmethod
    def of(cls, value: Any, currency: str | None) -> Money:
        return cls(amount=to_decimal(value), currency_code=currency or NO_CURRENCY)


@strawberry.type(description="A postal address.")
class Address:
    name: str | None = None
    company: str | None = None
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country_code: str | None = strawberry.field(default=None, description="ISO 3166-1 alpha-2.")
    phone: str | None = strawberry.field(default=None, description="E.164 when it can be parsed.")

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Address | None:
        if not doc:
            return None
        return cls(
            name=doc.get("name"),
            company=doc.get("company"),
            line1=doc.get("line1"),
            line2=doc.get("line2"),
            postal_code=doc.get("postalCode"),
            city=doc.get("city"),
            region=doc.get("region"),
            country_code=doc.get("countryCode"),
            phone=doc.get("phone"),
        )


@strawberry.input(description="A postal address; every field is optional.")
class AddressInput:
    name: str | None = None
    company: str | None = None
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country_code: str | None = None
    phone: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "company": self.company,
            "line1": self.line1,
            "line2": self.line2,
            "postalCode": self.postal_code,
            "city": self.city,
            "region": self.region,
            "countryCode": self.country_code,
            "phone": self.phone,
        }


@strawberry.type(description="Where a page of a connection sits.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page) -> PageInfo:
        rows = page.rows
        return cls(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.cursor(rows[0]) if rows else None,
            end_cursor=page.cursor(rows[-1]) if rows else None,
        )
