"""Outbound events, black-box: the real `contactgraph serve` delivers to a real HTTP receiver here.

Every delivery the receiver gets is checked with the `standardwebhooks`
package (the reference implementation). The servers run with short retry,
give-up, disable and rotation windows (settings), and with plain http:// to
localhost allowed, except the one that shows the SSRF rule as shipped.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from serve_process import Serve, cli_env, run_cli
from webhook_receiver import Receiver, wait_until

from graph.embedded import SERVER_FILE, free_port

DATABASE = f"contactgraph_events_{os.getpid()}"
GIVE_UP_SECONDS = 6
DISABLE_AFTER_SECONDS = 9
OVERLAP_SECONDS = 3
FAST = {
    "CONTACTGRAPH_WEBHOOK_POLL_SECONDS": "0.1",
    "CONTACTGRAPH_WEBHOOK_RETRY_FIRST_SECONDS": "0.2",
    "CONTACTGRAPH_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    # Long enough that a loaded machine never times out an answer that came (a repeat).
    "CONTACTGRAPH_WEBHOOK_TIMEOUT_SECONDS": "10",
    "CONTACTGRAPH_WEBHOOK_GIVE_UP_SECONDS": str(GIVE_UP_SECONDS),
    "CONTACTGRAPH_WEBHOOK_DISABLE_AFTER_SECONDS": str(DISABLE_AFTER_SECONDS),
    "CONTACTGRAPH_WEBHOOK_SECRET_OVERLAP_SECONDS": str(OVERLAP_SECONDS),
    "CONTACTGRAPH_METRICS_TOKEN": "metrics-token-for-the-events-tests",
    # The tests read the delivery log many times a second.
    "CONTACTGRAPH_THROTTLE_BUCKET": "100000000",
    "CONTACTGRAPH_COST_LIMIT": "100000",
}
INSECURE = {"CONTACTGRAPH_ALLOW_INSECURE_WEBHOOKS": "1"}
ALL_TYPES = [
    "CONTACT_CREATED",
    "CONTACT_UPDATED",
    "CONTACT_DELETED",
    "CONTACT_MERGED",
    "CONTACT_ERASED",
    "CONSENT_CHANGED",
    "LABELS_CHANGED",
    "SUBSCRIPTION_CANCEL_REQUESTED",
]

CREATE_ENDPOINT = """
mutation($url: String!, $events: [EventType!]!) {
  webhookEndpointCreate(url: $url, events: $events) {
    webhookEndpoint { id url events enabled }
    secret
    userErrors { field message code }
  }
}
"""
DELETE_ENDPOINT = "mutation($id: ID!) { webhookEndpointDelete(id: $id) { userErrors { code } } }"
ROTATE = """
mutation($id: ID!) { webhookEndpointRotateSecret(id: $id) { secret userErrors { code } } }
"""
ENDPOINTS = "{ webhookEndpoints { id enabled lastError failingSince lastDeliveryAt } }"
DELIVERIES = """
query($id: ID!) {
  webhookDeliveries(endpointId: $id, first: 100) {
    id event status attempts lastStatusCode createdAt deliveredAt lastError
  }
}
"""
CONTACT_CREATE = """
mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } userErrors { code } } }
"""
CONTACT_UPDATE = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) { contact { id } userErrors { field code } }
}
"""
UNLOCK = "mutation($id: ID!) { contactUnlock(id: $id) { contact { id } userErrors { code } } }"
CONSENT = """
mutation($id: ID!, $state: MarketingState!, $level: OptInLevel) {
  consentUpdate(contactId: $id, state: $state, optInLevel: $level) { userErrors { field code } }
}
"""
LABELS_ADD = """
mutation($ids: [ID!]!, $labels: [String!]!) {
  labelsAdd(contactIds: $ids, labels: $labels) { userErrors { field code } }
}
"""
LABELS_REMOVE = """
mutation($ids: [ID!]!, $labels: [String!]!) {
  labelsRemove(contactIds: $ids, labels: $labels) { userErrors { field code } }
}
"""
LABEL_RENAME = """
mutation($name: String!, $newName: String!) {
  labelRename(name: $name, newName: $newName) { userErrors { code } }
}
"""
MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) { contact { id } userErrors { code } }
}
"""
DELETE = "mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { deletedIds userErrors { code } } }"
ERASE = "mutation($id: ID!) { contactErase(id: $id) { deletedIds userErrors { code } } }"
FORM = """
mutation($email: String!) {
  contactFormSubmit(input: {email: $email, message: "Hello", acceptsMarketing: true}) { ok }
}
"""
ORDER = """
mutation($input: OrderInput!) { orderRecord(input: $input) { order { id } userErrors { field code } } }
"""
CONTRACT = """
mutation($input: SubscriptionContractInput!) {
  subscriptionContractRecord(input: $input) { subscriptionContract { id } userErrors { field code } }
}
"""
CANCEL = """
mutation($id: ID!) { subscriptionContractCancel(id: $id, reason: "Moving abroad") { userErrors { code } } }
"""


class Server:
    """One `contactgraph serve` on its own data dir (or joining another's database)."""

    def __init__(self, root: Path, env: dict[str, str], uri: str | None = None) -> None:
        self.root = root
        extra = dict(env)
        if uri is not None:
            extra.update(MONGODB_URI=uri, CONTACTGRAPH_DATABASE=DATABASE)
        elif os.environ.get("MONGODB_URI"):
            extra.update(
                MONGODB_URI=os.environ["MONGODB_URI"],
                CONTACTGRAPH_DATABASE=DATABASE + f"_{free_port()}",
                CONTACTGRAPH_MIGRATE_ON_START="1",
            )
        else:
            extra.update(CONTACTGRAPH_DATABASE=DATABASE)
        self.env = cli_env(**extra)
        self.serve = Serve(["--data-dir", str(root)], self.env, free_port())
        self.serve.wait_ready()
        keys = self.serve.admin_keys()
        self.key = keys[0] if keys else ""

    @property
    def url(self) -> str:
        return self.serve.url

    @property
    def uri(self) -> str:
        if os.environ.get("MONGODB_URI"):
            return os.environ["MONGODB_URI"]
        return json.loads((self.root / SERVER_FILE).read_text())["uri"]

    def call(
        self, query: str, variables: dict[str, Any] | None = None, key: str | None = None
    ) -> dict:
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        body = self.call(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def stop(self) -> None:
        if self.serve.process.poll() is None:
            self.serve.stop()
        if "CONTACTGRAPH_MIGRATE_ON_START" in self.env:
            client: MongoClient = MongoClient(os.environ["MONGODB_URI"])
            client.drop_database(self.env["CONTACTGRAPH_DATABASE"])
            client.close()

    # ------------------------------------------------------------ conveniences

    def endpoint(self, url: str, events: list[str]) -> tuple[str, str]:
        made = self.data(CREATE_ENDPOINT, {"url": url, "events": events})["webhookEndpointCreate"]
        assert made["userErrors"] == [], made
        return made["webhookEndpoint"]["id"], made["secret"]

    def deliveries(self, endpoint_id: str) -> list[dict]:
        return self.data(DELIVERIES, {"id": endpoint_id})["webhookDeliveries"]

    def endpoint_state(self, endpoint_id: str) -> dict:
        [state] = [e for e in self.data(ENDPOINTS)["webhookEndpoints"] if e["id"] == endpoint_id]
        return state

    def contact(self, email: str) -> str:
        made = self.data(CONTACT_CREATE, {"email": email})["contactCreate"]
        assert made["userErrors"] == []
        return made["contact"]["id"]

    def rename(self, contact_id: str, first_name: str) -> None:
        done = self.data(CONTACT_UPDATE, {"id": contact_id, "input": {"firstName": first_name}})
        assert done["contactUpdate"]["userErrors"] == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("events"), {**FAST, **INSECURE})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def receiver(server: Server) -> Iterator[Receiver]:
    """A receiver for one test; endpoints the test made are deleted after it."""
    running = Receiver().start()
    try:
        yield running
    finally:
        for endpoint in server.data(ENDPOINTS)["webhookEndpoints"]:
            server.data(DELETE_ENDPOINT, {"id": endpoint["id"]})
        running.stop()


def by_type(received: list) -> Counter[str]:
    return Counter(r.payload["type"] for r in received)


def test_every_event_type_is_delivered_once_with_a_valid_signature(
    server: Server, receiver: Receiver
) -> None:
    endpoint_id, secret = server.endpoint(receiver.url, ALL_TYPES)
    assert secret.startswith("whsec_")

    ann = server.contact("ann@example.com")  # CONTACT_CREATED
    server.rename(ann, "Ann")  # CONTACT_UPDATED
    server.data(CONSENT, {"id": ann, "state": "SUBSCRIBED"})  # CONSENT_CHANGED
    server.data(LABELS_ADD, {"ids": [ann], "labels": ["VIP"]})  # LABELS_CHANGED
    bob = server.contact("bob@example.com")
    server.data(MERGE, {"target": ann, "sources": [bob]})  # CONTACT_MERGED
    cid = server.contact("cid@example.com")
    server.data(DELETE, {"ids": [cid]})  # CONTACT_DELETED
    dee = server.contact("dee@example.com")
    server.data(ERASE, {"id": dee})  # CONTACT_ERASED
    contract = server.data(
        CONTRACT,
        {
            "input": {
                "externalId": "SUB-1",
                "email": "ann@example.com",
                "status": "ACTIVE",
                "title": "Coffee club",
                "price": "12.00",
                "currencyCode": "EUR",
                "interval": "MONTH",
                "startedAt": "2026-01-01T00:00:00Z",
            }
        },
    )["subscriptionContractRecord"]
    assert contract["userErrors"] == []
    server.data(
        CANCEL, {"id": contract["subscriptionContract"]["id"]}
    )  # SUBSCRIPTION_CANCEL_REQUESTED
    server.data(FORM, {"email": "eve@example.com"})  # CONTACT_CREATED + CONSENT_CHANGED (PENDING)
    order = {
        "externalId": "A-1",
        "email": "fay@example.com",
        "currencyCode": "EUR",
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "9.00"}],
        "acceptsMarketing": True,
    }
    assert server.data(ORDER, {"input": order})["orderRecord"]["userErrors"] == []

    def all_delivered() -> bool:
        log = server.deliveries(endpoint_id)
        return bool(log) and all(d["status"] == "DELIVERED" for d in log)

    wait_until(all_delivered, what="every delivery DELIVERED")
    time.sleep(0.5)  # nothing more comes
    log = server.deliveries(endpoint_id)
    received = receiver.all()
    assert all(r.status == 200 for r in received)
    assert sorted(r.webhook_id for r in received) == sorted(d["id"] for d in log)
    assert all(n == 1 for n in Counter(r.webhook_id for r in received).values())
    assert all(r.verifies_with(secret) for r in received)
    assert set(by_type(received)) == set(ALL_TYPES)
    assert all(d["attempts"] == 1 and d["lastStatusCode"] == 200 for d in log)

    events = [r.payload for r in received]
    assert all(set(e) == {"type", "timestamp", "data"} for e in events)
    [updated] = [
        e["data"]
        for e in events
        if e["type"] == "CONTACT_UPDATED" and e["data"]["id"] == ann and "firstName" in e["data"]
    ]
    assert updated == {"id": ann, "firstName": "Ann", "detailsLocked": True}
    consent = [e["data"] for e in events if e["type"] == "CONSENT_CHANGED"]
    assert {(c["state"], c["previousState"], c["source"]) for c in consent} == {
        ("SUBSCRIBED", "NOT_SUBSCRIBED", "ADMIN"),
        ("PENDING", "NOT_SUBSCRIBED", "CONTACT_FORM"),
        ("SUBSCRIBED", "NOT_SUBSCRIBED", "CHECKOUT"),
    }
    [labels] = [e["data"] for e in events if e["type"] == "LABELS_CHANGED"]
    assert labels == {"id": ann, "labels": ["VIP"], "added": ["VIP"], "removed": []}
    [erased] = [e["data"] for e in events if e["type"] == "CONTACT_ERASED"]
    assert erased == {"id": dee}


