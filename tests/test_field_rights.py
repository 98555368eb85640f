"""What each role may read: the rules against the schema, and every field x every role over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
from bson import ObjectId
from conftest import Api
from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationType,
    get_named_type,
    get_operation_ast,
    is_composite_type,
    is_non_null_type,
    parse,
)
from graphql.pyutils import Undefined

from graph.field_rights import FieldGuardExecutor, RightsExecutor, check_document, rights_for
from graph.permissions import NOTES, OUTSIDE_READS, allowed_roles, may_read
from graph.schema import build_schema
from graph.types.node import encode_id
from resolvers.shops import Role

SCHEMA = build_schema()._schema
ROLES = [role.value for role in Role]

# The person whose data an outside key must never see.
EMAIL = "vera.victim@example.com"
FIRST, LAST = "Veronika", "Victimova"
PHONE_DIGITS = "30901820"
COMPANY = "Victimova Textil"
LABEL = "Allergy-Watch"
NOTE_TEXT = "Prefers calls after six, never at home"
FORM_TEXT = "Please call me about my hospital bill"
STREET = "Geheimweg 7"
SUBJECT = "Your invoice 4711"
SECRETS = [EMAIL, FIRST, LAST, PHONE_DIGITS, COMPANY, LABEL, NOTE_TEXT, FORM_TEXT, STREET, SUBJECT]

ADDRESS = {"name": f"{FIRST} {LAST}", "line1": STREET, "postalCode": "10115", "city": "Berlin"}
ORDER = {
    "externalId": "V-1",
    "email": EMAIL,
    "currencyCode": "EUR",
    "firstName": FIRST,
    "lastName": LAST,
    "phone": f"+49 {PHONE_DIGITS}",
    "lineItems": [{"title": "Linen shirt", "quantity": 1, "unitPrice": "49.00"}],
    "shippingAddress": {**ADDRESS, "countryCode": "DE"},
}
CONTRACT = {
    "externalId": "VS-1",
    "email": EMAIL,
    "kind": "MEMBERSHIP",
    "status": "ACTIVE",
    "title": "Reading circle",
    "price": "9.00",
    "currencyCode": "EUR",
    "interval": "MONTH",
    "startedAt": "2026-01-01T00:00:00.000Z",
}


def unknown(type_name: str) -> str:
    return encode_id(type_name, ObjectId())


@pytest.fixture
async def shop(api: Api, as_role: Any) -> dict[str, str]:
    """A contact with everything a page shows, a near twin, an order and a message.

    And an endpoint for the shop's events, so their deliveries are there to read too.
    """
    endpoint = (
        await api.data(
            'mutation { webhookEndpointCreate(url: "https://hooks.example.com/contacts", '
            "events: [CONTACT_CREATED, CONTACT_UPDATED]) { webhookEndpoint { id } } }"
        )
    )["webhookEndpointCreate"]["webhookEndpoint"]["id"]
    created = await api.data(
        """mutation($input: ContactInput!) { contactCreate(input: $input) { contact { id } } }""",
        {
            "input": {
                "email": EMAIL,
                "firstName": FIRST,
                "lastName": LAST,
                "phone": f"+49 {PHONE_DIGITS}",
                "company": COMPANY,
                "labels": [LABEL],
                "shippingAddress": ADDRESS,
                "billingAddress": ADDRESS,
            }
        },
    )
    victim = created["contactCreate"]["contact"]["id"]
    twin = (
        await api.data(
            """mutation($input: ContactInput!) { contactCreate(input: $input) { contact { id } } }""",
            {"input": {"email": "v.victimova@example.org", "phone": f"+49 {PHONE_DIGITS}"}},
        )
    )["contactCreate"]["contact"]["id"]
    await api.data(
        "mutation($id: ID!, $t: String!) { noteAdd(contactId: $id, text: $t) { note { id } } }",
        {"id": victim, "t": NOTE_TEXT},
    )
    form = await as_role("PUBLIC").data(
        "mutation($input: ContactFormInput!) { contactFormSubmit(input: $input) { ok } }",
        {"input": {"email": EMAIL, "message": FORM_TEXT, "acceptsMarketing": True}},
    )
    assert form["contactFormSubmit"]["ok"] is True
    order = (
        await api.data(
            "mutation($input: OrderInput!) { orderRecord(input: $input) { order { id } } }",
            {"input": ORDER},
        )
    )["orderRecord"]["order"]["id"]
    message = (
        await api.data(
            "mutation($id: ID!) { messageSend(contactId: $id, subject: "
            f'"{SUBJECT}", body: "Dear Veronika") {{ message {{ id }} }} }}',
            {"id": victim},
        )
    )["messageSend"]["message"]["id"]
    contract = (
        await api.data(
            "mutation($input: SubscriptionContractInput!) { subscriptionContractRecord("
            "input: $input) { subscriptionContract { id } } }",
            {"input": CONTRACT},
        )
    )["subscriptionContractRecord"]["subscriptionContract"]["id"]
    return {
        "endpoint": endpoint,
        "victim": victim,
        "twin": twin,
        "order": order,
        "message": message,
        "contract": contract,
    }


def order_literal() -> str:
    lines = ORDER["lineItems"][0]
    address = ", ".join(f'{k}: "{v}"' for k, v in ORDER["shippingAddress"].items())
    return (
        f'{{externalId: "{ORDER["externalId"]}", email: "{EMAIL}", currencyCode: "EUR", '
        f'firstName: "{FIRST}", lastName: "{LAST}", phone: "{ORDER["phone"]}", '
        f'lineItems: [{{title: "{lines["title"]}", quantity: 1, unitPrice: "49.00"}}], '
        f"shippingAddress: {{{address}}}}}"
    )


def contract_literal() -> str:
    quoted = ("externalId", "email", "title", "price", "currencyCode", "startedAt")
    parts = [f'{k}: "{v}"' if k in quoted else f"{k}: {v}" for k, v in CONTRACT.items()]
    return "{" + ", ".join(parts) + "}"


def root_calls(ids: dict[str, str]) -> dict[str, str]:
    """Every query and mutation, called so that it answers and changes nothing.

    Reads find the shop's data; writes name unknown ids or taken values
    (answered with userErrors), or repeat what is already stored. Queries
    first, then the mutation whose userErrors list is never empty.
    """
    contact, nobody = ids["victim"], unknown("Contact")
    return {
        "contact": f'contact(id: "{contact}")',
        "contactByEmail": f'contactByEmail(email: "{EMAIL}")',
        "contacts": "contacts(first: 2)",
        "node": f'node(id: "{contact}")',
        "segments": "segments",
        "order": f'order(id: "{ids["order"]}")',
        "contactStats": "contactStats",
        "duplicateCandidates": "duplicateCandidates(first: 1)",
        "contactsMergePreview": (
            f'contactsMergePreview(targetId: "{contact}", sourceIds: ["{ids["twin"]}"])'
        ),
        "contactDataExport": f'contactDataExport(id: "{contact}")',
        "labels": "labels",
        "message": f'message(id: "{ids["message"]}")',
        "contactUpdate": f'contactUpdate(id: "{nobody}", input: {{firstName: "X"}})',
        "contactCreate": f'contactCreate(input: {{email: "{EMAIL}"}})',
        "contactUnlock": f'contactUnlock(id: "{nobody}")',
        "contactsDelete": f'contactsDelete(ids: ["{nobody}"])',
        "segmentCreate": 'segmentCreate(input: {name: "", filter: {}})',
        "segmentUpdate": (
            f'segmentUpdate(id: "{unknown("Segment")}", input: {{name: "S", filter: {{}}}})'
        ),
        "segmentDelete": f'segmentDelete(id: "{unknown("Segment")}")',
        "orderRecord": f"orderRecord(input: {order_literal()})",
        "orderCancel": f'orderCancel(id: "{unknown("Order")}")',
        "draftOrderCreate": (
            f'draftOrderCreate(contactId: "{nobody}", input: {{lineItems: '
            '[{title: "T", quantity: 1, unitPrice: "1"}]})'
        ),
        "contactFormSubmit": f'contactFormSubmit(input: {{email: "{EMAIL}", message: ""}})',
        "noteAdd": f'noteAdd(contactId: "{nobody}", text: "x")',
        "noteUpdate": (
            f'noteUpdate(contactId: "{nobody}", noteId: "{unknown("ActivityEntry")}", text: "x")'
        ),
        "noteDelete": f'noteDelete(contactId: "{nobody}", noteId: "{unknown("ActivityEntry")}")',
        "contactsMerge": f'contactsMerge(targetId: "{nobody}", sourceIds: ["{unknown("Contact")}"])',
        "contactErase": f'contactErase(id: "{nobody}")',
        "labelsAdd": f'labelsAdd(contactIds: ["{nobody}"], labels: ["X"])',
        "labelsRemove": f'labelsRemove(contactIds: ["{nobody}"], labels: ["X"])',
        "contactsLabel": f'contactsLabel(selection: {{ids: ["{nobody}"]}}, add: ["X"])',
        "labelRename": 'labelRename(name: "no such label", newName: "other")',
        "labelDelete": 'labelDelete(name: "no such label")',
        "consentUpdate": f'consentUpdate(contactId: "{nobody}", state: SUBSCRIBED)',
        "messageSend": f'messageSend(contactId: "{nobody}", subject: "x", body: "x")',
        "subscriptionContract": f'subscriptionContract(id: "{ids["contract"]}")',
        # A replay of the stored report: answered with the contract, nothing written.
        "subscriptionContractRecord": f"subscriptionContractRecord(input: {contract_literal()})",
        "subscriptionContractCancel": (
            f'subscriptionContractCancel(id: "{unknown("SubscriptionContract")}")'
        ),
        "webhookEndpoints": "webhookEndpoints",
        "webhookDeliveries": f'webhookDeliveries(endpointId: "{ids["endpoint"]}")',
        # Refused before anything is stored: not an https:// address.
        "webhookEndpointCreate": (
            'webhookEndpointCreate(url: "ftp://hooks.example.com", events: [CONTACT_CREATED])'
        ),
        "webhookEndpointUpdate": (
            f'webhookEndpointUpdate(id: "{unknown("WebhookEndpoint")}", enabled: false)'
        ),
        "webhookEndpointRotateSecret": (
            f'webhookEndpointRotateSecret(id: "{unknown("WebhookEndpoint")}")'
        ),
        "webhookEndpointDelete": f'webhookEndpointDelete(id: "{unknown("WebhookEndpoint")}")',
    }


OPERATIONS = {
    OperationType.QUERY: SCHEMA.query_type,
    OperationType.MUTATION: SCHEMA.mutation_type,
}


def field_call(name: str, field: GraphQLField) -> str:
    # Nested fields take no required arguments; pages are kept small.
    assert not [
        a
        for a, arg in field.args.items()
        if is_non_null_type(arg.type) and arg.default_value is Undefined
    ], name
    return f"{name}(first: 2)" if "first" in field.args else name


def reachable(role: Role) -> dict[str, tuple[OperationType, list[str]]]:
    """Each object type the role can reach, with the shortest way there from a root it may call."""
    calls = root_calls(
        dict.fromkeys(("victim", "twin", "order", "message", "contract", "endpoint"), "x")
    )
    ways: dict[str, tuple[OperationType, list[str]]] = {}
    queue: deque[GraphQLObjectType] = deque()
    for name in calls:
        operation = next(op for op, root in OPERATIONS.items() if root and name in root.fields)
        returned = get_named_type(OPERATIONS[operation].fields[name].type)  # type: ignore[union-attr]
        if role in allowed_roles(operation, name) and isinstance(returned, GraphQLObjectType):
            if returned.name not in ways:
                ways[returned.name] = (operation, [name])
                queue.append(returned)
    while queue:
        current = queue.popleft()
        operation, path = ways[current.name]
        for name, field in current.fields.items():
            returned = get_named_type(field.type)
            if may_read(role, current.name, name) and isinstance(returned, GraphQLObjectType):
                if returned.name not in ways:
                    ways[returned.name] = (operation, [*path, field_call(name, field)])
                    queue.append(returned)
    return ways


def selection_of(type_: GraphQLObjectType) -> str:
    """__typename and every field of the type; objects answer with their __typename."""
    parts = ["__typename"]
    for name, field in type_.fields.items():
        call = field_call(name, field)
        composite = is_composite_type(get_named_type(field.type))
        parts.append(f"{call} {{ __typename }}" if composite else call)
    return " ".join(parts)


def query_for(type_: GraphQLObjectType, operation: OperationType, steps: list[str]) -> str:
    body = f"{{ {selection_of(type_)} }}"
    for step in reversed(steps):
        body = f"{{ {step} {body} }}"
    return f"{operation.value} {body}"


def located(data: Any, keys: list[str]) -> list[tuple[list[str | int], dict]]:
    """The objects at the end of a path of response keys, each with its response path."""
    level: list[tuple[list[str | int], Any]] = [([], data)]
    for key in keys:
        below: list[tuple[list[str | int], Any]] = []
        for path, value in level:
            inner = value[key]
            if isinstance(inner, list):
                below += [([*path, key, i], item) for i, item in enumerate(inner) if item]
            elif inner is not None:
                below.append(([*path, key], inner))
        level = below
    return level


def response_keys(path: list[str]) -> list[str]:
    return [step.split("(")[0] for step in path]


# INGEST's one call (a repeated, valid order report) answers without
# userErrors, so no UserError appears to check; ADMIN and STAFF check them.
MAY_BE_ABSENT = {(Role.INGEST, "UserError")}


@pytest.mark.parametrize("role", ROLES)
async def test_every_field_a_role_reaches_is_read_or_refused_by_the_rules(shop, as_role, role):
    caller, role_ = as_role(role), Role(role)
    calls = root_calls(shop)
    ways = reachable(role_)
    assert ways, role
    for type_name, (operation, path) in ways.items():
        type_ = SCHEMA.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType)
        query = query_for(type_, operation, [calls[path[0]], *path[1:]])
        body = await caller.gql(query)
        found = located(body["data"], response_keys(path))
        assert found or (role_, type_name) in MAY_BE_ABSENT, (type_name, query, body)
        expected: set[tuple[str | int, ...]] = set()
        for at, value in found:
            assert value["__typename"] == type_name
            for name in type_.fields:
                assert name in value, (type_name, name)  # its siblings stand
                if not may_read(role_, type_name, name):
                    assert value[name] is None, (type_name, name, value[name])
                    expected.add((*at, name))
        errors = body.get("errors", [])
        assert {e["extensions"]["code"] for e in errors} <= {"FORBIDDEN"}, (query, errors)
        assert {tuple(e["path"]) for e in errors} == expected, (type_name, query, errors)
        for error in errors:
            assert error["message"] == (
                f"{role_.a_key} may not read {type_name}.{error['path'][-1]}."
            )


@pytest.mark.parametrize("role", ROLES)
async def test_every_root_field_is_called_or_refused_by_role(shop, as_role, database, role):
    caller, role_ = as_role(role), Role(role)
    before = [
        await database.contacts.find({}, sort=[("_id", 1)]).to_list(),
        await database.orders.find({}, sort=[("_id", 1)]).to_list(),
    ]
    for name, call in root_calls(shop).items():
        operation = next(op for op, root in OPERATIONS.items() if root and name in root.fields)
        returned = get_named_type(OPERATIONS[operation].fields[name].type)  # type: ignore[union-attr]
        selection = " { __typename }" if is_composite_type(returned) else ""
        body = await caller.gql(f"{operation.value} {{ {call}{selection} }}")
        if role_ in allowed_roles(operation, name):
            assert "errors" not in body, (name, body)
            assert body["data"][name] is not None, name
        else:
            assert body["data"] is None, name
            [error] = body["errors"]
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert error["message"] == f"{role_.a_key} may not use {name}."
    after = [
        await database.contacts.find({}, sort=[("_id", 1)]).to_list(),
        await database.orders.find({}, sort=[("_id", 1)]).to_list(),
    ]
    assert after == before


def test_the_root_calls_cover_every_query_and_mutation():
    roots = set(SCHEMA.query_type.fields) | set(SCHEMA.mutation_type.fields)  # type: ignore[union-attr]
    ids = dict.fromkeys(("victim", "twin", "order", "message", "contract", "endpoint"), "x")
    assert set(root_calls(ids)) == roots


# ---------------------------------------------------------------- the rules against the schema


def test_the_rules_name_only_what_the_schema_has():
    for type_name, fields in OUTSIDE_READS.items():
        type_ = SCHEMA.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType), type_name
        assert fields is None or fields <= set(type_.fields), (type_name, fields)
    for type_name, field in NOTES:
        type_ = SCHEMA.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType) and field in type_.fields


def test_every_field_a_role_may_be_refused_is_nullable():
    # A non-null refused field would take its parent down with it.
    roots = {op: SCHEMA.get_root_type(op) for op in OperationType}
    for role in Role:
        seen: set[str] = set()
        queue: deque[GraphQLObjectType | GraphQLInterfaceType] = deque()
        for operation, root in roots.items():
            assert root is not None
            for name, field in root.fields.items():
                returned = get_named_type(field.type)
                if role in allowed_roles(operation, name) and isinstance(
                    returned, GraphQLObjectType | GraphQLInterfaceType
                ):
                    queue.append(returned)
        refused_non_null = []
        while queue:
            current = queue.popleft()
            if current.name in seen:
                continue
            seen.add(current.name)
            owners = (
                [current]
                if isinstance(current, GraphQLObjectType)
                else list(SCHEMA.get_possible_types(current))
            )
            for owner in owners:
                queue.append(owner)
                for name, field in owner.fields.items():
                    if not may_read(role, owner.name, name):
                        if isinstance(field.type, GraphQLNonNull):
                            refused_non_null.append(f"{owner.name}.{name}")
                        continue
                    returned = get_named_type(field.type)
                    if isinstance(returned, GraphQLObjectType | GraphQLInterfaceType):
                        queue.append(returned)
        assert refused_non_null == [], role


def test_outside_keys_read_a_contacts_id_and_an_orders_business_fields_only():
    contact = SCHEMA.get_type("Contact")
    order = SCHEMA.get_type("Order")
    assert isinstance(contact, GraphQLObjectType) and isinstance(order, GraphQLObjectType)
    for role in (Role.INGEST, Role.PUBLIC):
        assert [f for f in contact.fields if may_read(role, "Contact", f)] == ["id"]
        personal = {
            "email",
            "firstName",
            "lastName",
            "phone",
            "shippingAddress",
            "billingAddress",
            "acceptsMarketing",
            "hasAccount",
        }
        assert {f for f in order.fields if not may_read(role, "Order", f)} == personal
        assert may_read(role, "Order", "contact") and may_read(role, "Contact", "__typename")
        assert not may_read(role, "Segment", "name")  # a type not named is closed
    assert [
        (t, f)
        for t, type_ in SCHEMA.type_map.items()
        if isinstance(type_, GraphQLObjectType) and not t.startswith("__")
        for f in type_.fields
        if not may_read(Role.READER, t, f)
    ] == [("Contact", "notes")]


# ---------------------------------------------------------------- the check itself


def bomb(levels: int, last: str) -> str:
    """The fragment bomb: each level spreads the next three times."""
    fragments = [
        f"fragment P{i} on Query {{ ...P{i + 1} ...P{i + 1} ...P{i + 1} }}" for i in range(levels)
    ]
    return "query { ...P0 } " + " ".join(fragments) + f" fragment P{levels} on Query {{ {last} }}"


def test_the_check_enters_each_fragment_once():
    # 3^18 spreads if each were followed; one visit per fragment instead.
    document = parse(bomb(18, "contacts { nodes { id notes { id } } }"))
    operation = get_operation_ast(document)
    assert operation is not None
    started = time.perf_counter()
    rights = check_document(SCHEMA, document, operation, Role.READER)
    assert time.perf_counter() - started < 0.5
    assert rights.refused == {("Contact", "notes")} and rights.denied_roots == ()
    outside = check_document(SCHEMA, document, operation, Role.PUBLIC)
    assert outside.denied_roots == ("contacts",)


def test_a_field_on_an_interface_is_refused_on_the_types_that_refuse_it():
    document = parse('{ node(id: "x") { id ... on Contact { email notes { id } } } }')
    operation = get_operation_ast(document)
    assert operation is not None
    assert check_document(SCHEMA, document, operation, Role.READER).refused == {
        ("Contact", "notes")
    }
    assert check_document(SCHEMA, document, operation, Role.STAFF).refused == frozenset()


def test_answers_are_kept_per_document_and_role():
    document = parse("{ contacts { nodes { id notes { id } } } }")
    operation = get_operation_ast(document)
    assert operation is not None
    first = rights_for(SCHEMA, document, operation, Role.READER)
    assert rights_for(SCHEMA, document, operation, Role.READER) is first
    assert rights_for(SCHEMA, document, operation, Role.ADMIN).refused == frozenset()


def test_only_an_operation_with_refused_fields_runs_on_the_field_guard():
    def executor(query: str, role: Role) -> object:
        context = SimpleNamespace(key=SimpleNamespace(role=role))
        return RightsExecutor.build(SCHEMA, parse(query), None, context)

    plain = executor("{ contacts { nodes { id notes { id } } } }", Role.STAFF)
    assert type(plain) is RightsExecutor  # nothing is looked at per field
    guarded = executor("{ contacts { nodes { id notes { id } } } }", Role.READER)
    assert isinstance(guarded, FieldGuardExecutor)
    assert guarded.refused == {("Contact", "notes")}
    [denied] = executor("{ contacts { nodes { id } } }", Role.INGEST)  # type: ignore[misc]
    assert denied.extensions == {"code": "FORBIDDEN"}
    assert denied.message == "An INGEST key may not use contacts."


# ---------------------------------------------------------------- black box


INGEST_READS_ALL = f"""
mutation {{
  orderRecord(input: {{externalId: "V-2", email: "{EMAIL.upper()}", currencyCode: "EUR",
      lineItems: [{{title: "Gift card", quantity: 1, unitPrice: "10.00"}}]}}) {{
    order {{
      id externalId status total {{ amount }} email firstName phone
      shippingAddress {{ line1 }} contact {{ id firstName }}
    }}
    contact {{
      id email firstName lastName displayName phone company labels kind
      shippingAddress {{ line1 }} consent {{ history {{ evidence }} }}
      orders {{ nodes {{ externalId email lineItems {{ title }} }} }}
      activity {{ nodes {{ kind text }} }}
      notes {{ text }}
    }}
    userErrors {{ code }}
  }}
}}
"""


async def test_an_ingest_key_sees_only_the_id_of_the_contact_its_order_lands_on(shop, http, keys):
    response = await http.post(
        "/graphql",
        json={"query": INGEST_READS_ALL},
        headers={"Authorization": f"Bearer {keys['INGEST']}"},
    )
    assert response.status_code == 200
    for secret in SECRETS:
        assert secret.lower() not in response.text.lower(), secret
    body = response.json()
    recorded = body["data"]["orderRecord"]
    contact_fields = [
        "email", "firstName", "lastName", "displayName", "phone", "company", "labels", "kind",
        "shippingAddress", "consent", "orders", "activity", "notes",
    ]  # fmt: skip
    assert recorded["contact"] == {"id": shop["victim"], **dict.fromkeys(contact_fields)}
    assert recorded["userErrors"] == []
    order = recorded["order"]
    assert order["externalId"] == "V-2" and order["status"] == "OPEN"
    assert order["total"] == {"amount": "10.00"}
    assert order["contact"] == {"id": shop["victim"], "firstName": None}
    assert [order["email"], order["firstName"], order["phone"], order["shippingAddress"]] == [
        None
    ] * 4
    expected = {("orderRecord", "contact", f) for f in contact_fields} | {
        ("orderRecord", "order", f) for f in ("email", "firstName", "phone", "shippingAddress")
    }
    expected.add(("orderRecord", "order", "contact", "firstName"))
    assert {tuple(e["path"]) for e in body["errors"]} == expected
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


async def test_a_replayed_order_does_not_show_whom_it_belongs_to(shop, as_role):
    # The same externalId with someone else's address: the stored order answers.
    replay = {**ORDER, "email": "attacker@example.net", "firstName": "Mallory"}
    body = await as_role("INGEST").gql(
        """mutation($input: OrderInput!) { orderRecord(input: $input) {
             order { id status email firstName lastName phone billingAddress { line1 } }
             contact { id } userErrors { code } } }""",
        {"input": replay},
    )
    order = body["data"]["orderRecord"]["order"]
    assert order["id"] == shop["order"] and order["status"] == "OPEN"
    assert {k: order[k] for k in ("email", "firstName", "lastName", "phone", "billingAddress")} == (
        dict.fromkeys(("email", "firstName", "lastName", "phone", "billingAddress"))
    )
    assert body["data"]["orderRecord"]["contact"] == {"id": shop["victim"]}
    assert len(body["errors"]) == 5


PAGE = """
query($id: ID!) {
  contact(id: $id) {
    id email displayName labels
    activity(first: 50) { totalCount nodes { kind text } }
    notes { id text }
  }
}
"""


async def test_a_reader_keeps_the_contact_page_without_its_notes(shop, as_role):
    body = await as_role("READER").gql(PAGE, {"id": shop["victim"]})
    contact = body["data"]["contact"]
    assert contact["email"] == EMAIL and contact["labels"] == [LABEL]
    assert contact["notes"] is None
    kinds = [entry["kind"] for entry in contact["activity"]["nodes"]]
    assert "NOTE" not in kinds and "FORM_SUBMITTED" in kinds
    assert NOTE_TEXT not in str(body)
    [error] = body["errors"]
    assert error["path"] == ["contact", "notes"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert error["message"] == "A READER key may not read Contact.notes."
    staff = await as_role("STAFF").data(PAGE, {"id": shop["victim"]})
    assert [n["text"] for n in staff["contact"]["notes"]] == [NOTE_TEXT]


async def test_each_refused_item_of_a_list_has_its_own_error_under_its_alias(shop, as_role):
    body = await as_role("READER").gql(
        """
        query { people: contacts(first: 5, sortKey: EMAIL) { nodes { ...Card } } }
        fragment Card on Contact { email private: notes { text } }
        """
    )
    assert body["data"] is not None, body
    nodes = body["data"]["people"]["nodes"]
    assert [n["email"] for n in nodes] == ["v.victimova@example.org", EMAIL]
    assert [n["private"] for n in nodes] == [None, None]
    assert sorted(tuple(e["path"]) for e in body["errors"]) == [
        ("people", "nodes", 0, "private"),
        ("people", "nodes", 1, "private"),
    ]


async def test_a_refused_field_behind_an_interface_is_refused_on_its_type(shop, as_role):
    body = await as_role("READER").gql(
        "query($id: ID!) { node(id: $id) { id ... on Contact { email notes { text } } } }",
        {"id": shop["victim"]},
    )
    assert body["data"]["node"] == {"id": shop["victim"], "email": EMAIL, "notes": None}
    assert [e["path"] for e in body["errors"]] == [["node", "notes"]]


async def test_a_root_field_beyond_the_role_still_stops_everything(shop, as_role, database):
    before = await database.contacts.count_documents({})
    body = await as_role("READER").gql(
        """mutation($id: ID!) { contactsDelete(ids: [$id]) { deletedIds } }""",
        {"id": shop["victim"]},
    )
    assert body["data"] is None
    assert body["errors"][0]["message"] == "A READER key may not use contactsDelete."
    assert await database.contacts.count_documents({}) == before


# ---------------------------------------------------------------- subscriptions


async def test_a_subscription_event_follows_the_same_rights(settings, database, api, keys):
    from test_subscriptions import Server, authorized

    from graph.embedded import free_port
    from graph.http.app import create_app
    from graph.settings import Settings

    gid = (
        await api.data(
            'mutation { contactCreate(input: {email: "sub@example.com"}) { contact { id } } }'
        )
    )["contactCreate"]["contact"]["id"]
    await api.data(
        'mutation($id: ID!) { noteAdd(contactId: $id, text: "watch me") { note { id } } }',
        {"id": gid},
    )
    watch = """subscription($id: ID!) { contactActivity(contactId: $id) {
        kind order { externalId contact { id email notes { text } } } } }"""
    app = create_app(
        Settings(
            mongodb_uri=settings.mongodb_uri,
            database=settings.database,
            key_cache_seconds=0,
            migrate_on_start=True,
        )
    )
    async with Server(app, free_port()) as server:
        connection, socket = await authorized(server, keys["READER"])
        async with connection:
            await socket.send(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": watch, "variables": {"id": gid}},
                }
            )
            await asyncio.sleep(0.3)
            recorded = await api.data(
                """mutation { orderRecord(input: {externalId: "S-1", email: "sub@example.com",
                  currencyCode: "EUR", lineItems: [{title: "Tea", quantity: 1, unitPrice: "4.50"}]})
                  { userErrors { code } } }"""
            )
            assert recorded["orderRecord"]["userErrors"] == []
            events = [(await socket.receive())["payload"] for _ in range(2)]
    [placed] = [e for e in events if e["data"]["contactActivity"]["kind"] == "ORDER_PLACED"]
    assert placed["data"]["contactActivity"]["order"] == {
        "externalId": "S-1",
        "contact": {"id": gid, "email": "sub@example.com", "notes": None},
    }
    [error] = placed["errors"]
    assert error["path"] == ["contactActivity", "order", "contact", "notes"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert "watch me" not in str(events)
