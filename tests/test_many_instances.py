"""Two real `contactgraph serve` processes on one database, as behind a load balancer.

The first starts the embedded database and records its address in
`<data dir>/server.json`; the second is given that address as MONGODB_URI
(with the same CONTACTGRAPH_DATABASE), as a second machine would be. Both
run outboxes against one SMTP server of the test. What one instance does,
the other must see: e-mail is delivered once (or, after a crash right after
the mail server accepted a message, once more under the same Message-ID:
the outbox is at least once), live updates cross instances, and the form
rate limit and the throttle bucket are counted in the database, not in a
process.

When the test run has MONGODB_URI, both instances use that MongoDB with a
database of their own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets
from bson import ObjectId
from pymongo import MongoClient
from serve_process import Serve, cli_env, gql, run_cli
from smtp_inbox import Inbox, SmtpServer

from graph.embedded import SERVER_FILE, free_port

DATABASE = f"contactgraph_instances_{os.getpid()}"
FORM_RATE = 4
# 804 points (4 × 201) fit once in a bucket of 1,000; the second needs 6 s of restoring.
THROTTLE_BUCKET = 1_000
REPORT = "{ " + " ".join(f"s{i}: contactStats {{ contacts }}" for i in range(4)) + " }"
REPORT_COST = 804
DELIVERY_SECONDS = 30

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
SUBSCRIBE = """
mutation($id: ID!) { consentUpdate(contactId: $id, state: SUBSCRIBED) { userErrors { code } } }
"""
SEND = """
mutation($id: ID!, $subject: String!) {
  messageSend(contactId: $id, subject: $subject, body: "20% off.", marketing: true) {
    message { id } userErrors { code }
  }
}
"""
NOTE = "mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { note { id } } }"
WATCH = "subscription($id: ID!) { contactActivity(contactId: $id) { kind text } }"
FORM = """
mutation($email: String!) {
  contactFormSubmit(input: {email: $email, message: "Do you ship to Austria?"}) { ok }
}
"""


class SlowInbox(Inbox):
    """An inbox that takes `delay` seconds over each of its next `slow` messages.

    It notes which client connection each message in progress came over, so
    the test can tell which instance is in the middle of a delivery. A
    message counts as received before the delay: the server has it, only its
    reply is late, as when a sender dies before reading the reply.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slow = 0
        self.delay = 0.0
        self.in_progress: dict[int, str] = {}  # the client's port: the Message-ID

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.slow > 0:
            self.slow -= 1
            port = session.peer[1]
            self.in_progress[port] = message_id(envelope.content)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_progress.pop(port, None)
        return reply

    def message_ids(self) -> list[str]:
        return [message_id(e.content) for e in self.received]


def message_id(content: bytes) -> str:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    return str(parsed["Message-ID"])