def test_a_receiver_that_was_down_gets_the_event_later_with_the_same_webhook_id(
    server: Server, receiver: Receiver
) -> None:
    endpoint_id, secret = server.endpoint(receiver.url, ["CONTACT_UPDATED"])
    ann = server.contact("down@example.com")
    receiver.stop()
    server.rename(ann, "Ann")

    def retried() -> dict | None:
        [delivery] = server.deliveries(endpoint_id)
        return delivery if delivery["attempts"] >= 2 else None

    pending = wait_until(retried, what="two failed attempts")
    assert pending["status"] == "PENDING"
    assert pending["lastStatusCode"] is None  # nothing answered
    assert server.endpoint_state(endpoint_id)["failingSince"] is not None
    assert pending_metric(server) == 1
    receiver.start()

    [got] = wait_until(receiver.accepted, what="the delivery after the receiver came back")
    assert got.webhook_id == pending["id"]
    assert got.verifies_with(secret)
    [delivery] = wait_until(
        lambda: [d for d in server.deliveries(endpoint_id) if d["status"] == "DELIVERED"]
    )
    assert delivery["id"] == pending["id"] and delivery["attempts"] >= 3
    state = server.endpoint_state(endpoint_id)
    assert state["failingSince"] is None and state["lastError"] is None
    assert state["lastDeliveryAt"] is not None
    assert pending_metric(server) == 0


