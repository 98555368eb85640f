"""Every command on a shop-scoped collection names its shop: on a sharded cluster it goes to one shard.

A representative run of the whole API is recorded with PyMongo command
monitoring; each command on a collection sharded by `shopId` (docs/sharding.md)
must carry `shopId` in its filter, the first `$match` of its pipeline, or
each document it inserts. The few commands that cannot are listed below by
name, with the reason, and docs/sharding.md lists the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import CommandCounter

# Collections sharded on {shopId: 1, ...}.
SHOP_SCOPED = (
    "contacts",
    "orders",
    "labels",
    "segments",
    "messages",
    "activity_archive",
    "rate_limits",
    "webhook_receipts",
    "api_keys",
    "subscription_contracts",
    "contact_counts",
)
# Commands that follow a cursor, or are not reads or writes of documents.
NOT_QUERIES = {"getMore", "killCursors", "createIndexes", "listIndexes", "drop", "dropIndexes"}


@dataclass(frozen=True)
class Exception_:
    name: str
    reason: str
    matches: Callable[[str, str, dict], bool]


EXCEPTIONS = (
    Exception_(
        "api key by hash",
        "a request names its key, not its shop: the key's hash finds the shop",
        lambda command, collection, doc: (
            collection == "api_keys"
            and command == "find"
            and set(doc["filter"]) <= {"hash", "revokedAt"}
        ),
    ),
)


def filter_of(command: str, doc: dict) -> list[dict]:
    """The filters a command selects documents by (or the documents it inserts)."""
    if command == "find":
        return [doc.get("filter", {})]
    if command == "findAndModify":
        return [doc.get("query", {})]
    if command == "update":
        return [u["q"] for u in doc["updates"]]
    if command == "delete":
        return [d["q"] for d in doc["deletes"]]
    if command == "insert":
        return list(doc["documents"])
    if command in ("count", "distinct"):
        return [doc.get("query", {})]
    if command == "aggregate":
        first = doc["pipeline"][0] if doc["pipeline"] else {}
        return [first.get("$match", {})]
    raise AssertionError(f"a command this test does not know: {command}")


def names_shop(selector: dict) -> bool:
    if "shopId" in selector:
        return True
    # A conjunction is as targeted as its most targeted part; a disjunction
    # only if every branch is (mongos then sends each branch to its shard).
    if any(names_shop(part) for part in selector.get("$and", [])):
        return True
    return bool(selector.get("$or")) and all(names_shop(part) for part in selector["$or"])


class Recorder:
    """Drains the session's command listener after each step, keeping every command sent."""

    def __init__(self, commands: CommandCounter) -> None:
        self.commands = commands
        self.seen: list[tuple[str, str, dict]] = []
        commands.reset()

    def take(self) -> None:
        sent = list(self.commands.sent)
        assert len(sent) < (self.commands.sent.maxlen or 0), "a step sent too many to record"
        self.seen.extend((n, str(t), d) for n, t, d in sent)
        self.commands.reset()


CONTACT = "mutation($i: ContactInput!) { contactCreate(input: $i) { contact { id } userErrors { code } } }"


