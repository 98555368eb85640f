"""The filter's JSON form: what the export's `filter` and a saved segment accept, refuse and keep.

The JSON form is the ContactFilter input exactly as a client writes it, so
a filter copied from a GraphQL call into an export URL selects the same
contacts; every bad value is refused naming its field, and the bounds are
exact (the 250th label is accepted, the 251st refused).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from decimal import Decimal

import pytest
from conftest import SHOP
from hypothesis import given, settings
from hypothesis import strategies as st
from list_factories import add_contacts, at, contact_doc

from loaders.contacts import ContactFilterSpec
from resolvers.contact_filters import FilterError, check_spec, spec_from_json, spec_to_json

URL = "/exports/contacts.csv"
MAX_COUNT = 2**31 - 1
KNOWN = (
    "kind, labelsAny, labelsAll, labelsNone, totalSpentMin, totalSpentMax, orderCountMin, "
    "orderCountMax, lastOrderAfter, lastOrderBefore, createdAfter, createdBefore, "
    "marketingState, hasAccount, hasActiveSubscription, isMember, segment"
)

CONTACTS = """
query($filter: ContactFilter) {
  contacts(first: 50, filter: $filter, sortKey: EMAIL) { nodes { email } }
}
"""

CREATE_SEGMENT = """
mutation($input: SegmentInput!) {
  segmentCreate(input: $input) {
    segment { id filter contactCount }
    userErrors { field message code }
  }
}
"""


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


@pytest.fixture
async def people(database) -> None:
    await add_contacts(
        database,
        contact_doc(
            "a@example.com",
            orders=1,
            spent="10.00",
            labels=["VIP"],
            created=at(0),
            state="SUBSCRIBED",
            hasAccount=True,
            lastOrderAt=at(5),
        ),
        contact_doc(
            "b@example.com",
            orders=3,
            spent="250.50",
            labels=["vip", "Wholesale"],
            created=at(10),
            lastOrderAt=at(20),
        ),
        contact_doc("c@example.com", created=at(30), state="PENDING"),
        contact_doc(
            "d@example.com",
            orders=MAX_COUNT,
            spent="999999999999999.9999",
            created=at(40),
            lastOrderAt=at(41),
        ),
    )


async def export(http, key: str, filter: object):
    text = filter if isinstance(filter, str) else json.dumps(filter)
    return await http.get(URL, params={"filter": text}, headers={"Authorization": f"Bearer {key}"})


async def exported_emails(http, key: str, filter: object) -> list[str]:
    response = await export(http, key, filter)
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    return sorted(row["Email"] for row in rows)


async def refusal(http, key: str, filter: object) -> str:
    """The message of the 400 the export answers; nothing is exported."""
    response = await export(http, key, filter)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    return error["message"]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"kind": "LEAD"}, ["c"]),
        ({"kind": "CUSTOMER"}, ["a", "b", "d"]),
        ({"labelsAny": ["VIP"]}, ["a", "b"]),
        ({"labelsAll": ["vip", "wholesale"]}, ["b"]),
        ({"labelsNone": ["VIP"]}, ["c", "d"]),
        ({"totalSpentMin": "250.50"}, ["b", "d"]),
        ({"totalSpentMin": "999999999999999.9999"}, ["d"]),
        ({"totalSpentMax": "10"}, ["a", "c"]),
        ({"totalSpentMax": 10}, ["a", "c"]),
        ({"orderCountMin": 2}, ["b", "d"]),
        ({"orderCountMin": MAX_COUNT}, ["d"]),
        ({"orderCountMax": 0}, ["c"]),
        ({"orderCountMin": 0, "orderCountMax": 1}, ["a", "c"]),
        ({"lastOrderAfter": iso(at(6))}, ["b", "d"]),
        ({"lastOrderBefore": iso(at(6))}, ["a"]),
        ({"createdAfter": iso(at(9))}, ["b", "c", "d"]),
        ({"createdBefore": iso(at(9))}, ["a"]),
        # The same instant written with another offset, and with a lower-case z.
        ({"createdBefore": "2025-03-19T09:00:00+01:00"}, ["a"]),
        ({"createdBefore": "2025-03-19T08:00:00Z"}, ["a"]),
        ({"createdAfter": "2025-03-20T07:59:59.999z"}, ["b", "c", "d"]),
        ({"marketingState": "PENDING"}, ["c"]),
        ({"marketingState": "SUBSCRIBED"}, ["a"]),
        ({"hasAccount": True}, ["a"]),
        ({"hasAccount": False}, ["b", "c", "d"]),
        ({"kind": "CUSTOMER", "labelsNone": ["wholesale"], "orderCountMax": 5}, ["a"]),
        ({}, ["a", "b", "c", "d"]),
    ],
)
async def test_a_filter_selects_in_the_export_what_it_selects_in_the_api(
    api, http, keys, people, filter, expected
):
    emails = [f"{name}@example.com" for name in expected]

    assert await exported_emails(http, keys["READER"], filter) == emails
    if isinstance(filter.get("totalSpentMax"), int):
        return  # a bare number is the JSON form's only; GraphQL's Decimal is a string
    data = await api.data(CONTACTS, {"filter": filter})
    assert [n["email"] for n in data["contacts"]["nodes"]] == emails


async def test_conditions_set_to_null_are_left_out_and_the_rest_still_applies(http, keys, people):
    filter = {"kind": None, "labelsAny": None, "segment": None, "hasAccount": True}

    assert await exported_emails(http, keys["ADMIN"], filter) == ["a@example.com"]


BAD_VALUES = [
    ([{"kind": "LEAD"}], 'A filter is a JSON object such as {"kind": "CUSTOMER"}.'),
    ('"LEAD"', 'A filter is a JSON object such as {"kind": "CUSTOMER"}.'),
    ({"kindd": "LEAD"}, f"Unknown filter field `kindd`; known: {KNOWN}."),
    ({"kind": "lead"}, "`kind` must be one of CUSTOMER, LEAD."),
    (
        {"marketingState": "YES"},
        "`marketingState` must be one of NOT_SUBSCRIBED, PENDING, SUBSCRIBED, UNSUBSCRIBED.",
    ),
    ({"labelsAny": "VIP"}, "`labelsAny` must be a list of label names."),
    ({"labelsAll": ["VIP", 7]}, "`labelsAll` must be a list of label names."),
    ({"labelsNone": {"VIP": True}}, "`labelsNone` must be a list of label names."),
    ({"totalSpentMin": 19.9}, '`totalSpentMin` must be a decimal amount such as "19.90".'),
    ({"totalSpentMax": "NaN"}, '`totalSpentMax` must be a decimal amount such as "19.90".'),
    ({"totalSpentMax": True}, '`totalSpentMax` must be a decimal amount such as "19.90".'),
    ({"orderCountMin": "2"}, "`orderCountMin` must be a whole number."),
    ({"orderCountMax": 2.0}, "`orderCountMax` must be a whole number."),
    ({"orderCountMax": True}, "`orderCountMax` must be a whole number."),
    (
        {"lastOrderAfter": 1735689600},
        "`lastOrderAfter` must be an ISO-8601 date-time with a UTC offset.",
    ),
    ({"lastOrderBefore": "yesterday"}, "`lastOrderBefore` is not an ISO-8601 date-time."),
    (
        {"createdAfter": "2025-01-01T00:00:00"},
        "`createdAfter` has no UTC offset (add 'Z' or '+01:00').",
    ),
    (
        {"createdBefore": "2025-02-30T00:00:00Z"},
        "`createdBefore` is not an ISO-8601 date-time.",
    ),
    ({"hasAccount": "true"}, "`hasAccount` must be true or false."),
    ({"hasAccount": 1}, "`hasAccount` must be true or false."),
    ({"hasActiveSubscription": "yes"}, "`hasActiveSubscription` must be true or false."),
    ({"isMember": 0}, "`isMember` must be true or false."),
    ({"segment": 5}, "`segment` must be a segment id."),
]


@pytest.mark.parametrize(("filter", "message"), BAD_VALUES)
async def test_a_bad_value_is_refused_naming_its_field(http, keys, people, filter, message):
    assert await refusal(http, keys["ADMIN"], filter) == f"`filter`: {message}"


@pytest.mark.parametrize(("filter", "message"), BAD_VALUES)
def test_a_filter_error_names_the_field_at_fault(filter, message):
    data = json.loads(filter) if isinstance(filter, str) else filter
    # Conditions before it, null or a segment reference, do not hide it.
    if isinstance(data, dict):
        data = {"segment": "REPEAT_CUSTOMERS", "kind": None, **data}

    with pytest.raises(FilterError) as raised:
        spec_from_json(data)

    field = next(iter(filter)) if isinstance(filter, dict) else None
    assert (raised.value.field, raised.value.message, str(raised.value)) == (
        field,
        message,
        message,
    )


@pytest.mark.parametrize("name", ["labelsAny", "labelsAll", "labelsNone"])
async def test_a_label_list_takes_250_labels_and_not_251(http, keys, people, name):
    labels = [f"L{i}" for i in range(251)]
    # labelsAll of 250 absent labels selects nobody; the others everybody or nobody.
    accepted = await exported_emails(http, keys["ADMIN"], {name: labels[:250]})
    assert accepted == ([] if name != "labelsNone" else [f"{c}@example.com" for c in "abcd"])

    message = await refusal(http, keys["ADMIN"], {name: labels})

    assert message == "`filter`: A label filter takes at most 250 labels."


@pytest.mark.parametrize("name", ["labelsAny", "labelsAll", "labelsNone"])
async def test_a_label_in_a_filter_is_at_most_100_characters(http, keys, people, name):
    long = "x" * 100
    selected = {
        "labelsAny": ["a@example.com", "b@example.com"],
        "labelsAll": [],
        "labelsNone": ["c@example.com", "d@example.com"],
    }
    assert await exported_emails(http, keys["ADMIN"], {name: ["VIP", long]}) == selected[name]

    message = await refusal(http, keys["ADMIN"], {name: ["VIP", long + "x"]})

    assert message == "`filter`: A label is at most 100 characters."


@pytest.mark.parametrize("name", ["totalSpentMin", "totalSpentMax"])
@pytest.mark.parametrize(
    ("amount", "accepted"),
    [
        ("999999999999999.9999", True),
        ("-999999999999999.9999", True),
        ("1000000000000000", False),
        ("-1000000000000000", False),
        ("1000000000000000.0000", False),
    ],
)
async def test_a_spending_bound_is_below_a_quadrillion(http, keys, people, name, amount, accepted):
    response = await export(http, keys["ADMIN"], {name: amount})

    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        message = response.json()["errors"][0]["message"]
        assert message == "`filter`: totalSpent bounds must be finite amounts."


async def test_a_spending_bound_keeps_at_most_34_significant_digits(
    api, http, keys, database, people
):
    # What MongoDB compares exactly (Decimal128); more digits cannot be compared at all.
    digits_34 = "0." + "1234567890" * 3 + "1234"
    digits_35 = digits_34 + "5"
    assert await exported_emails(http, keys["ADMIN"], {"totalSpentMax": digits_34}) == [
        "c@example.com"
    ]

    message = await refusal(http, keys["ADMIN"], {"totalSpentMax": digits_35})
    data = await api.data(
        CREATE_SEGMENT, {"input": {"name": "Precise", "filter": {"totalSpentMin": digits_35}}}
    )

    expected = "totalSpent bounds have at most 34 significant digits."
    assert message == f"`filter`: {expected}"
    assert data["segmentCreate"] == {
        "segment": None,
        "userErrors": [
            {"field": ["input", "filter", "totalSpentMin"], "message": expected, "code": "INVALID"}
        ],
    }
    assert await database.segments.count_documents({}) == 0


@pytest.mark.parametrize("name", ["orderCountMin", "orderCountMax"])
@pytest.mark.parametrize(
    ("count", "accepted"), [(0, True), (MAX_COUNT, True), (-1, False), (MAX_COUNT + 1, False)]
)
async def test_an_order_count_bound_is_a_32_bit_count(http, keys, people, name, count, accepted):
    response = await export(http, keys["ADMIN"], {name: count})

    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        message = response.json()["errors"][0]["message"]
        assert message == "`filter`: orderCount bounds must be between 0 and 2147483647."


async def test_a_date_time_is_at_most_64_characters(http, keys, people):
    # Both are nonsense; only the one over the limit is refused before it is read.
    at_limit = await refusal(http, keys["ADMIN"], {"createdAfter": "2" * 64})
    over = await refusal(http, keys["ADMIN"], {"createdAfter": "2" * 65})

    assert at_limit == "`filter`: `createdAfter` is not an ISO-8601 date-time."
    assert over == "`filter`: `createdAfter` must be an ISO-8601 date-time with a UTC offset."


async def test_a_segment_keeps_at_most_250_labels_per_list(api, database):
    labels = [f"L{i}" for i in range(251)]
    for name in ("labelsAny", "labelsAll", "labelsNone"):
        created = await api.data(
            CREATE_SEGMENT, {"input": {"name": f"Ok {name}", "filter": {name: labels[:250]}}}
        )
        assert created["segmentCreate"]["userErrors"] == []
        assert created["segmentCreate"]["segment"]["filter"] == {name: labels[:250]}

        refused = await api.data(
            CREATE_SEGMENT, {"input": {"name": f"Too many {name}", "filter": {name: labels}}}
        )

        assert refused["segmentCreate"] == {
            "segment": None,
            "userErrors": [
                {
                    "field": ["input", "filter", name],
                    "message": "A label filter takes at most 250 labels.",
                    "code": "INVALID",
                }
            ],
        }
    stored = await database.segments.find({"shopId": SHOP}).to_list()
    assert sorted(s["name"] for s in stored) == ["Ok labelsAll", "Ok labelsAny", "Ok labelsNone"]


@pytest.mark.parametrize(
    ("filter", "field", "message"),
    [
        ({"labelsAny": ["ok", "y" * 101]}, "labelsAny", "A label is at most 100 characters."),
        ({"labelsNone": ["z" * 101]}, "labelsNone", "A label is at most 100 characters."),
        (
            {"totalSpentMax": "-1000000000000000"},
            "totalSpentMax",
            "totalSpent bounds must be finite amounts.",
        ),
        (
            {"totalSpentMin": "1000000000000000"},
            "totalSpentMin",
            "totalSpent bounds must be finite amounts.",
        ),
        (
            {"orderCountMin": 1, "orderCountMax": -1},
            "orderCountMax",
            "orderCount bounds must be between 0 and 2147483647.",
        ),
    ],
)
async def test_a_segment_out_of_bounds_is_refused_and_not_stored(
    api, database, filter, field, message
):
    data = await api.data(CREATE_SEGMENT, {"input": {"name": "Bad", "filter": filter}})

    assert data["segmentCreate"] == {
        "segment": None,
        "userErrors": [
            {"field": ["input", "filter", field], "message": message, "code": "INVALID"}
        ],
    }
    assert await database.segments.count_documents({}) == 0


async def test_a_segment_stores_its_filter_in_the_json_form_and_exports_the_same_people(
    api, http, keys, database, people
):
    filter = {
        "kind": "CUSTOMER",
        "labelsAny": ["VIP"],
        "totalSpentMin": "+10",
        "totalSpentMax": "300.500",
        "orderCountMax": 3,
        "createdAfter": "2025-03-10T09:00:00.123456+01:00",
        "lastOrderBefore": "2025-04-01T00:00:00Z",
        "hasAccount": False,
    }

    created = await api.data(CREATE_SEGMENT, {"input": {"name": "Spenders", "filter": filter}})

    kept = {
        "kind": "CUSTOMER",
        "labelsAny": ["VIP"],
        "totalSpentMin": "10",
        "totalSpentMax": "300.500",
        "orderCountMax": 3,
        "lastOrderBefore": "2025-04-01T00:00:00.000+00:00",
        "createdAfter": "2025-03-10T08:00:00.123+00:00",
        "hasAccount": False,
    }
    segment = created["segmentCreate"]["segment"]
    assert segment["filter"] == kept
    assert (await database.segments.find_one({"shopId": SHOP}))["filter"] == kept
    assert segment["contactCount"] == 1
    assert await exported_emails(http, keys["ADMIN"], {"segment": segment["id"]}) == [
        "b@example.com"
    ]
    assert await exported_emails(http, keys["ADMIN"], kept) == ["b@example.com"]


def test_parsing_normalizes_times_to_utc_milliseconds_and_keeps_the_segment_apart():
    spec, segment = spec_from_json(
        {
            "createdAfter": "2025-01-01T01:00:00.123999+01:00",
            "lastOrderBefore": "2025-06-30T23:59:59.9999z",
            "totalSpentMin": " 19.90 ",
            "totalSpentMax": "0.0000001",
            "orderCountMin": 0,
            "segment": "REPEAT_CUSTOMERS",
        }
    )

    assert spec == ContactFilterSpec(
        created_after=dt.datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=dt.UTC),
        last_order_before=dt.datetime(2025, 6, 30, 23, 59, 59, 999000, tzinfo=dt.UTC),
        total_spent_min=Decimal("19.90"),
        total_spent_max=Decimal("0.0000001"),
        order_count_min=0,
    )
    assert segment == "REPEAT_CUSTOMERS"
    assert spec_to_json(spec) == {
        "totalSpentMin": "19.90",
        "totalSpentMax": "0.0000001",
        "orderCountMin": 0,
        "lastOrderBefore": "2025-06-30T23:59:59.999+00:00",
        "createdAfter": "2025-01-01T00:00:00.123+00:00",
    }


def test_a_filter_is_written_in_utc_whatever_the_servers_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        spec, _ = spec_from_json({"createdAfter": "2025-01-01T12:00:00Z"})
        written = spec_to_json(spec)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert written == {"createdAfter": "2025-01-01T12:00:00.000+00:00"}


def test_a_filter_error_names_its_field_and_reads_as_its_message():
    with pytest.raises(FilterError) as raised:
        spec_from_json({"orderCountMin": 3, "orderCountMax": "3"})

    assert raised.value.field == "orderCountMax"
    assert raised.value.message == "`orderCountMax` must be a whole number."
    assert str(raised.value) == "`orderCountMax` must be a whole number."
    with pytest.raises(FilterError) as whole:
        spec_from_json(None)
    assert whole.value.field is None


@pytest.mark.parametrize("amount", ["Infinity", "-Infinity", "NaN", "1E+15"])
def test_a_stored_filter_with_an_unusable_amount_is_refused(amount):
    # Amounts that no client can send as JSON, but that a stored filter could hold.
    with pytest.raises(FilterError) as raised:
        check_spec(ContactFilterSpec(total_spent_max=Decimal(amount)))

    assert (raised.value.field, raised.value.message) == (
        "totalSpentMax",
        "totalSpent bounds must be finite amounts.",
    )


utc_millis = st.datetimes(
    min_value=dt.datetime(1970, 1, 1),
    max_value=dt.datetime(2200, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
amounts = st.decimals(
    min_value=Decimal("-999999999999999.9999"),
    max_value=Decimal("999999999999999.9999"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
label_lists = st.lists(st.text(min_size=1, max_size=100), max_size=5)
counts = st.integers(min_value=0, max_value=MAX_COUNT)
specs = st.builds(
    ContactFilterSpec,
    kind=st.none() | st.sampled_from(["CUSTOMER", "LEAD"]),
    labels_any=st.none() | label_lists,
    labels_all=st.none() | label_lists,
    labels_none=st.none() | label_lists,
    total_spent_min=st.none() | amounts,
    total_spent_max=st.none() | amounts,
    order_count_min=st.none() | counts,
    order_count_max=st.none() | counts,
    last_order_after=st.none() | utc_millis,
    last_order_before=st.none() | utc_millis,
    created_after=st.none() | utc_millis,
    created_before=st.none() | utc_millis,
    marketing_state=st.none()
    | st.sampled_from(["NOT_SUBSCRIBED", "PENDING", "SUBSCRIBED", "UNSUBSCRIBED"]),
    has_account=st.none() | st.booleans(),
    has_active_subscription=st.none() | st.booleans(),
    is_member=st.none() | st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(specs)
def test_printing_then_parsing_a_filter_gives_it_back(spec):
    printed = spec_to_json(spec)

    # What is stored is plain JSON, and reads back as the same filter and the same text.
    text = json.dumps(printed)
    parsed, segment = spec_from_json(json.loads(text))
    assert parsed == spec
    assert segment is None
    assert json.dumps(spec_to_json(parsed)) == text
