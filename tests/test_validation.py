"""Every bad input gets its exact code and field, and leaves the stored data as it was."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import SHOP

from resolvers.labels import SHOP_LABEL_LIMIT

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) {
    contact { id email phone firstName company labels shippingAddress { line1 phone countryCode } }
    userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) { contact { id } userErrors { field message code } }
}
"""
PAGE = """
query($first: Int, $last: Int, $after: String, $before: String, $sortKey: ContactSortKey) {
  contacts(first: $first, last: $last, after: $after, before: $before, sortKey: $sortKey) {
    nodes { id } pageInfo { endCursor }
  }
}
"""


async def everything(database) -> dict:
    return {
        name: await database.db[name].find({}, sort=[("_id", 1)]).to_list()
        for name in ("contacts", "labels", "shops")
    }


async def refused_create(api, database, input: dict) -> list[tuple[list[str], str]]:
    """The (field, code) pairs of a create that must be refused without writing anything."""
    before = await everything(database)
    data = await api.data(CREATE, {"input": input})
    payload = data["contactCreate"]
    assert payload["contact"] is None
    assert payload["userErrors"], "expected a refusal"
    assert all(e["message"] for e in payload["userErrors"])
    assert await everything(database) == before
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def created(api, input: dict) -> dict:
    data = await api.data(CREATE, {"input": input})
    assert data["contactCreate"]["userErrors"] == []
    return data["contactCreate"]["contact"]


@pytest.fixture
async def base(api, keys) -> None:
    """One contact, so that 'unchanged' covers existing data too."""
    await created(api, {"email": "base@example.com", "labels": ["Base"]})


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "ann@",
        "@example.com",
        "ann@example",
        "ann@@example.com",
        "ann@exa mple.com",
        "ann@example..com",
        "ann..lee@example.com",
        "ann@-example.com",
        '{"$ne": null}',
    ],
)
async def test_malformed_email_is_invalid(api, database, base, email):
    assert await refused_create(api, database, {"email": email}) == [
        (["input", "email"], "INVALID")
    ]


async def test_email_length_and_control_characters(api, database, base):
    long_email = "a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com"
    assert len(long_email) > 254
    assert await refused_create(api, database, {"email": long_email}) == [
        (["input", "email"], "TOO_LONG")
    ]
    assert await refused_create(api, database, {"email": "ann\x00@example.com"}) == [
        (["input", "email"], "INVALID")
    ]


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+49 30 1234567", None, "+49301234567"),
        ("+1 (650) 253-0000", None, "+16502530000"),
        ("(030) 123 4567", "DE", "+49301234567"),
        ("0043 1 234567", "DE", "+431234567"),
        ("650-253-0000", "US", "+16502530000"),
    ],
)
async def test_valid_phones_are_stored_as_e164(api, database, phone, country, expected):
    input = {"email": "p@example.com", "phone": phone}
    if country:
        input["shippingAddress"] = {"countryCode": country}
    contact = await created(api, input)
    assert contact["phone"] == expected
    assert (await database.contacts.find_one({"shopId": SHOP}))["phone"] == expected


@pytest.mark.parametrize(
    "phone", ["not a phone", "12", "+49", "030 1234567", "+999 1234 5678", "1" * 41]
)
async def test_unparseable_phone_is_invalid(api, database, base, phone):
    codes = await refused_create(api, database, {"email": "p@example.com", "phone": phone})
    assert codes == [(["input", "phone"], "TOO_LONG" if len(phone) > 40 else "INVALID")]


async def test_address_phone_is_checked_in_the_address_country(api, database, base):
    contact = await created(
        api,
        {"email": "a@example.com", "shippingAddress": {"countryCode": "at", "phone": "01 234567"}},
    )
    assert contact["shippingAddress"] == {"line1": None, "phone": "+431234567", "countryCode": "AT"}
    codes = await refused_create(
        api, database, {"email": "b@example.com", "billingAddress": {"phone": "01 234567"}}
    )
    assert codes == [(["input", "billingAddress", "phone"], "INVALID")]


@pytest.mark.parametrize(
    ("field", "limit"),
    [("firstName", 200), ("lastName", 200), ("company", 200)],
)
async def test_name_and_company_lengths(api, database, base, field, limit):
    ok = await created(api, {"email": "ok@example.com", field: "x" * limit})
    assert ok["id"]
    codes = await refused_create(
        api, database, {"email": "long@example.com", field: "x" * (limit + 1)}
    )
    assert codes == [(["input", field], "TOO_LONG")]


@pytest.mark.parametrize(
    ("part", "limit"),
    [
        ("line1", 500),
        ("line2", 500),
        ("name", 200),
        ("company", 200),
        ("city", 200),
        ("postalCode", 20),
    ],
)
async def test_address_lengths(api, database, base, part, limit):
    await created(api, {"email": "ok@example.com", "shippingAddress": {part: "x" * limit}})
    for address in ("shippingAddress", "billingAddress"):
        codes = await refused_create(
            api, database, {"email": "long@example.com", address: {part: "y" * (limit + 1)}}
        )
        assert codes == [(["input", address, part], "TOO_LONG")]