async def run_the_api(api: Any, as_role: Any, step: Callable[[], None]) -> None:  # noqa: PLR0915
    async def do(query: str, variables: dict | None = None, role: str | None = None) -> dict:
        who = as_role(role) if role else api
        result = await who.data(query, variables)
        step()
        return result

    ids = []
    for email, first, phone in [
        ("ann@example.com", "Ann", "+43 1 5550001"),
        ("a.n.n+shop@example.com", "Ann", "+43 1 5550001"),
        ("bob@example.com", "Bob", None),
    ]:
        made = await do(
            CONTACT,
            {
                "i": {
                    "email": email,
                    "firstName": first,
                    "lastName": "Lee",
                    "phone": phone,
                    "labels": ["VIP"],
                }
            },
        )
        ids.append(made["contactCreate"]["contact"]["id"])
    ann, twin, bob = ids
    await do(
        'mutation($id: ID!) { contactUpdate(id: $id, input: {company: "Tea Ltd"}) '
        "{ userErrors { code } } }",
        {"id": bob},
    )
    for sort in ("NAME", "EMAIL", "TOTAL_SPENT", "CREATED_AT"):
        await do(
            f'{{ contacts(first: 5, sortKey: {sort}, query: "le", filter: {{kind: LEAD, '
            'labelsAny: ["VIP"]}) { totalCount nodes { id orders(first: 2) { nodes { id } } } '
            "pageInfo { endCursor } } }"
        )
    await do(
        '{ contacts(first: 2, reverse: true, filter: {labelsNone: ["X"], totalSpentMin: "0"}) '
        "{ nodes { id activity(first: 5) { nodes { kind } } } } }"
    )
    order = await do(
        "mutation($i: OrderInput!) { orderRecord(input: $i) { order { id } userErrors { code } } }",
        {
            "i": {
                "externalId": "A-1",
                "email": "ann@example.com",
                "currencyCode": "EUR",
                "lineItems": [{"title": "Tea", "quantity": 2, "unitPrice": "4.50"}],
            }
        },
        role="INGEST",
    )
    order_id = order["orderRecord"]["order"]["id"]
    await do("query($id: ID!) { order(id: $id) { id contact { id } } }", {"id": order_id})
    await do(
        "mutation($id: ID!) { orderCancel(id: $id) { userErrors { code } } }", {"id": order_id}
    )
    await do(
        'mutation($id: ID!) { draftOrderCreate(contactId: $id, input: {currencyCode: "EUR", '
        'lineItems: [{title: "Mug", quantity: 1, unitPrice: "9"}]}) { userErrors { code } } }',
        {"id": bob},
    )
    contract = await do(
        "mutation($i: SubscriptionContractInput!) { subscriptionContractRecord(input: $i) "
        "{ subscriptionContract { id } userErrors { code } } }",
        {
            "i": {
                "externalId": "S-1",
                "email": "ann@example.com",
                "kind": "MEMBERSHIP",
                "status": "ACTIVE",
                "title": "Club",
                "price": "5",
                "currencyCode": "EUR",
                "interval": "MONTH",
                "startedAt": "2026-01-01T00:00:00Z",
            }
        },
        role="INGEST",
    )
    contract_id = contract["subscriptionContractRecord"]["subscriptionContract"]["id"]
    await do(
        "query($id: ID!, $c: ID!) { subscriptionContract(id: $id) { id } contact(id: $c) "
        "{ subscriptionContracts { totalCount nodes { id } } } }",
        {"id": contract_id, "c": ann},
    )
    await do(
        "mutation($id: ID!) { subscriptionContractCancel(id: $id) { userErrors { code } } }",
        {"id": contract_id},
    )
    await do("{ contacts(filter: {isMember: true, hasActiveSubscription: true}) { nodes { id } } }")
    note = await do(
        'mutation($id: ID!) { noteAdd(contactId: $id, text: "Called") { note { id } } }',
        {"id": ann},
    )
    note_id = note["noteAdd"]["note"]["id"]
    await do(
        'mutation($id: ID!, $n: ID!) { noteUpdate(contactId: $id, noteId: $n, text: "Called back") '
        "{ userErrors { code } } }",
        {"id": ann, "n": note_id},
    )
    await do(
        "mutation($id: ID!, $n: ID!) { noteDelete(contactId: $id, noteId: $n) "
        "{ userErrors { code } } }",
        {"id": ann, "n": note_id},
    )
    await do(
        'mutation($ids: [ID!]!) { labelsAdd(contactIds: $ids, labels: ["Wholesale"]) '
        "{ userErrors { code } } }",
        {"ids": [ann, bob]},
    )
    await do(
        'mutation($ids: [ID!]!) { labelsRemove(contactIds: $ids, labels: ["VIP"]) '
        "{ userErrors { code } } }",
        {"ids": [bob]},
    )
    await do('mutation { contactsLabel(selection: {query: "ann"}, add: ["Gold"]) { modified } }')
    await do(
        'mutation { labelRename(name: "Wholesale", newName: "Trade") { userErrors { code } } }'
    )
    await do('mutation { labelDelete(name: "Gold") { userErrors { code } } }')
    await do("{ labels { name contactCount } }")
    await do(
        "mutation($id: ID!) { consentUpdate(contactId: $id, state: SUBSCRIBED) "
        "{ userErrors { code } } }",
        {"id": ann},
    )
    await do(
        'mutation($id: ID!) { messageSend(contactId: $id, subject: "Hi", body: "News", '
        "marketing: true) { message { id } userErrors { code } } }",
        {"id": ann},
    )
    await do(
        'mutation { contactFormSubmit(input: {email: "new@example.com", message: "Hello"}) '
        "{ ok } }",
        role="PUBLIC",
    )
    segment = await do(
        'mutation { segmentCreate(input: {name: "Leads", filter: {kind: LEAD}}) '
        "{ segment { id } userErrors { code } } }"
    )
    segment_id = segment["segmentCreate"]["segment"]["id"]
    await do(
        'mutation($id: ID!) { segmentUpdate(id: $id, input: {name: "All leads", '
        'filter: {kind: LEAD}, query: "a"}) { userErrors { code } } }',
        {"id": segment_id},
    )
    await do("{ segments { id contactCount } }")
    exported = await api.client.get(
        "/exports/contacts.csv", params={"segment": segment_id}, headers=api.headers()
    )
    assert exported.status_code == 200
    step()
    await do(
        "mutation($id: ID!) { segmentDelete(id: $id) { userErrors { code } } }", {"id": segment_id}
    )
    await do(
        "{ contactStats { contacts leads customers subscribed topLabels { name contactCount } } }"
    )
    await do("{ duplicateCandidates { reason contacts { id } } }")
    await do(
        "query($t: ID!, $s: [ID!]!) { contactsMergePreview(targetId: $t, sourceIds: $s) { id } }",
        {"t": ann, "s": [twin]},
    )
    await do(
        "mutation($t: ID!, $s: [ID!]!) { contactsMerge(targetId: $t, sourceIds: $s) "
        "{ userErrors { code } } }",
        {"t": ann, "s": [twin]},
    )
    await do("query($id: ID!) { contactDataExport(id: $id) }", {"id": ann})
    await do("query($id: ID!) { node(id: $id) { id } contact(id: $id) { id } }", {"id": bob})
    await do('{ contactByEmail(email: "bob@example.com") { id } }')
    await do("mutation($id: ID!) { contactErase(id: $id) { userErrors { code } } }", {"id": ann})
    await do(
        "mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { userErrors { code } } }",
        {"ids": [bob]},
    )