def pending_metric(server: Server) -> float:
    """contactgraph_webhook_pending_deliveries as /metrics reports it."""
    response = httpx.get(
        f"{server.url}/metrics",
        headers={"Authorization": "Bearer metrics-token-for-the-events-tests"},
        timeout=10,
    )
    assert response.status_code == 200
    [line] = [
        line
        for line in response.text.splitlines()
        if line.startswith("contactgraph_webhook_pending_deliveries ")
    ]
    return float(line.split()[-1])


def test_events_of_one_contact_arrive_in_the_order_they_happened(
    server: Server, receiver: Receiver
) -> None:
    server.endpoint(receiver.url, ["CONTACT_UPDATED"])
    ann = server.contact("order@example.com")
    receiver.answers = [503, 503]  # the first event needs a third attempt
    names = [f"Name{i}" for i in range(6)]
    for name in names:
        server.rename(ann, name)

    wait_until(lambda: len(receiver.accepted()) >= len(names), 60, what="all six accepted")
    accepted = [r.payload["data"]["firstName"] for r in receiver.accepted()]
    assert accepted == names
    # Nothing later went out while the first one was failing.
    assert [r.payload["data"]["firstName"] for r in receiver.all()[:3]] == [names[0]] * 3


def test_a_refused_write_emits_nothing_and_neither_does_a_write_that_changed_nothing(
    server: Server, receiver: Receiver
) -> None:
    server.endpoint(receiver.url, ["CONTACT_UPDATED", "CONSENT_CHANGED", "LABELS_CHANGED"])
    ann = server.contact("quiet@example.com")
    other = server.contact("other@example.com")
    server.data(LABELS_ADD, {"ids": [other], "labels": ["Gold"]})
    wait_until(lambda: len(receiver.accepted()) == 1, what="the label of the other contact")

    # Refused: nothing written, so nothing sent.
    bad = server.data(CONTACT_UPDATE, {"id": ann, "input": {"email": "not an address"}})
    assert bad["contactUpdate"]["userErrors"][0]["code"] == "INVALID"
    refused = server.data(CONSENT, {"id": ann, "state": "UNSUBSCRIBED", "level": "SINGLE_OPT_IN"})
    assert refused["consentUpdate"]["userErrors"][0]["code"] == "INVALID"
    unknown = server.data(LABELS_ADD, {"ids": [ann, "nope"], "labels": ["VIP"]})
    assert unknown["labelsAdd"]["userErrors"][0]["code"] == "NOT_FOUND"
    # Accepted but changing nothing.
    server.data(UNLOCK, {"id": ann})  # was never locked
    server.data(CONSENT, {"id": ann, "state": "NOT_SUBSCRIBED"})  # already so
    server.data(LABELS_REMOVE, {"ids": [ann], "labels": ["Gold"]})  # ann never had it
    server.data(LABELS_ADD, {"ids": [other], "labels": ["gold"]})  # other has it already

    server.rename(ann, "Marker")
    wait_until(lambda: len(receiver.accepted()) == 2, what="the marker")
    time.sleep(0.5)
    [_, marker] = receiver.all()
    assert marker.payload["data"] == {"id": ann, "firstName": "Marker", "detailsLocked": True}
    # The same edit again: still locked, same name, no change.
    server.rename(ann, "Marker")
    server.data(UNLOCK, {"id": ann})
    wait_until(lambda: len(receiver.accepted()) == 3, what="the unlock")
    time.sleep(0.5)
    assert receiver.all()[-1].payload["data"] == {"id": ann, "detailsLocked": False}
    assert len(receiver.all()) == 3


