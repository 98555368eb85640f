"""Subscriptions and memberships: recorded as the shop reports them, in order, once; the Recurring tab.

The shop owns billing. contactgraph records each report in one transaction
(contract, contact, log, counts), ignores late and replayed reports, and
asks the shop to cancel without pretending to.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bson import ObjectId
from conftest import SHOP, Api

from graph.types.node import decode_id, encode_id
from resolvers import subscription_record
from resolvers.contact_counts import contact_totals

RECORD = """
mutation($input: SubscriptionContractInput!) {
  subscriptionContractRecord(input: $input) {
    subscriptionContract {
      id externalId kind status title quantity interval intervalCount
      price { amount currencyCode }
      startedAt nextBillingAt endedAt cancelRequestedAt
      contact { id email kind activeSubscriptionCount isMember }
    }
    userErrors { field message code }
  }
}
"""
CANCEL = """
mutation($id: ID!, $reason: String) {
  subscriptionContractCancel(id: $id, reason: $reason) {
    subscriptionContract { id status cancelRequestedAt }
    userErrors { field message code }
  }
}
"""
RECURRING_TAB = """
query($id: ID!, $first: Int, $after: String, $status: [SubscriptionStatus!]) {
  contact(id: $id) {
    activeSubscriptionCount
    isMember
    subscriptionContracts(first: $first, after: $after, status: $status) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage endCursor }
      edges { cursor node { externalId status title } }
      nodes { externalId }
    }
  }
}
"""
LOG = """
query($id: ID!) { contact(id: $id) { activity(first: 50) { nodes { kind text author } } } }
"""
CONTACTS = """
query($filter: ContactFilter) { contacts(first: 50, filter: $filter) { nodes { email } } }
"""

START = "2026-01-10T09:00:00.000Z"


def report(external_id: str = "SUB-1", **fields: Any) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "email": "Sam@Example.com",
        "firstName": "Sam",
        "status": "ACTIVE",
        "title": "Coffee club",
        "quantity": 2,
        "price": "12.50",
        "currencyCode": "EUR",
        "interval": "MONTH",
        "startedAt": START,
        **fields,
    }


async def record(api: Api, external_id: str = "SUB-1", **fields: Any) -> dict[str, Any]:
    data = await api.data(RECORD, {"input": report(external_id, **fields)})
    return data["subscriptionContractRecord"]


async def record_ok(api: Api, external_id: str = "SUB-1", **fields: Any) -> dict[str, Any]:
    answer = await record(api, external_id, **fields)
    assert answer["userErrors"] == []
    return answer["subscriptionContract"]


async def contact_of(database, email_key: str = "sam@example.com") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    doc = await database.contacts.find_one({"shopId": SHOP, "emailKey": email_key})
    assert doc is not None
    return doc


def kinds(doc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in sorted(doc["activity"], key=lambda e: (e["at"], e["_id"]))]


def texts(doc: dict[str, Any], kind: str) -> list[str]:
    ordered = sorted(doc["activity"], key=lambda e: (e["at"], e["_id"]))
    return [e.get("text") for e in ordered if e["kind"] == kind]


async def snapshot(database) -> tuple[list, list, list]:  # type: ignore[no-untyped-def]
    return (
        await database.subscription_contracts.find({}, {"_id": 0}).sort("externalId").to_list(),
        await database.contacts.find({}, {"_id": 0}).sort("emailKey").to_list(),
        await database.events.find({}, {"_id": 0, "timestamp": 0}).to_list(),
    )


# ---------------------------------------------------------------- recording


async def test_a_first_report_makes_a_customer_with_the_contract_and_a_started_entry(api, database):
    contract = await record_ok(api, nextBillingAt="2026-02-10T09:00:00.000Z")

    assert contract["externalId"] == "SUB-1" and contract["kind"] == "PRODUCT"
    assert contract["status"] == "ACTIVE" and contract["title"] == "Coffee club"
    assert contract["quantity"] == 2 and contract["interval"] == "MONTH"
    assert contract["intervalCount"] == 1
    assert contract["price"] == {"amount": "12.50", "currencyCode": "EUR"}
    assert contract["startedAt"] == "2026-01-10T09:00:00.000+00:00"
    assert contract["nextBillingAt"] == "2026-02-10T09:00:00.000+00:00"
    assert contract["endedAt"] is None and contract["cancelRequestedAt"] is None
    assert contract["contact"]["email"] == "Sam@example.com"
    assert contract["contact"]["kind"] == "CUSTOMER"
    assert contract["contact"]["activeSubscriptionCount"] == 1
    assert contract["contact"]["isMember"] is False
    doc = await contact_of(database)
    assert doc["firstName"] == "Sam" and doc["activeSubscriptionCount"] == 1
    assert kinds(doc) == ["SUBSCRIPTION_STARTED"]
    assert texts(doc, "SUBSCRIPTION_STARTED") == ["Coffee club (2 × 12.50 EUR every month)"]
    # The new customer is counted and announced in the same transaction.
    assert (await contact_totals(database, SHOP))["CUSTOMER"] == 1
    created = await database.events.find({"type": "CONTACT_CREATED"}).to_list()
    assert [e["data"]["id"] for e in created] == [contract["contact"]["id"]]
    # The first report gave the shop its currency, as a first order does.
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "EUR"


async def test_a_membership_makes_a_member_and_a_lead_becomes_a_customer(api, database):
    lead = await api.data(
        'mutation { contactCreate(input: {email: "sam@example.com"}) { contact { id kind } } }'
    )
    contact_id = lead["contactCreate"]["contact"]["id"]
    before = await contact_totals(database, SHOP)

    contract = await record_ok(api, kind="MEMBERSHIP", title="Gold", quantity=1, price="9")

    assert contract["contact"] == {
        "id": contact_id,
        "email": "sam@example.com",
        "kind": "CUSTOMER",
        "activeSubscriptionCount": 1,
        "isMember": True,
    }
    doc = await contact_of(database)
    # The start is logged at the time the shop gives, before this contact was made here.
    assert kinds(doc) == ["SUBSCRIPTION_STARTED", "CONTACT_CREATED", "CONVERTED_TO_CUSTOMER"]
    assert texts(doc, "SUBSCRIPTION_STARTED") == ["Membership: Gold (9 EUR every month)"]
    after = await contact_totals(database, SHOP)
    assert (after["LEAD"], after["CUSTOMER"]) == (before["LEAD"] - 1, before["CUSTOMER"] + 1)
    assert after["total"] == before["total"]
    updated = await database.events.find({"type": "CONTACT_UPDATED"}).to_list()
    assert [e["data"] for e in updated] == [
        {
            "id": contact_id,
            "kind": "CUSTOMER",
            "firstName": "Sam",  # the lead had none: the contract fills it
            "activeSubscriptionCount": 1,
            "isMember": True,
        }
    ]


async def test_a_replay_changes_nothing_and_logs_nothing(api, database):
    first = await record_ok(api, updatedAt="2026-01-10T09:00:00Z")
    before = await snapshot(database)

    for _ in range(2):
        again = await record_ok(api, updatedAt="2026-01-10T09:00:00Z")
        assert again == first
    # Without updatedAt, the same content is a replay too.
    assert (await record_ok(api))["id"] == first["id"]

    assert await snapshot(database) == before


async def test_a_report_older_than_the_applied_one_changes_nothing(api, database):
    await record_ok(api, updatedAt="2026-03-01T00:00:00Z")
    await record_ok(api, status="PAUSED", updatedAt="2026-03-05T00:00:00Z")
    before = await snapshot(database)

    late = await record_ok(api, status="ACTIVE", price="99", updatedAt="2026-03-02T00:00:00Z")

    assert late["status"] == "PAUSED" and late["price"]["amount"] == "12.50"
    assert await snapshot(database) == before


async def test_each_real_change_is_one_entry_that_says_what_changed(api, database):
    steps = [
        ({"status": "PAUSED"}, "Coffee club: paused"),
        ({"status": "ACTIVE"}, "Coffee club: resumed"),
        ({"status": "PAST_DUE"}, "Coffee club: past due"),
        ({"status": "ACTIVE"}, "Coffee club: active again"),
        ({"price": "14.00"}, "Coffee club: price 12.50 EUR → 14.00 EUR"),
        ({"price": "14.00", "quantity": 3}, "Coffee club: quantity 2 → 3"),
        (
            {"price": "14.00", "quantity": 3, "interval": "WEEK", "intervalCount": 2},
            "Coffee club: every month → every 2 weeks",
        ),
    ]
    await record_ok(api, updatedAt="2026-02-01T00:00:00Z")
    for day, (change, _) in enumerate(steps, start=2):
        answer = await record_ok(api, updatedAt=f"2026-02-{day:02d}T00:00:00Z", **change)
        assert answer["status"] == change.get("status", "ACTIVE")

    doc = await contact_of(database)
    assert texts(doc, "SUBSCRIPTION_CHANGED") == [text for _, text in steps]
    assert kinds(doc).count("SUBSCRIPTION_STARTED") == 1
    # A renewal (a new next billing date) is stored without an entry.
    renewed = await record_ok(
        api,
        updatedAt="2026-02-20T00:00:00Z",
        nextBillingAt="2026-03-06T00:00:00Z",
        **steps[-1][0],
    )
    assert renewed["nextBillingAt"] == "2026-03-06T00:00:00.000+00:00"
    assert len((await contact_of(database))["activity"]) == len(doc["activity"])


async def test_an_ended_contract_stays_ended_and_counts_follow(api, database):
    await record_ok(api, kind="MEMBERSHIP", updatedAt="2026-02-01T00:00:00Z")
    await record_ok(api, "SUB-2", updatedAt="2026-02-01T00:00:00Z")
    assert (await contact_of(database))["activeSubscriptionCount"] == 2

    ended = await record_ok(
        api,
        kind="MEMBERSHIP",
        status="CANCELED",
        endedAt="2026-02-03T00:00:00Z",
        updatedAt="2026-02-03T00:00:00Z",
    )
    assert ended["status"] == "CANCELED"
    assert ended["endedAt"] == "2026-02-03T00:00:00.000+00:00"
    assert ended["contact"]["activeSubscriptionCount"] == 1
    assert ended["contact"]["isMember"] is False
    doc = await contact_of(database)
    assert texts(doc, "SUBSCRIPTION_ENDED") == ["Coffee club: canceled"]

    # A newer report cannot revive it (a retried old webhook looks like this).
    revived = await record_ok(api, kind="MEMBERSHIP", updatedAt="2026-02-04T00:00:00Z")
    assert revived["status"] == "CANCELED"
    again = await contact_of(database)
    assert again["activity"] == doc["activity"] and again["isMember"] is False

    expired = await record_ok(api, "SUB-2", status="EXPIRED", updatedAt="2026-02-05T00:00:00Z")
    assert expired["endedAt"] == "2026-02-05T00:00:00.000+00:00"
    assert expired["contact"]["activeSubscriptionCount"] == 0
    assert texts(await contact_of(database), "SUBSCRIPTION_ENDED")[-1] == "Coffee club: expired"


async def test_paused_and_past_due_count_as_not_ended_and_a_paused_membership_is_a_member(
    api, database
):
    await record_ok(api, kind="MEMBERSHIP", status="PAUSED")
    await record_ok(api, "SUB-2", status="PAST_DUE")
    doc = await contact_of(database)
    assert doc["activeSubscriptionCount"] == 2 and doc["isMember"] is True
    await record_ok(api, kind="MEMBERSHIP", status="PAST_DUE")
    doc = await contact_of(database)
    assert doc["activeSubscriptionCount"] == 2 and doc["isMember"] is False


async def test_a_contract_first_reported_over_logs_its_start_and_its_end(api, database):
    contract = await record_ok(api, status="EXPIRED", endedAt="2026-01-20T00:00:00Z")
    assert contract["contact"]["activeSubscriptionCount"] == 0
    doc = await contact_of(database)
    assert kinds(doc) == ["SUBSCRIPTION_STARTED", "SUBSCRIPTION_ENDED"]
    assert doc["kind"] == "CUSTOMER"


async def test_the_same_external_id_reported_ten_times_at_once_is_one_contract(api, database):
    answers = await asyncio.gather(*[record(api, updatedAt=START) for _ in range(10)])

    assert all(a["userErrors"] == [] for a in answers)
    assert len({a["subscriptionContract"]["id"] for a in answers}) == 1
    assert await database.subscription_contracts.count_documents({}) == 1
    assert await database.contacts.count_documents({}) == 1
    doc = await contact_of(database)
    assert kinds(doc) == ["SUBSCRIPTION_STARTED"] and doc["activeSubscriptionCount"] == 1
    assert (await contact_totals(database, SHOP))["total"] == 1
    assert await database.events.count_documents({"type": "CONTACT_CREATED"}) == 1


async def test_contracts_of_one_contact_reported_at_once_count_exactly(api, database):
    await asyncio.gather(*[record(api, f"SUB-{n}") for n in range(8)])
    doc = await contact_of(database)
    assert doc["activeSubscriptionCount"] == 8
    assert kinds(doc) == ["SUBSCRIPTION_STARTED"] * 8


async def test_names_fill_gaps_and_never_overwrite(api, database):
    await api.data(
        'mutation { contactCreate(input: {email: "sam@example.com", lastName: "Hand"}) '
        "{ contact { id } } }"
    )
    await record_ok(api, firstName="Samuel", lastName="Other")
    doc = await contact_of(database)
    assert (doc["firstName"], doc["lastName"]) == ("Samuel", "Hand")


# ---------------------------------------------------------------- validation

BAD_INPUTS = [
    ({"externalId": ""}, ["input", "externalId"], "REQUIRED"),
    ({"externalId": "x" * 201}, ["input", "externalId"], "TOO_LONG"),
    ({"email": "not an address"}, ["input", "email"], "INVALID"),
    ({"firstName": "a\x00b"}, ["input", "firstName"], "INVALID"),
    ({"title": "  "}, ["input", "title"], "REQUIRED"),
    ({"title": "t" * 501}, ["input", "title"], "TOO_LONG"),
    ({"quantity": 0}, ["input", "quantity"], "INVALID"),
    ({"quantity": 10_001}, ["input", "quantity"], "INVALID"),
    ({"intervalCount": 0}, ["input", "intervalCount"], "INVALID"),
    ({"intervalCount": 366}, ["input", "intervalCount"], "INVALID"),
    ({"price": "0"}, ["input", "price"], "INVALID"),
    ({"price": "-1"}, ["input", "price"], "INVALID"),
    ({"price": "1.00001"}, ["input", "price"], "INVALID"),
    ({"price": "1000000000000"}, ["input", "price"], "INVALID"),
    ({"currencyCode": "eur"}, ["input", "currencyCode"], "INVALID"),
    ({"startedAt": "2999-01-01T00:00:00Z"}, ["input", "startedAt"], "INVALID"),
    ({"startedAt": "1969-12-31T23:59:59Z"}, ["input", "startedAt"], "INVALID"),
    ({"nextBillingAt": "2026-01-01T00:00:00Z"}, ["input", "nextBillingAt"], "INVALID"),
    ({"nextBillingAt": "2999-01-01T00:00:00Z"}, ["input", "nextBillingAt"], "INVALID"),
    ({"endedAt": "2026-01-20T00:00:00Z"}, ["input", "endedAt"], "INVALID"),  # ACTIVE
    (
        {"status": "CANCELED", "endedAt": "2026-01-01T00:00:00Z"},
        ["input", "endedAt"],
        "INVALID",
    ),
    ({"status": "CANCELED", "endedAt": "2999-01-01T00:00:00Z"}, ["input", "endedAt"], "INVALID"),
    ({"updatedAt": "2999-01-01T00:00:00Z"}, ["input", "updatedAt"], "INVALID"),
]


async def test_every_bad_input_is_refused_by_field_and_nothing_is_stored(api, database):
    for change, field, code in BAD_INPUTS:
        answer = await record(api, **change)
        assert answer["subscriptionContract"] is None, change
        assert [(e["field"], e["code"]) for e in answer["userErrors"]] == [(field, code)], change
        assert answer["userErrors"][0]["message"], change
    assert await database.subscription_contracts.count_documents({}) == 0
    assert await database.contacts.count_documents({}) == 0
    assert await database.events.count_documents({}) == 0
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] is None


async def test_all_problems_are_reported_at_once(api, database):
    answer = await record(api, quantity=0, price="0", title="", email="x")
    assert sorted(e["field"][1] for e in answer["userErrors"]) == [
        "email",
        "price",
        "quantity",
        "title",
    ]


async def test_the_currency_must_be_the_shops(api, database):
    await record_ok(api)
    before = await snapshot(database)
    answer = await record(api, "SUB-2", currencyCode="USD")
    assert answer["userErrors"] == [
        {
            "field": ["input", "currencyCode"],
            "message": "This shop records orders in EUR, not USD.",
            "code": "INVALID",
        }
    ]
    assert await snapshot(database) == before


async def test_a_wrong_enum_or_type_is_a_graphql_error_and_stores_nothing(api, database):
    body = await api.gql(RECORD, {"input": report(status="GONE")})
    assert body["errors"] and body.get("data") is None
    assert await database.subscription_contracts.count_documents({}) == 0


async def test_who_may_record_and_cancel(as_role, database):
    body = await as_role("INGEST").data(
        "mutation($input: SubscriptionContractInput!) { subscriptionContractRecord(input: $input)"
        " { subscriptionContract { id } userErrors { code } } }",
        {"input": report()},
    )
    contract = body["subscriptionContractRecord"]["subscriptionContract"]
    for role in ("READER", "PUBLIC"):
        body = await as_role(role).gql(RECORD, {"input": report("SUB-9")})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    for role in ("READER", "INGEST", "PUBLIC"):
        body = await as_role(role).gql(CANCEL, {"id": contract["id"]})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    assert await database.subscription_contracts.count_documents({}) == 1
    doc = await database.subscription_contracts.find_one({})
    assert doc["cancelRequestedAt"] is None


async def test_an_ingest_key_reads_the_contract_but_not_the_person(as_role, database):
    body = await as_role("INGEST").gql(RECORD, {"input": report()})
    contract = body["data"]["subscriptionContractRecord"]["subscriptionContract"]
    assert contract["price"] == {"amount": "12.50", "currencyCode": "EUR"}
    assert contract["contact"]["id"] and contract["contact"]["email"] is None
    refused = {tuple(e["path"][-1:]) for e in body["errors"]}
    assert refused == {("email",), ("kind",), ("activeSubscriptionCount",), ("isMember",)}
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


# ---------------------------------------------------------------- reading


async def test_the_recurring_tab_pages_newest_first_and_filters_by_status(api, database):
    for n in range(5):
        status = "CANCELED" if n % 2 else "ACTIVE"
        started = f"2026-01-0{n + 1}T00:00:00Z"
        contract = await record_ok(api, f"SUB-{n}", startedAt=started, status=status)
    contact_id = contract["contact"]["id"]

    first = (await api.data(RECURRING_TAB, {"id": contact_id, "first": 2}))["contact"]
    assert first["activeSubscriptionCount"] == 3 and first["isMember"] is False
    tab = first["subscriptionContracts"]
    assert tab["totalCount"] == 5
    assert [e["node"]["externalId"] for e in tab["edges"]] == ["SUB-4", "SUB-3"]
    assert [n["externalId"] for n in tab["nodes"]] == ["SUB-4", "SUB-3"]
    assert tab["pageInfo"]["hasNextPage"] is True and tab["pageInfo"]["hasPreviousPage"] is False
    seen = [n["externalId"] for n in tab["nodes"]]
    after = tab["pageInfo"]["endCursor"]
    while after:
        page = (await api.data(RECURRING_TAB, {"id": contact_id, "first": 2, "after": after}))[
            "contact"
        ]["subscriptionContracts"]
        assert page["pageInfo"]["hasPreviousPage"] is True
        seen += [n["externalId"] for n in page["nodes"]]
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert seen == ["SUB-4", "SUB-3", "SUB-2", "SUB-1", "SUB-0"]

    ended = (await api.data(RECURRING_TAB, {"id": contact_id, "status": ["CANCELED", "EXPIRED"]}))[
        "contact"
    ]["subscriptionContracts"]
    assert [n["externalId"] for n in ended["nodes"]] == ["SUB-3", "SUB-1"]
    assert ended["totalCount"] == 2
    every = (await api.data(RECURRING_TAB, {"id": contact_id, "status": []}))["contact"]
    assert every["subscriptionContracts"]["totalCount"] == 5


async def test_bad_paging_arguments_are_client_errors(api, database):
    contact_id = (await record_ok(api))["contact"]["id"]
    for variables in ({"first": 0}, {"first": 251}, {"after": "garbage"}):
        body = await api.gql(RECURRING_TAB, {"id": contact_id, **variables})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables


async def test_a_contract_by_id_and_through_node(api, as_role, database):
    contract = await record_ok(api)
    query = """
    query($id: ID!) {
      subscriptionContract(id: $id) { id title contact { email } }
      node(id: $id) { id ... on SubscriptionContract { externalId } }
    }
    """
    data = await api.data(query, {"id": contract["id"]})
    assert data["subscriptionContract"] == {
        "id": contract["id"],
        "title": "Coffee club",
        "contact": {"email": "Sam@example.com"},
    }
    assert data["node"] == {"id": contract["id"], "externalId": "SUB-1"}
    for missing in (encode_id("SubscriptionContract", ObjectId()), contract["contact"]["id"], "x"):
        data = await api.data(query, {"id": missing})
        assert data["subscriptionContract"] is None
    # Another shop's key does not find it.
    assert (await as_role("OTHER").data(query, {"id": contract["id"]}))[
        "subscriptionContract"
    ] is None


PAGE = """
query($n: Int!) {
  contacts(first: $n) {
    nodes {
      email activeSubscriptionCount isMember
      subscriptionContracts(first: 3) { totalCount nodes { title price { amount } } }
    }
  }
}
"""


async def test_a_page_of_contacts_with_their_recurring_tab_costs_the_same_for_5_and_50(
    api, database, commands
):
    for n in range(60):
        await record_ok(api, f"SUB-{n}", email=f"p{n:02d}@example.com")
        if n % 3 == 0:
            await record_ok(api, f"SUB-{n}-b", email=f"p{n:02d}@example.com", title="Tea")
    await api.data("{ __typename }")
    measured = {}
    for n in (5, 50):
        commands.reset()
        data = await api.data(PAGE, {"n": n})
        measured[n] = list(commands.names)
        nodes = data["contacts"]["nodes"]
        assert len(nodes) == n
        assert all(c["subscriptionContracts"]["totalCount"] in (1, 2) for c in nodes)
        assert all(
            len(c["subscriptionContracts"]["nodes"]) == c["activeSubscriptionCount"] for c in nodes
        )
    commands.reset()
    await api.data("{ __typename }")
    baseline = commands.count
    print(f"contacts+contracts page: {len(measured[5])} commands (5), {len(measured[50])} (50)")
    assert measured[5] == measured[50]
    assert len(measured[50]) - baseline <= 4
    assert commands.on("subscription_contracts") == []  # the baseline read none


# ---------------------------------------------------------------- filters, segments, export


async def _mixed_shop(api: Api) -> None:
    await record_ok(api, "M-1", email="member@example.com", kind="MEMBERSHIP")
    await record_ok(api, "M-2", email="paused@example.com", kind="MEMBERSHIP", status="PAUSED")
    await record_ok(api, "S-1", email="sub@example.com")
    await record_ok(api, "S-2", email="late@example.com", status="PAST_DUE")
    await record_ok(api, "X-1", email="gone@example.com", status="CANCELED")
    await api.data(
        'mutation { contactCreate(input: {email: "lead@example.com"}) { contact { id } } }'
    )


async def emails(api: Api, filter: dict[str, Any]) -> list[str]:
    data = await api.data(CONTACTS, {"filter": filter})
    return sorted(n["email"] for n in data["contacts"]["nodes"])


async def test_filters_by_active_subscription_and_membership(api, database):
    await _mixed_shop(api)
    subscribers = [
        "late@example.com",
        "member@example.com",
        "paused@example.com",
        "sub@example.com",
    ]
    assert await emails(api, {"hasActiveSubscription": True}) == subscribers
    assert await emails(api, {"hasActiveSubscription": False}) == [
        "gone@example.com",
        "lead@example.com",
    ]
    assert await emails(api, {"isMember": True}) == ["member@example.com", "paused@example.com"]
    assert len(await emails(api, {"isMember": False})) == 4
    assert await emails(api, {"isMember": True, "kind": "LEAD"}) == []


async def test_built_in_subscribers_and_members_segments(api, database):
    await _mixed_shop(api)
    data = await api.data("{ segments { id name key filter builtIn contactCount } }")
    built_in = {s["key"]: s for s in data["segments"] if s["builtIn"]}
    assert built_in["SUBSCRIBERS"] == {
        "id": encode_id("Segment", "000000000000000000000003"),
        "name": "Subscribers",
        "key": "SUBSCRIBERS",
        "filter": {"hasActiveSubscription": True},
        "builtIn": True,
        "contactCount": 4,
    }
    assert built_in["MEMBERS"]["contactCount"] == 2
    assert built_in["MEMBERS"]["filter"] == {"isMember": True}
    assert await emails(api, {"segment": "MEMBERS"}) == ["member@example.com", "paused@example.com"]
    assert await emails(api, {"segment": built_in["SUBSCRIBERS"]["id"]}) == await emails(
        api, {"hasActiveSubscription": True}
    )
    refused = await api.data(
        "mutation($id: ID!) { segmentDelete(id: $id) { userErrors { code } } }",
        {"id": built_in["MEMBERS"]["id"]},
    )
    assert refused["segmentDelete"]["userErrors"] == [{"code": "NOT_ALLOWED"}]


async def test_a_saved_segment_keeps_the_new_filters(api, database):
    await _mixed_shop(api)
    created = await api.data(
        """mutation($input: SegmentInput!) {
          segmentCreate(input: $input) { segment { id filter contactCount } userErrors { code } }
        }""",
        {
            "input": {
                "name": "Lapsed",
                "filter": {"hasActiveSubscription": False, "kind": "CUSTOMER"},
            }
        },
    )
    segment = created["segmentCreate"]["segment"]
    assert segment["filter"] == {"kind": "CUSTOMER", "hasActiveSubscription": False}
    assert segment["contactCount"] == 1
    assert await emails(api, {"segment": segment["id"]}) == ["gone@example.com"]


async def test_the_csv_export_has_the_two_columns(http, api, keys, database):
    await _mixed_shop(api)
    response = await http.get(
        "/exports/contacts.csv",
        params={"sortKey": "EMAIL"},
        headers={"Authorization": f"Bearer {keys['READER']}"},
    )
    assert response.status_code == 200
    lines = response.text.splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["Active Subscriptions", "Member"]
    rows = {line.split(",")[header.index("Email")]: line.split(",")[-2:] for line in lines[1:]}
    assert rows == {
        "gone@example.com": ["0", "no"],
        "late@example.com": ["1", "no"],
        "lead@example.com": ["0", "no"],
        "member@example.com": ["1", "yes"],
        "paused@example.com": ["1", "yes"],
        "sub@example.com": ["1", "no"],
    }
    filtered = await http.get(
        "/exports/contacts.csv",
        params={"filter": '{"isMember": true}'},
        headers={"Authorization": f"Bearer {keys['READER']}"},
    )
    assert len(filtered.text.splitlines()) == 3


# ---------------------------------------------------------------- cancel


async def test_cancel_asks_the_shop_once_and_a_second_ask_is_the_same_request(api, database):
    contract = await record_ok(api)

    first = (await api.data(CANCEL, {"id": contract["id"], "reason": " Moving abroad "}))[
        "subscriptionContractCancel"
    ]
    assert first["userErrors"] == []
    assert first["subscriptionContract"]["status"] == "ACTIVE"  # the shop has not canceled yet
    asked_at = first["subscriptionContract"]["cancelRequestedAt"]
    assert asked_at is not None
    doc = await contact_of(database)
    entries = [e for e in doc["activity"] if e["kind"] == "SUBSCRIPTION_CANCEL_REQUESTED"]
    assert [(e["text"], e["author"]) for e in entries] == [
        ("Coffee club: Moving abroad", "Admin Person")
    ]
    events = await database.events.find({"type": "SUBSCRIPTION_CANCEL_REQUESTED"}).to_list()
    assert len(events) == 1
    assert events[0]["data"]["id"] == contract["id"]
    assert events[0]["data"]["externalId"] == "SUB-1"
    assert events[0]["data"]["contactId"] == contract["contact"]["id"]
    assert events[0]["data"]["reason"] == "Moving abroad"
    assert events[0]["contactId"] == decode_id(contract["contact"]["id"], "Contact")
    before = await snapshot(database)

    second = (await api.data(CANCEL, {"id": contract["id"], "reason": "again"}))[
        "subscriptionContractCancel"
    ]
    assert second["userErrors"] == []
    assert second["subscriptionContract"]["cancelRequestedAt"] == asked_at
    assert await snapshot(database) == before

    # The shop acts and reports it: the request stays on record.
    canceled = await record_ok(api, status="CANCELED")
    assert canceled["cancelRequestedAt"] == asked_at and canceled["endedAt"] is not None


async def test_cancel_asked_twice_at_once_is_one_request(api, database):
    contract = await record_ok(api)
    answers = await asyncio.gather(*[api.data(CANCEL, {"id": contract["id"]}) for _ in range(5)])
    assert all(a["subscriptionContractCancel"]["userErrors"] == [] for a in answers)
    assert await database.events.count_documents({"type": "SUBSCRIPTION_CANCEL_REQUESTED"}) == 1
    doc = await contact_of(database)
    assert kinds(doc).count("SUBSCRIPTION_CANCEL_REQUESTED") == 1


async def test_cancel_refuses_an_ended_contract_an_unknown_id_and_a_long_reason(api, database):
    ended = await record_ok(api, status="EXPIRED")
    live = await record_ok(api, "SUB-2")
    before = await snapshot(database)
    cases = [
        (ended["id"], None, ["id"], "NOT_ALLOWED"),
        (encode_id("SubscriptionContract", ObjectId()), None, ["id"], "NOT_FOUND"),
        (live["contact"]["id"], None, ["id"], "NOT_FOUND"),  # another type's id
        ("garbage", None, ["id"], "NOT_FOUND"),
        (live["id"], "r" * 1001, ["reason"], "TOO_LONG"),
        (live["id"], "a\x00", ["reason"], "INVALID"),
    ]
    for contract_id, reason, field, code in cases:
        answer = (await api.data(CANCEL, {"id": contract_id, "reason": reason}))[
            "subscriptionContractCancel"
        ]
        assert answer["subscriptionContract"] is None
        assert [(e["field"], e["code"]) for e in answer["userErrors"]] == [(field, code)], code
    assert await snapshot(database) == before


# ---------------------------------------------------------------- merge, delete, erase, export

MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) {
    contact { id activeSubscriptionCount isMember subscriptionContracts { totalCount } }
    userErrors { code }
  }
}
"""