async def test_every_command_on_a_shop_scoped_collection_names_its_shop(api, as_role, commands):
    recorder = Recorder(commands)

    await run_the_api(api, as_role, recorder.take)

    scoped = [(n, c, d) for n, c, d in recorder.seen if c in SHOP_SCOPED and n not in NOT_QUERIES]
    used = {c for _, c, _ in scoped}
    assert {
        "contacts",
        "orders",
        "labels",
        "segments",
        "messages",
        "rate_limits",
        "subscription_contracts",
    } <= used
    unscoped = []
    excepted: set[str] = set()
    for command, collection, doc in scoped:
        known = [e.name for e in EXCEPTIONS if e.matches(command, collection, doc)]
        if known:
            excepted.update(known)
        elif not all(names_shop(selector) for selector in filter_of(command, doc)):
            unscoped.append((command, collection, filter_of(command, doc)))
    assert unscoped == [], "\n".join(map(repr, unscoped))
    # Each listed exception happened in the run: the list stays true.
    assert excepted == {e.name for e in EXCEPTIONS}


def test_the_exceptions_are_listed_in_the_sharding_document():
    text = (Path(__file__).parents[1] / "docs" / "sharding.md").read_text()
    for exception in EXCEPTIONS:
        assert f"**{exception.name}**" in text, exception.name