async def test_country_code_is_two_letters(api, database, base):
    assert await refused_create(
        api, database, {"email": "c@example.com", "shippingAddress": {"countryCode": "D1"}}
    ) == [(["input", "shippingAddress", "countryCode"], "INVALID")]
    assert await refused_create(
        api, database, {"email": "c@example.com", "shippingAddress": {"countryCode": "DEU"}}
    ) == [(["input", "shippingAddress", "countryCode"], "TOO_LONG")]


async def test_label_rules(api, database, base):
    await created(api, {"email": "ok@example.com", "labels": ["x" * 100]})
    assert await refused_create(
        api, database, {"email": "l@example.com", "labels": ["ok", "x" * 101]}
    ) == [(["input", "labels", "1"], "TOO_LONG")]
    assert await refused_create(api, database, {"email": "l@example.com", "labels": ["   "]}) == [
        (["input", "labels", "0"], "REQUIRED")
    ]
    assert await refused_create(api, database, {"email": "l@example.com", "labels": ["a\tb"]}) == [
        (["input", "labels", "0"], "INVALID")
    ]


async def test_the_shops_label_limit(api, database, base):
    # The shop already has "Base" and the 100-character label is not yet there.
    too_many = [f"label {i}" for i in range(SHOP_LABEL_LIMIT)]
    assert await refused_create(api, database, {"email": "l@example.com", "labels": too_many}) == [
        (["input", "labels"], "LIMIT_EXCEEDED")
    ]
    fits = await created(
        api, {"email": "l@example.com", "labels": too_many[: SHOP_LABEL_LIMIT - 1]}
    )
    assert len(fits["labels"]) == SHOP_LABEL_LIMIT - 1
    assert (await database.shops.find_one({"_id": SHOP}))["labelCount"] == SHOP_LABEL_LIMIT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("firstName", "Ann\x00"),
        ("lastName", "Le\ne"),
        ("company", "Acme\x1b[31m"),
        ("company", "Acme\x85Corp"),
        ("firstName", "A\x7f"),
    ],
)
async def test_control_characters_are_invalid(api, database, base, field, value):
    assert await refused_create(api, database, {"email": "c@example.com", field: value}) == [
        (["input", field], "INVALID")
    ]


async def test_address_control_characters_are_invalid(api, database, base):
    codes = await refused_create(
        api, database, {"email": "c@example.com", "shippingAddress": {"city": "Ber\nlin"}}
    )
    assert codes == [(["input", "shippingAddress", "city"], "INVALID")]


async def test_every_problem_is_reported_at_once(api, database, base):
    codes = await refused_create(
        api,
        database,
        {
            "email": "nope",
            "firstName": "x" * 201,
            "phone": "abc",
            "shippingAddress": {"line1": "y" * 501, "countryCode": "??"},
            "labels": ["z" * 101],
        },
    )
    assert sorted(codes) == sorted(
        [
            (["input", "email"], "INVALID"),
            (["input", "firstName"], "TOO_LONG"),
            (["input", "phone"], "INVALID"),
            (["input", "shippingAddress", "line1"], "TOO_LONG"),
            (["input", "shippingAddress", "countryCode"], "INVALID"),
            (["input", "labels", "0"], "TOO_LONG"),
        ]
    )


async def test_text_that_looks_like_an_operator_is_stored_as_text(api, database):
    contact = await created(
        api,
        {
            "email": "op@example.com",
            "firstName": '{"$ne": null}',
            "company": "$where",
            "labels": ["$gt"],
        },
    )
    assert contact["firstName"] == '{"$ne": null}'
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert stored["firstName"] == '{"$ne": null}'
    assert stored["company"] == "$where"
    assert stored["labels"] == ["$gt"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($e: String!) { contactByEmail(email: $e) { id } }", {"e": {"$ne": None}}),
        ("query($id: ID!) { contact(id: $id) { id } }", {"id": {"$gt": ""}}),
        (CREATE, {"input": {"email": {"$ne": None}}}),
        (CREATE, {"input": {"email": "x@example.com", "labels": {"$ne": None}}}),
        ("query($q: String) { contacts(query: $q) { nodes { id } } }", {"q": {"$regex": ".*"}}),
    ],
)
async def test_objects_where_strings_belong_are_refused(api, database, base, query, variables):
    before = await everything(database)
    body = await api.gql(query, variables)
    assert body["data"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert await everything(database) == before


async def test_update_refusals_change_nothing(api, database):
    contact = await created(
        api, {"email": "u@example.com", "firstName": "Una", "phone": "+4930123456"}
    )
    before = await everything(database)
    for input, expected in (
        ({"email": "bad"}, [(["input", "email"], "INVALID")]),
        ({"firstName": "x" * 201}, [(["input", "firstName"], "TOO_LONG")]),
        ({"phone": "nope", "company": "Fine"}, [(["input", "phone"], "INVALID")]),
        (
            {"billingAddress": {"line2": "z" * 501}},
            [(["input", "billingAddress", "line2"], "TOO_LONG")],
        ),
        ({"lastName": "\x07"}, [(["input", "lastName"], "INVALID")]),
    ):
        data = await api.data(UPDATE, {"id": contact["id"], "input": input})
        assert data["contactUpdate"]["contact"] is None
        assert [(e["field"], e["code"]) for e in data["contactUpdate"]["userErrors"]] == expected
    assert await everything(database) == before


def forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        "!!!!",
        "x" * 2000,
        forged({"a": 1}),
        forged(["createdAt", None]),
        forged(["createdAt", None, "not-an-object-id"]),
        forged(["createdAt", {"$gt": 1}, "65f0c0ffee0000000000beef"]),
        forged(["createdAt", ["a", "b"], "65f0c0ffee0000000000beef"]),
        forged(["createdAt", {"d": "yesterday"}, "65f0c0ffee0000000000beef"]),
        forged(["createdAt", {"m": "lots"}, "65f0c0ffee0000000000beef"]),
        forged(["nameKey", "ann", "65f0c0ffee0000000000beef"]),  # made for another sort key
    ],
)
async def test_bad_cursors_are_bad_user_input(api, base, cursor):
    for variables in ({"first": 5, "after": cursor}, {"last": 5, "before": cursor}):
        body = await api.gql(PAGE, variables)
        assert body["data"] is None
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "ursor" in error["message"]