async def test_merge_moves_contracts_and_recounts(api, database):
    target = (await record_ok(api, "T-1", email="t@example.com", status="CANCELED"))["contact"]
    source = (await record_ok(api, "S-1", email="s@example.com", kind="MEMBERSHIP"))["contact"]
    await record_ok(api, "S-2", email="s@example.com", status="PAUSED")

    merged = (await api.data(MERGE, {"target": target["id"], "sources": [source["id"]]}))[
        "contactsMerge"
    ]["contact"]

    assert merged["activeSubscriptionCount"] == 2 and merged["isMember"] is True
    assert merged["subscriptionContracts"]["totalCount"] == 3
    target_id = decode_id(target["id"], "Contact")
    assert await database.subscription_contracts.count_documents({"contactId": target_id}) == 3
    # Later reports of the moved contracts land on the survivor.
    update = await record_ok(
        api, "S-1", email="s@example.com", kind="MEMBERSHIP", status="CANCELED"
    )
    assert update["contact"]["id"] == target["id"]
    assert update["contact"]["isMember"] is False


async def test_a_deleted_contacts_contracts_stay_unlinked_until_reported_again(api, database):
    contract = await record_ok(api)
    await api.data(
        "mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { deletedIds } }",
        {"ids": [contract["contact"]["id"]]},
    )
    stored = await database.subscription_contracts.find_one({})
    assert stored["contactId"] is None
    assert (
        await api.data(
            "query($id: ID!) { subscriptionContract(id: $id) { contact { id } } }",
            {"id": contract["id"]},
        )
    )["subscriptionContract"] == {"contact": None}

    again = await record_ok(api, status="PAUSED")
    assert (
        again["contact"]["kind"] == "CUSTOMER" and again["contact"]["activeSubscriptionCount"] == 1
    )
    assert again["contact"]["id"] != contract["contact"]["id"]