def test_a_label_renamed_across_the_shop_reports_each_contact_it_changed(
    server: Server, receiver: Receiver
) -> None:
    ids = [server.contact(f"l{i}@example.com") for i in range(3)]
    server.data(LABELS_ADD, {"ids": ids[:2], "labels": ["Wholesale"]})
    server.endpoint(receiver.url, ["LABELS_CHANGED"])
    assert server.data(LABEL_RENAME, {"name": "Wholesale", "newName": "B2B"})["labelRename"] == {
        "userErrors": []
    }
    wait_until(lambda: len(receiver.accepted()) == 2, what="two contacts relabelled")
    time.sleep(0.5)
    data = sorted((r.payload["data"] for r in receiver.all()), key=lambda d: d["id"])
    assert data == sorted(
        (
            {"id": gid, "labels": ["B2B"], "added": ["B2B"], "removed": ["Wholesale"]}
            for gid in ids[:2]
        ),
        key=lambda d: d["id"],
    )


def test_a_rotated_secret_signs_beside_the_new_one_for_the_window_then_stops(
    server: Server, receiver: Receiver
) -> None:
    endpoint_id, old = server.endpoint(receiver.url, ["CONTACT_UPDATED"])
    ann = server.contact("rotate@example.com")
    server.rename(ann, "One")
    [first] = wait_until(receiver.accepted)
    assert len(first.headers["webhook-signature"].split(" ")) == 1

    rotated = server.data(ROTATE, {"id": endpoint_id})["webhookEndpointRotateSecret"]
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    rotated_at = time.monotonic()
    server.rename(ann, "Two")
    second = wait_until(lambda: receiver.accepted()[1:])[0]
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    assert second.verifies_with(old) and second.verifies_with(new)

    time.sleep(max(0.0, OVERLAP_SECONDS + 0.5 - (time.monotonic() - rotated_at)))
    server.rename(ann, "Three")
    third = wait_until(lambda: receiver.accepted()[2:])[0]
    assert len(third.headers["webhook-signature"].split(" ")) == 1
    assert third.verifies_with(new)
    assert not third.verifies_with(old)