async def test_a_good_cursor_still_works(api, base):
    page = await api.data(PAGE, {"first": 1, "sortKey": "NAME"})
    cursor = page["contacts"]["pageInfo"]["endCursor"]
    assert (await api.data(PAGE, {"first": 1, "after": cursor, "sortKey": "NAME"}))["contacts"][
        "nodes"
    ] == []


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 0},
        {"first": -1},
        {"first": 251},
        {"last": 0},
        {"last": 251},
        {"last": 100_000},
        {"first": 5, "last": 5},
    ],
)
async def test_page_size_outside_1_to_250_is_bad_user_input(api, base, variables):
    body = await api.gql(PAGE, variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first" in error["message"] or "last" in error["message"]


async def test_page_sizes_at_the_bounds_work(api, base):
    for variables in ({"first": 1}, {"first": 250}, {"last": 1}, {"last": 250}):
        assert len((await api.data(PAGE, variables))["contacts"]["nodes"]) == 1


@pytest.mark.parametrize(
    "filter",
    [
        {"totalSpentMin": "abc"},
        {"totalSpentMin": "NaN"},
        {"totalSpentMax": "Infinity"},
        {"totalSpentMax": "1,50"},
        {"totalSpentMax": 1.5},
        {"totalSpentMax": True},
        {"totalSpentMax": "1" * 41},
        {"createdAfter": "2025-13-01T00:00:00Z"},
        {"createdAfter": "2025-01-01"},
        {"createdBefore": "2025-01-01T10:00:00"},
        {"lastOrderAfter": 1735689600},
        {"lastOrderBefore": "x" * 100},
    ],
)
async def test_bad_decimal_and_datetime_variables(api, base, filter):
    body = await api.gql(
        "query($filter: ContactFilter) { contacts(filter: $filter) { nodes { id } } }",
        {"filter": filter},
    )
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("Variable '$filter'")
    assert "Traceback" not in error["message"]


async def test_good_decimal_and_datetime_variables(api, base):
    for filter in (
        {"totalSpentMin": "0", "totalSpentMax": "19.90"},
        {"totalSpentMin": "-1", "totalSpentMax": " 1000.5 "},
        {"totalSpentMin": 0},
        {"createdAfter": "2020-01-01T00:00:00Z", "createdBefore": "2999-01-01T00:00:00.123+05:30"},
    ):
        data = await api.data(
            "query($filter: ContactFilter) { contacts(filter: $filter) { nodes { email } } }",
            {"filter": filter},
        )
        assert data["contacts"]["nodes"] == [{"email": "base@example.com"}], filter


async def test_update_reads_a_national_phone_in_the_stored_address_country(api, database):
    contact = await created(
        api, {"email": "de@example.com", "billingAddress": {"city": "Wien", "countryCode": "AT"}}
    )
    phone_update = (
        "mutation($id: ID!, $phone: String) { contactUpdate(id: $id, input: {phone: $phone}) {"
    )
    phone_update += " contact { phone } userErrors { field code } } }"
    data = await api.data(phone_update, {"id": contact["id"], "phone": "01 234567"})
    assert data["contactUpdate"] == {"contact": {"phone": "+431234567"}, "userErrors": []}
    # Without any address there is no country to read it in.
    bare = await created(api, {"email": "bare@example.com"})
    before = await everything(database)
    data = await api.data(phone_update, {"id": bare["id"], "phone": "01 234567"})
    assert data["contactUpdate"] == {
        "contact": None,
        "userErrors": [{"field": ["input", "phone"], "code": "INVALID"}],
    }
    assert await everything(database) == before
