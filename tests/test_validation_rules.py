"""What a client is told about each checked input: the exact message, the exact bound, the value kept.

tests/test_validation.py checks codes and fields across many inputs; these
pin the messages, the limits to the character and what is stored.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from bson import Decimal128
from conftest import SHOP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.types.scalars import serialize_decimal
from resolvers.validation import Checker, parse_decimal

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) {
    contact {
      id email phone firstName lastName company
      shippingAddress { name company line1 line2 postalCode city region countryCode phone }
    }
    userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) {
    contact { firstName company phone }
    userErrors { field message code }
  }
}
"""
NOTE = """
mutation($id: ID!, $text: String!) {
  noteAdd(contactId: $id, text: $text) { note { text } userErrors { field message code } }
}
"""
RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) {
    order { lineItems { unitPrice { amount } total { amount } } shipping { amount } }
    userErrors { field message code }
  }
}
"""
FILTERED = """
query($filter: ContactFilter) { contacts(filter: $filter) { nodes { email } } }
"""


async def stored_contacts(database) -> list[dict]:
    return await database.contacts.find({}, sort=[("_id", 1)]).to_list()


async def create_errors(api, database, input: dict) -> list[dict]:
    """The userErrors of a create that must be refused, having checked that nothing was written."""
    before = await stored_contacts(database)
    payload = (await api.data(CREATE, {"input": input}))["contactCreate"]
    assert payload["contact"] is None
    assert await stored_contacts(database) == before
    return payload["userErrors"]


async def create(api, input: dict) -> dict:
    payload = (await api.data(CREATE, {"input": input}))["contactCreate"]
    assert payload["userErrors"] == []
    return payload["contact"]


def error(field: list[str], message: str, code: str) -> dict:
    return {"field": field, "message": message, "code": code}


@pytest.mark.parametrize("input", [{}, {"email": None}, {"email": "   "}])
async def test_an_email_is_required_to_create_a_contact(api, database, input):
    assert await create_errors(api, database, input) == [
        error(["input", "email"], "Email is required.", "REQUIRED")
    ]


async def test_an_email_is_kept_as_given_and_found_in_any_letter_case(api, database):
    contact = await create(api, {"email": "  Ann.Lee@Example.COM "})

    assert contact["email"] == "Ann.Lee@example.com"
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert (stored["email"], stored["emailKey"]) == ("Ann.Lee@example.com", "ann.lee@example.com")
    found = await api.data(
        "query($e: String!) { contactByEmail(email: $e) { id } }", {"e": "ANN.LEE@example.com"}
    )
    assert found["contactByEmail"] == {"id": contact["id"]}


async def test_an_email_is_at_most_254_characters(api, database):
    domain = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    longest = "a" * 64 + "@" + domain
    assert len(longest) == 254
    assert (await create(api, {"email": longest}))["email"] == longest

    errors = await create_errors(api, database, {"email": "a" * 64 + "@e" + domain})

    assert errors == [error(["input", "email"], "Email is longer than 254 characters.", "TOO_LONG")]


async def test_a_malformed_email_says_why(api, database):
    [problem] = await create_errors(api, database, {"email": "ann@example..com"})

    assert (problem["field"], problem["code"]) == (["input", "email"], "INVALID")
    assert problem["message"].startswith("Email is not valid: ")
    assert len(problem["message"]) > len("Email is not valid: ")


@pytest.mark.parametrize(
    ("field", "label", "limit"),
    [("firstName", "First name", 200), ("lastName", "Last name", 200), ("company", "Company", 200)],
)
async def test_a_name_is_trimmed_then_held_to_its_limit(api, database, field, label, limit):
    # Spaces around the text do not count: it is trimmed first.
    contact = await create(api, {"email": "ok@example.com", field: "  " + "x" * limit + " "})
    assert contact[field] == "x" * limit

    errors = await create_errors(
        api, database, {"email": "no@example.com", field: "y" * (limit + 1)}
    )

    assert errors == [
        error(["input", field], f"{label} is longer than {limit} characters.", "TOO_LONG")
    ]


async def test_text_is_stored_in_composed_unicode(api, database):
    # "Ame\u0301lie" (e + combining accent) and "Am\u00e9lie" are one name.
    contact = await create(api, {"email": "a@example.com", "firstName": " Ame\u0301lie "})

    assert contact["firstName"] == "Am\u00e9lie"
    assert (await database.contacts.find_one({"shopId": SHOP}))["firstName"] == "Am\u00e9lie"


async def test_blank_text_clears_an_optional_field(api, database):
    contact = await create(api, {"email": "a@example.com", "firstName": "Ann", "company": "Acme"})

    data = await api.data(
        UPDATE, {"id": contact["id"], "input": {"firstName": "  ", "company": None}}
    )

    assert data["contactUpdate"] == {
        "contact": {"firstName": None, "company": None, "phone": None},
        "userErrors": [],
    }
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert stored.get("firstName") is None and stored.get("company") is None


@pytest.mark.parametrize(
    "value", ["Ann\x00", "Ann\tLee", "Ann\nLee", "A\x1fB", "A\x7fB", "A\x80B", "Acme\x9f"]
)
async def test_a_one_line_field_refuses_control_characters(api, database, value):
    errors = await create_errors(api, database, {"email": "c@example.com", "company": value})

    assert errors == [
        error(["input", "company"], "Company contains control characters.", "INVALID")
    ]


async def test_characters_just_outside_the_control_ranges_are_text(api):
    contact = await create(api, {"email": "c@example.com", "company": "A B\u00a0C ~"})

    assert contact["company"] == "A B\u00a0C ~"


async def test_a_note_keeps_line_breaks_and_tabs_but_no_other_control_character(api, database):
    contact = await create(api, {"email": "n@example.com"})

    kept = await api.data(NOTE, {"id": contact["id"], "text": "\n first\n\tsecond\r\nthird \n"})
    refused = [
        (await api.data(NOTE, {"id": contact["id"], "text": f"bad{c}text"}))["noteAdd"]
        for c in ("\x00", "\x08", "\x0b", "\x0c", "\x0e", "\x7f", "\x85")
    ]

    assert kept["noteAdd"] == {"note": {"text": "first\n\tsecond\r\nthird"}, "userErrors": []}
    assert (
        refused
        == [
            {
                "note": None,
                "userErrors": [error(["text"], "Text contains control characters.", "INVALID")],
            }
        ]
        * 7
    )


async def test_a_note_is_at_most_5000_characters(api):
    contact = await create(api, {"email": "n@example.com"})

    longest = await api.data(NOTE, {"id": contact["id"], "text": "n" * 5000})
    too_long = await api.data(NOTE, {"id": contact["id"], "text": "n" * 5001})
    blank = await api.data(NOTE, {"id": contact["id"], "text": " \n "})

    assert longest["noteAdd"]["note"] == {"text": "n" * 5000}
    assert too_long["noteAdd"] == {
        "note": None,
        "userErrors": [error(["text"], "Text is longer than 5000 characters.", "TOO_LONG")],
    }
    assert blank["noteAdd"] == {
        "note": None,
        "userErrors": [error(["text"], "Text is required.", "REQUIRED")],
    }


async def test_a_phone_is_at_most_40_characters_and_stored_as_e164(api, database):
    spaced = "+49" + " " * 28 + "301234567"
    assert len(spaced) == 40
    first = await create(api, {"email": "p@example.com", "phone": spaced})
    # Spaces around it are trimmed before it is measured.
    second = await create(api, {"email": "q@example.com", "phone": f" {spaced} "})
    assert first["phone"] == second["phone"] == "+49301234567"

    errors = await create_errors(api, database, {"email": "r@example.com", "phone": "+" + "4" * 40})

    assert errors == [error(["input", "phone"], "Phone is longer than 40 characters.", "TOO_LONG")]


@pytest.mark.parametrize("phone", ["12", "030 1234567", "+49 0008063608", "+999 1234 5678"])
async def test_a_phone_that_is_not_a_number_or_not_itself_when_read_back_is_refused(
    api, database, phone
):
    errors = await create_errors(api, database, {"email": "p@example.com", "phone": phone})

    assert errors == [error(["input", "phone"], "Phone number is not valid.", "INVALID")]


async def test_an_address_is_trimmed_its_country_upper_cased_and_its_phone_read_there(
    api, database
):
    address = {
        "name": " Ann Lee ",
        "company": "Lee GmbH",
        "line1": "Hauptstraße 5",
        "line2": "Hinterhaus",
        "postalCode": "10115",
        "city": "Berlin",
        "region": "BE",
        "countryCode": "de",
        "phone": "030 1234567",
    }

    contact = await create(api, {"email": "a@example.com", "shippingAddress": address})

    expected = {**address, "name": "Ann Lee", "countryCode": "DE", "phone": "+49301234567"}
    assert contact["shippingAddress"] == expected
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert stored["shippingAddress"] == expected


async def test_an_address_of_blanks_is_no_address(api, database):
    contact = await create(
        api, {"email": "a@example.com", "shippingAddress": {"line1": "  ", "city": ""}}
    )

    assert contact["shippingAddress"] is None
    assert (await database.contacts.find_one({"shopId": SHOP})).get("shippingAddress") is None


@pytest.mark.parametrize(
    ("part", "label", "limit"),
    [
        ("postalCode", "Postal code", 20),
        ("region", "Region", 200),
        ("city", "City", 200),
        ("line2", "Line2", 500),
        ("countryCode", "Country code", 2),
        ("phone", "Phone", 40),
    ],
)
async def test_an_address_part_over_its_limit_is_named_in_the_message(
    api, database, part, label, limit
):
    errors = await create_errors(
        api, database, {"email": "a@example.com", "billingAddress": {part: "9" * (limit + 1)}}
    )

    assert errors == [
        error(
            ["input", "billingAddress", part],
            f"{label} is longer than {limit} characters.",
            "TOO_LONG",
        )
    ]


@pytest.mark.parametrize("code", ["D1", "D ", "1E", "ÄÖ"])
async def test_a_country_code_is_two_latin_letters(api, database, code):
    errors = await create_errors(
        api, database, {"email": "a@example.com", "shippingAddress": {"countryCode": code}}
    )

    assert errors == [
        error(
            ["input", "shippingAddress", "countryCode"],
            "Country code must be two letters (ISO 3166-1).",
            "INVALID",
        )
    ]


async def test_a_country_code_of_three_letters_is_too_long(api, database):
    errors = await create_errors(
        api,
        database,
        {
            "email": "a@example.com",
            "shippingAddress": {"countryCode": "XX1", "phone": "+4930123456"},
        },
    )

    assert errors == [
        error(
            ["input", "shippingAddress", "countryCode"],
            "Country code is longer than 2 characters.",
            "TOO_LONG",
        )
    ]


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("D1", ("Country code must be two letters (ISO 3166-1).", "INVALID")),
        ("DEU", ("Country code is longer than 2 characters.", "TOO_LONG")),
    ],
)
async def test_a_refused_country_code_does_not_hide_a_bad_phone_after_it(
    api, database, code, problem
):
    address = {"countryCode": code, "phone": "not a phone"}

    errors = await create_errors(
        api, database, {"email": "a@example.com", "billingAddress": address}
    )

    assert errors == [
        error(["input", "billingAddress", "countryCode"], *problem),
        error(["input", "billingAddress", "phone"], "Phone number is not valid.", "INVALID"),
    ]


def order(external_id: str, unit_price: str, **extra: object) -> dict:
    return {
        "externalId": external_id,
        "email": "buyer@example.com",
        "currencyCode": "EUR",
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": unit_price}],
        **extra,
    }


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("-0.0001", "Unit price must not be negative."),
        ("1000000000000", "Unit price is too large."),
        ("1000000000000.0000", "Unit price is too large."),
        ("0.00001", "Unit price has more than 4 decimal places."),
        ("1.23450", "Unit price has more than 4 decimal places."),
    ],
)
async def test_a_price_out_of_bounds_is_refused_and_no_order_stored(api, database, price, message):
    data = await api.data(RECORD, {"input": order("O-1", price)})

    assert data["orderRecord"]["order"] is None
    assert data["orderRecord"]["userErrors"] == [
        error(["input", "lineItems", "0", "unitPrice"], message, "INVALID")
    ]
    assert await database.orders.count_documents({}) == 0


@pytest.mark.parametrize("price", ["0", "0.0000", "999999999999.9999", "12.5000", "0.0001"])
async def test_a_price_within_bounds_is_stored_as_written(api, database, price):
    data = await api.data(RECORD, {"input": order("O-1", price)})

    assert data["orderRecord"]["userErrors"] == []
    [line] = data["orderRecord"]["order"]["lineItems"]
    assert line["unitPrice"]["amount"] == price
    stored = await database.orders.find_one({"shopId": SHOP})
    assert stored["lineItems"][0]["unitPrice"] == Decimal128(price)


async def test_a_negative_charge_is_named_by_its_own_field(api, database):
    data = await api.data(RECORD, {"input": order("O-1", "10", shipping="-1", tax="-0.5")})

    assert data["orderRecord"]["userErrors"] == [
        error(["input", "shipping"], "Shipping must not be negative.", "INVALID"),
        error(["input", "tax"], "Tax must not be negative.", "INVALID"),
    ]
    assert await database.orders.count_documents({}) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "Unit price is required."),
        (Decimal("NaN"), "Unit price must be a finite amount."),
        (Decimal("Infinity"), "Unit price must be a finite amount."),
        (Decimal("-Infinity"), "Unit price must be a finite amount."),
    ],
)
def test_an_amount_that_no_client_can_send_is_still_refused(value, message):
    check = Checker()

    assert check.money(("input", "unitPrice"), value, required=True) is None
    assert [(p.field, p.message, p.code) for p in check.problems] == [
        (("input", "unitPrice"), message, "REQUIRED" if value is None else "INVALID")
    ]
    assert not check.ok


@pytest.mark.parametrize(
    ("field", "name"),
    [
        (("input", "shippingAddress", "postalCode"), "Postal code"),
        (("input", "lineItems", 0), "Line items"),
        (("Email",), "Email"),
        ((), "Value"),
        ((0,), "Value"),
    ],
)
def test_a_problem_names_the_last_named_part_of_its_field(field, name):
    check = Checker()

    check.text(field, "  ", 10, required=True)

    assert [(p.field, p.message, p.code) for p in check.problems] == [
        (field, f"{name} is required.", "REQUIRED")
    ]


def test_an_absent_optional_amount_is_no_problem():
    check = Checker()

    assert check.money(("input", "total"), None) is None
    assert check.text(("input", "note"), None, 10) is None
    assert check.problems == [] and check.ok


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("19.90", Decimal("19.90")),
        (" 19.90 ", Decimal("19.90")),
        ("+1", Decimal(1)),
        ("-0.5", Decimal("-0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        (7, Decimal(7)),
        ("1" * 40, Decimal("1" * 40)),
        ("-" + "1" * 39, Decimal("-" + "1" * 39)),
    ],
)
def test_decimals_are_read_from_their_wire_form(text, value):
    parsed = parse_decimal(text)

    assert parsed == value
    assert str(parsed) == str(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (19.9, 'Decimal must be given as a string such as "19.90".'),
        (True, 'Decimal must be given as a string such as "19.90".'),
        (None, 'Decimal must be given as a string such as "19.90".'),
        ("1" * 41, f"'{'1' * 41}' is not a decimal number such as \"19.90\"."),
        ("1e3", "'1e3' is not a decimal number such as \"19.90\"."),
        ("NaN", "'NaN' is not a decimal number such as \"19.90\"."),
        ("1,50", "'1,50' is not a decimal number such as \"19.90\"."),
        ("", "'' is not a decimal number such as \"19.90\"."),
        (".", "'.' is not a decimal number such as \"19.90\"."),
        ("--1", "'--1' is not a decimal number such as \"19.90\"."),
    ],
)
def test_anything_else_is_not_a_decimal(text, message):
    with pytest.raises(ValueError) as raised:
        parse_decimal(text)

    assert str(raised.value) == message


async def test_a_bad_decimal_variable_says_what_a_decimal_looks_like(api):
    body = await api.gql(FILTERED, {"filter": {"totalSpentMin": "12,50"}})

    assert body["data"] is None
    [problem] = body["errors"]
    assert problem["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'12,50' is not a decimal number such as \"19.90\"." in problem["message"]


# Every price a shop may send, as its canonical text: below a trillion, up to 4 places.
money_texts = st.integers(min_value=0, max_value=4).flatmap(
    lambda places: st.integers(min_value=0, max_value=10 ** (12 + places) - 1).map(
        lambda coefficient: format(Decimal(coefficient).scaleb(-places), "f")
    )
)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        lambda sign, coefficient, exponent: format(
            Decimal((sign, tuple(int(d) for d in str(coefficient)), exponent)), "f"
        ),
        st.integers(min_value=0, max_value=1),
        st.integers(min_value=0, max_value=10**34 - 1),
        st.integers(min_value=-30, max_value=5),
    ).filter(lambda text: len(text) <= 40)
)
def test_a_decimal_survives_reading_storing_and_writing_exactly(text):
    stored = Decimal128(parse_decimal(text))

    assert serialize_decimal(stored.to_decimal()) == text


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(price=money_texts)
async def test_a_price_comes_back_from_the_api_exactly_as_sent(api, price):
    external_id = f"P-{uuid.uuid4().hex}"

    data = await api.data(RECORD, {"input": order(external_id, price)})

    assert data["orderRecord"]["userErrors"] == []
    [line] = data["orderRecord"]["order"]["lineItems"]
    assert line == {"unitPrice": {"amount": price}, "total": {"amount": price}}