def test_redirects_are_not_followed(server: Server, receiver: Receiver) -> None:
    endpoint_id, _ = server.endpoint(receiver.url, ["CONTACT_UPDATED"])
    receiver.redirect_to = f"http://127.0.0.1:{receiver.port}/elsewhere"
    server.rename(server.contact("redirect@example.com"), "Ann")

    [delivery] = wait_until(
        lambda: [d for d in server.deliveries(endpoint_id) if d["attempts"] >= 2]
    )
    assert delivery["status"] == "PENDING" and delivery["lastStatusCode"] == 307
    assert {r.path for r in receiver.all()} == {"/hooks"}


def test_failing_deliveries_give_up_and_an_endpoint_failing_long_enough_is_disabled(
    server: Server, receiver: Receiver
) -> None:
    endpoint_id, _ = server.endpoint(receiver.url, ["CONTACT_UPDATED"])
    receiver.answers = [500] * 10_000
    ann = server.contact("fail@example.com")
    started = time.monotonic()
    server.rename(ann, "One")

    [failed] = wait_until(
        lambda: [d for d in server.deliveries(endpoint_id) if d["status"] == "FAILED"],
        seconds=GIVE_UP_SECONDS + 10,
        what="the delivery to give up",
    )
    assert time.monotonic() - started >= GIVE_UP_SECONDS - 1
    assert failed["lastStatusCode"] == 500 and failed["attempts"] >= 3
    assert failed["lastError"].startswith("Gave up after")
    state = server.endpoint_state(endpoint_id)
    assert state["enabled"] is True and state["failingSince"] is not None

    time.sleep(max(0.0, DISABLE_AFTER_SECONDS - (time.monotonic() - started)))
    server.rename(ann, "Two")
    disabled = wait_until(
        lambda: (s := server.endpoint_state(endpoint_id))["enabled"] is False and s,
        what="the endpoint disabled",
    )
    assert disabled["lastError"].startswith("Disabled:")
    # A disabled endpoint is sent nothing new.
    sent = len(receiver.all())
    server.rename(ann, "Three")
    time.sleep(1)
    assert len(receiver.all()) <= sent + 1  # at most the attempt that was under way
    assert len(server.deliveries(endpoint_id)) == 2