class Instances:
    """The two instances, the database they share and the test's mail server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.smtp = SmtpServer()
        self.smtp.inbox = SlowInbox()
        self.inbox: SlowInbox = self.smtp.inbox
        self.own_database = bool(os.environ.get("MONGODB_URI"))
        self.first: Serve | None = None
        self.second: Serve | None = None
        self.uri = ""
        self.key = ""

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(
            SMTP_URL=f"smtp://127.0.0.1:{self.smtp.port}",
            CONTACTGRAPH_DATABASE=DATABASE,
            CONTACTGRAPH_FORM_RATE=str(FORM_RATE),
            CONTACTGRAPH_THROTTLE_BUCKET=str(THROTTLE_BUCKET),
            **extra,
        )

    def start(self) -> None:
        self.smtp.start()
        first_env = (
            self.env(MONGODB_URI=os.environ["MONGODB_URI"], CONTACTGRAPH_MIGRATE_ON_START="1")
            if self.own_database
            else self.env()
        )
        self.first = Serve(["--data-dir", str(self.root / "first")], first_env, free_port())
        self.first.wait_ready()
        [self.key] = self.first.admin_keys()
        if self.own_database:
            self.uri = os.environ["MONGODB_URI"]
        else:
            self.uri = json.loads((self.root / "first" / SERVER_FILE).read_text())["uri"]
        self.start_second()

    def start_second(self) -> None:
        self.second = Serve(
            ["--data-dir", str(self.root / "second")], self.env(MONGODB_URI=self.uri), free_port()
        )
        self.second.wait_ready()
        assert self.second.admin_keys() == []  # it found the first one's shop, made none

    def stop(self) -> None:
        for serve in (self.second, self.first):  # the first last: it runs the database
            if serve is not None and serve.process.poll() is None:
                serve.stop()
        self.smtp.stop()
        if self.own_database:
            client: MongoClient = MongoClient(self.uri)
            client.drop_database(DATABASE)
            client.close()

    @property
    def both(self) -> tuple[Serve, Serve]:
        assert self.first is not None and self.second is not None
        return self.first, self.second

    def messages(self) -> Any:
        client: MongoClient = MongoClient(self.uri)
        return client, client[DATABASE]["messages"]

    def new_key(self, role: str, name: str) -> str:
        done = run_cli(
            [
                "--data-dir",
                str(self.root / "first"),
                "keys",
                "create",
                "--shop",
                "demo",
                "--role",
                role,
                "--name",
                name,
            ],
            self.env(MONGODB_URI=self.uri),
        )
        assert done.returncode == 0, done.stderr
        [key] = [word for word in done.stdout.split() if word.startswith("cg_")]
        return key


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instances]:
    running = Instances(tmp_path_factory.mktemp("instances"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def data(url: str, key: str, query: str, variables: dict | None = None) -> dict:
    response = gql(url, key, query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def subscribed_contact(url: str, key: str, address: str) -> str:
    gid = data(url, key, CREATE, {"email": address})["contactCreate"]["contact"]["id"]
    assert data(url, key, SUBSCRIBE, {"id": gid})["consentUpdate"]["userErrors"] == []
    return gid


def queue_mail(instances: Instances, count: int, tag: str) -> list[str]:
    """`count` marketing messages to subscribed contacts, queued alternately through both."""
    ids = []
    for i in range(count):
        serve = instances.both[i % 2]
        gid = subscribed_contact(serve.url, instances.key, f"{tag}{i}@example.com")
        sent = data(serve.url, instances.key, SEND, {"id": gid, "subject": f"{tag} {i}"})
        assert sent["messageSend"]["userErrors"] == [], sent
        ids.append(sent["messageSend"]["message"]["id"])
    return ids


def wait_until_sent(instances: Instances, subjects: set[str], seconds: float) -> list[dict]:
    client, messages = instances.messages()
    try:
        deadline = time.monotonic() + seconds
        while True:
            docs = list(messages.find({"subject": {"$in": sorted(subjects)}}))
            if len(docs) == len(subjects) and all(d["status"] == "SENT" for d in docs):
                return docs
            if time.monotonic() > deadline:
                pytest.fail(f"not all sent: {Counter(d['status'] for d in docs)}")
            time.sleep(0.1)
    finally:
        client.close()


def owner(instances: Instances, port: int) -> Serve | None:
    """The instance whose SMTP connection comes from `port`, if it is still open."""
    for serve in instances.both:
        with contextlib.suppress(psutil.NoSuchProcess):
            ports = {c.laddr.port for c in psutil.Process(serve.process.pid).net_connections("tcp")}
            if port in ports:
                return serve
    return None


def test_each_message_is_delivered_once_while_both_deliver(instances):
    instances.inbox.received.clear()
    instances.inbox.slow, instances.inbox.delay = 20, 0.05  # deliveries overlap
    senders: Counter[str] = Counter()
    watching = threading.Event()

    def note_senders() -> None:
        while not watching.is_set():
            for port in list(instances.inbox.in_progress):
                serve = owner(instances, port)
                if serve is not None:
                    senders["first" if serve is instances.first else "second"] += 1
            time.sleep(0.01)

    watcher = threading.Thread(target=note_senders, daemon=True)
    watcher.start()
    try:
        queue_mail(instances, 20, "once")
        docs = wait_until_sent(instances, {f"once {i}" for i in range(20)}, DELIVERY_SECONDS)
    finally:
        watching.set()
        watcher.join()

    ids = instances.inbox.message_ids()
    assert len(ids) == 20
    assert Counter(ids).most_common(1)[0][1] == 1
    assert {f"<{d['_id']}@localhost>" for d in docs} == set(ids)
    assert all(d["attempts"] == 1 for d in docs)
    assert set(senders) == {"first", "second"}, senders  # both outboxes took part


def test_an_instance_killed_mid_delivery_leaves_its_work_to_the_other(instances):
    instances.inbox.received.clear()
    # Every message slow: whichever takes a message, it is inside a delivery for a while.
    instances.inbox.slow, instances.inbox.delay = 12, 0.7
    queue_mail(instances, 12, "crash")
    # Wait for the second instance (the one without the database) to be
    # inside a delivery: the mail server has the message, its reply is late.
    deadline = time.monotonic() + DELIVERY_SECONDS
    cut: str | None = None
    while cut is None and time.monotonic() < deadline:
        for port, mid in list(instances.inbox.in_progress.items()):
            if owner(instances, port) is instances.second:
                cut = mid
                break
        time.sleep(0.01)
    assert cut is not None, f"the second instance never delivered:\n{instances.second.output}"
    assert instances.second is not None
    instances.second.stop(signal.SIGKILL)

    # Its claim holds the message for the lease (minutes); let that time pass
    # for the message the dead instance held, and the first delivers it too.
    client, messages = instances.messages()
    try:
        held = messages.update_one(
            {
                "_id": ObjectId(cut.strip("<>").split("@")[0]),
                "status": "QUEUED",
                # still held by the dead instance's lease, not yet due again
                "nextAttemptAt": {"$gt": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)},
            },
            {"$set": {"nextAttemptAt": dt.datetime.now(dt.UTC)}},
        )
    finally:
        client.close()
    assert held.modified_count == 1
    docs = wait_until_sent(instances, {f"crash {i}" for i in range(12)}, DELIVERY_SECONDS)

    ids = Counter(instances.inbox.message_ids())
    assert set(ids) == {f"<{d['_id']}@localhost>" for d in docs}
    # At least once: the message accepted as the sender died went out once
    # more, under the same Message-ID; every other one exactly once.
    assert ids[cut] == 2
    assert all(n == 1 for mid, n in ids.items() if mid != cut)
    assert [d["attempts"] for d in docs if f"<{d['_id']}@localhost>" == cut] == [2]

    instances.start_second()  # a replacement joins, for the tests that follow


def test_a_subscription_on_one_sees_a_note_added_through_the_other(instances):
    first, second = instances.both
    gid = data(first.url, instances.key, CREATE, {"email": "live@example.com"})["contactCreate"][
        "contact"
    ]["id"]

    async def watch() -> dict:
        ws_url = second.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
            init = {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {instances.key}"},
            }
            await socket.send(json.dumps(init))
            assert json.loads(await socket.recv()) == {"type": "connection_ack"}
            start = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": WATCH, "variables": {"id": gid}},
            }
            await socket.send(json.dumps(start))
            await asyncio.sleep(1)  # the protocol has no "subscribed"
            await asyncio.to_thread(
                data, first.url, instances.key, NOTE, {"id": gid, "text": "Called back"}
            )
            return json.loads(await asyncio.wait_for(socket.recv(), 15))

    event = asyncio.run(watch())

    assert event == {
        "id": "1",
        "type": "next",
        "payload": {"data": {"contactActivity": {"kind": "NOTE", "text": "Called back"}}},
    }


def test_the_form_rate_limit_counts_across_instances(instances):
    key = instances.new_key("PUBLIC", "Shop site")
    # The limit counts per clock minute: do not start a burst at its very end.
    if dt.datetime.now(dt.UTC).second >= 55:
        time.sleep(61 - dt.datetime.now(dt.UTC).second)
    answers = []
    for i in range(FORM_RATE + 2):
        serve = instances.both[i % 2]
        answers.append(gql(serve.url, key, FORM, {"email": f"form{i}@example.com"}).json())

    assert [a["data"] for a in answers[:FORM_RATE]] == [
        {"contactFormSubmit": {"ok": True}}
    ] * FORM_RATE
    # Refused on either instance, the one-more of each.
    for refused in answers[FORM_RATE:]:
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_the_throttle_bucket_is_one_for_both(instances):
    first, second = instances.both
    key = instances.new_key("ADMIN", "Reporting")

    spent = gql(first.url, key, REPORT)
    refused = gql(second.url, key, REPORT)

    assert spent.status_code == 200, spent.text
    assert spent.json()["extensions"]["cost"]["requestedQueryCost"] == REPORT_COST
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    available = body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
    assert THROTTLE_BUCKET - REPORT_COST <= available < REPORT_COST
    # Another key's bucket is its own, on either instance.
    assert gql(second.url, instances.key, "{ contactStats { contacts } }").status_code == 200
    assert httpx.get(f"{second.url}/healthz", timeout=5).status_code == 200