async def test_erasure_anonymizes_contracts_and_the_export_includes_them(api, database):
    contract = await record_ok(api)
    contact_id = contract["contact"]["id"]
    export = await api.data("query($id: ID!) { contactDataExport(id: $id) }", {"id": contact_id})
    exported = export["contactDataExport"]["subscriptionContracts"]
    assert [(c["externalId"], c["email"], c["price"]) for c in exported] == [
        ("SUB-1", "Sam@example.com", "12.50")
    ]

    erased = await api.data(
        "mutation($id: ID!) { contactErase(id: $id) { userErrors { code } } }", {"id": contact_id}
    )
    assert erased["contactErase"]["userErrors"] == []
    stored = await database.subscription_contracts.find_one({})
    assert stored["contactId"] is None and stored["firstName"] is None
    assert stored["email"].endswith("@erased.invalid") and "sam" not in stored["emailKey"]
    assert stored["title"] == "Coffee club" and str(stored["price"]) == "12.50"


async def test_recording_a_contract_is_one_transaction_of_a_few_commands(api, database, commands):
    await record_ok(api, "W-0", email="warm@example.com")  # the shop gets its currency
    commands.reset()
    await api.data("{ __typename }")
    auth = list(commands.calls)
    sent = {}
    for label, external_id, status in (
        ("new contact", "N-1", "ACTIVE"),
        ("known contact", "N-2", "ACTIVE"),
        ("change", "N-2", "PAUSED"),
        ("replay", "N-2", "PAUSED"),
    ):
        commands.reset()
        await record_ok(api, external_id, email="new@example.com", status=status)
        assert commands.calls[: len(auth)] == auth
        sent[label] = commands.calls[len(auth) :]
        # Everything up to the commit is one transaction.
        docs = [doc for _, _, doc in list(commands.sent)[len(auth) :]]
        until_commit = docs[: sent[label].index(("commitTransaction", 1)) + 1]
        assert len({(str(d["lsid"]["id"]), d.get("txnNumber")) for d in until_commit}) == 1
        assert until_commit[0].get("startTransaction") is True
    print(f"commands per recorded contract (auth {len(auth)} not included): {sent}")
    commit = ("commitTransaction", 1)
    answer = ("find", "contacts")  # read after the commit only when the answer selects it
    announced = [("insert", "events"), ("find", "webhook_endpoints")]
    assert sent["new contact"] == [
        ("find", "subscription_contracts"),
        ("find", "contacts"),
        ("insert", "subscription_contracts"),
        ("insert", "contacts"),
        ("insert", "contact_counts"),
        *announced,  # CONTACT_CREATED
        commit,
    ]
    # Counted afresh from the contact's contracts inside the transaction; CONTACT_UPDATED
    # announces the new count.
    assert sent["known contact"] == [
        ("find", "subscription_contracts"),
        ("find", "contacts"),
        ("insert", "subscription_contracts"),
        ("find", "subscription_contracts"),
        ("update", "contacts"),
        *announced,
        commit,
        answer,
    ]
    # Paused is still not ended: the count stands, so no event.
    assert sent["change"] == [
        ("find", "subscription_contracts"),
        ("find", "contacts"),
        ("update", "subscription_contracts"),
        ("find", "subscription_contracts"),
        ("update", "contacts"),
        commit,
        answer,
    ]
    assert sent["replay"] == [("find", "subscription_contracts"), commit, answer]


async def test_a_failure_inside_the_transaction_leaves_nothing(api, database, monkeypatch):
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process stops here")

    # After the contract and the contact are written, before the commit.
    monkeypatch.setattr(subscription_record, "contacts_created", broken)
    body = await api.gql(RECORD, {"input": report()})
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert await database.subscription_contracts.count_documents({}) == 0
    assert await database.contacts.count_documents({}) == 0
    assert await database.events.count_documents({}) == 0

    # The shop sends it again and it is recorded once.
    monkeypatch.undo()
    assert (await record_ok(api))["contact"]["activeSubscriptionCount"] == 1
    assert await database.subscription_contracts.count_documents({}) == 1