# ---------------------------------------------------------------- SSRF, as shipped


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the default rule: https only, never to a non-public address."""
    running = Server(tmp_path_factory.mktemp("strict"), FAST)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # plain http, not local
        "https://10.0.0.1/hooks",  # private
        "https://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "https://127.0.0.1:8443/hooks",  # loopback
        "https://[::1]/hooks",
        "https://[fe80::1]/hooks",
        "https://100.64.0.1/hooks",  # shared address space
        "https://0.0.0.0/hooks",
        "https://224.0.0.1/hooks",  # multicast
        "https://[::ffff:10.0.0.1]/hooks",  # IPv4-mapped private
        "http://localhost:8080/hooks",  # localhost needs the insecure setting
    ],
)
def test_a_url_naming_a_non_public_address_is_refused_at_once(
    strict_server: Server, url: str
) -> None:
    made = strict_server.data(CREATE_ENDPOINT, {"url": url, "events": ["CONTACT_UPDATED"]})
    payload = made["webhookEndpointCreate"]
    assert payload["webhookEndpoint"] is None and payload["secret"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["url"], "INVALID")]
    assert strict_server.data(ENDPOINTS)["webhookEndpoints"] == []


def test_a_host_name_resolving_to_loopback_is_refused_at_delivery(strict_server: Server) -> None:
    receiver = Receiver().start()
    try:
        # A name, not an address: it is resolved (to 127.0.0.1) when a delivery goes out.
        endpoint_id, _ = strict_server.endpoint(
            f"https://localhost:{receiver.port}/hooks", ["CONTACT_UPDATED"]
        )
        strict_server.rename(strict_server.contact("ssrf@example.com"), "Ann")
        [failed] = wait_until(
            lambda: [d for d in strict_server.deliveries(endpoint_id) if d["status"] == "FAILED"]
        )
        assert "127.0.0.1" in failed["lastError"] and failed["lastStatusCode"] is None
        assert "public" in strict_server.endpoint_state(endpoint_id)["lastError"]
        time.sleep(0.5)
        assert receiver.all() == []
        strict_server.data(DELETE_ENDPOINT, {"id": endpoint_id})
    finally:
        receiver.stop()


def test_another_name_of_the_machine_is_not_localhost_even_when_insecure_is_allowed(
    server: Server, receiver: Receiver
) -> None:
    name = socket.gethostname()
    try:
        resolved = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if not resolved.startswith("127.") or name in ("localhost",):
        pytest.skip(f"this machine's name {name!r} resolves to {resolved}, not to loopback")
    endpoint_id, _ = server.endpoint(f"https://{name}:{receiver.port}/hooks", ["CONTACT_UPDATED"])
    server.rename(server.contact("alias@example.com"), "Ann")
    [failed] = wait_until(
        lambda: [d for d in server.deliveries(endpoint_id) if d["status"] == "FAILED"]
    )
    assert resolved in failed["lastError"]
    assert receiver.all() == []


# ---------------------------------------------------------------- two instances


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("two")
    first = Server(root / "first", {**FAST, **INSECURE})
    second: Server | None = None
    try:
        second = Server(root / "second", {**FAST, **INSECURE}, uri=first.uri)
        second.key = first.key  # the same shop, found in the shared database
        yield first, second
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_two_instances_on_one_database_deliver_each_event_once(
    two_instances: tuple[Server, Server],
) -> None:
    first, second = two_instances
    receiver = Receiver().start()
    try:
        endpoint_id, secret = first.endpoint(receiver.url, ["CONTACT_UPDATED"])
        ids = [first.contact(f"twin{i}@example.com") for i in range(10)]
        for round_ in range(3):
            for i, gid in enumerate(ids):
                (first if (i + round_) % 2 else second).rename(gid, f"R{round_}")
        wait_until(lambda: len(receiver.accepted()) >= 30, what="thirty deliveries")
        time.sleep(1.5)  # room for a second copy, should one be sent
        received = receiver.all()
        assert len(received) == 30
        assert len({r.webhook_id for r in received}) == 30
        assert all(r.verifies_with(secret) for r in received)
        assert sorted(r.webhook_id for r in received) == sorted(
            d["id"] for d in second.deliveries(endpoint_id)
        )
        # Per contact, the rounds arrive in order even with two senders.
        for gid in ids:
            rounds = [
                r.payload["data"]["firstName"] for r in received if r.payload["data"]["id"] == gid
            ]
            assert rounds == ["R0", "R1", "R2"]
    finally:
        receiver.stop()


def test_a_staff_key_may_not_manage_endpoints(server: Server) -> None:
    done = run_cli(
        [
            "--data-dir",
            str(server.root),
            "keys",
            "create",
            "--shop",
            "demo",
            "--role",
            "STAFF",
            "--name",
            "Jo",
        ],
        server.env,
    )
    assert done.returncode == 0, done.stderr
    staff = done.stdout.split()[-1]
    for query, variables in (
        (ENDPOINTS, {}),
        (CREATE_ENDPOINT, {"url": "https://hooks.example.com/x", "events": ["CONTACT_UPDATED"]}),
    ):
        body = server.call(query, variables, key=staff)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert server.data(ENDPOINTS)["webhookEndpoints"] == []
