"""Delivering outbound events, one worker call at a time: the rules of the queue, exactly.

tests/test_outbound_events.py tells the story through `contactgraph serve`
and a real receiver; these call the worker directly on the test database,
with a fixed clock in the future, the endpoint's answers chosen per request
(httpx's mock transport) and the host names' DNS answers chosen per test:
which delivery is claimed and for how long, what each answer stores on the
delivery and on the endpoint, the exact backoff, give-up and disable
boundaries, the order of one contact's events, and which address a request
may go to. The last part runs the background workers against a real HTTP
receiver on this machine: start, wake, stop and what the HTTP client does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo.errors import PyMongoError
from standardwebhooks.webhooks import Webhook
from webhook_receiver import Receiver

from graph.embedded import free_port
from loaders.mongo import Database, connect
from resolvers import event_delivery
from resolvers.event_delivery import (
    DeliveryPolicy,
    EventDelivery,
    Refusal,
    Retry,
    delivery_from_settings,
    vetted_address,
)
from resolvers.events import event_body
from resolvers.webhook_endpoints import show_secret

SHOP = "acme"
OTHER_SHOP = "globex"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
AT = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
ANN, BOB = ObjectId("0000000000000000000000a1"), ObjectId("0000000000000000000000b2")
KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
BODY = event_body("CONTACT_UPDATED", AT, {"id": "Q29udGFjdDox", "email": "ann@example.com"})
PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
MISSING = "(not stored)"


@pytest.fixture(scope="module")
async def own_database(mongodb_uri: str) -> AsyncIterator[Database]:
    """A database of this file's own: two collections, no app, no indexes to wait for."""
    client = connect(mongodb_uri)
    name = f"contactgraph_delivery_rules_{os.getpid()}"
    yield Database(client[name])
    await client.drop_database(name)
    await client.close()


@pytest.fixture
async def database(own_database: Database) -> Database:
    await own_database.webhook_endpoints.delete_many({})
    await own_database.webhook_deliveries.delete_many({})
    return own_database


class Clock:
    def __init__(self) -> None:
        self.at = AT

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    monkeypatch.setattr(event_delivery, "now", fixed)
    return fixed


@pytest.fixture
def longest_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jitter at its top: every wait is exactly the backoff."""
    monkeypatch.setattr(event_delivery.random, "uniform", lambda low, high: high)


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host names and the addresses they resolve to; names under .invalid do not resolve.

    Every other name (the database's own) goes to the real resolver.
    """
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    names: dict[str, list[str]] = {"hooks.example.com": [PUBLIC], "localhost": ["127.0.0.1"]}

    async def getaddrinfo(host: Any, port: Any, **options: Any) -> list[Any]:
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        # The real resolver first, on a name it needs no DNS for: it checks the arguments.
        checked = await real(host if host not in names else "127.0.0.1", port, **options)
        if host not in names:
            return checked
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in names[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return names


class Endpoint:
    """The shop's receiving side: records every request and answers as told."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[int] = []
        self.error: Exception | None = None
        # Something else that happens while the request is under way.
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.meanwhile is not None:
            await self.meanwhile()
        if self.error is not None:
            raise self.error
        return httpx.Response(self.answers.pop(0) if self.answers else 200)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]


@pytest.fixture
def receiving() -> Endpoint:
    return Endpoint()


@pytest.fixture
async def worker(
    database: Any, receiving: Endpoint, dns: dict[str, list[str]]
) -> AsyncIterator[Callable[..., EventDelivery]]:
    """Makes workers whose requests reach `receiving` (no background tasks: tests call them)."""
    made: list[EventDelivery] = []

    def make(
        policy: DeliveryPolicy | None = None, *, db: Any = None, **options: Any
    ) -> EventDelivery:
        delivery = EventDelivery(db or database, policy, **options)
        delivery._client = httpx.AsyncClient(transport=httpx.MockTransport(receiving.handle))
        made.append(delivery)
        return delivery

    yield make
    for delivery in made:
        if delivery._client is not None:
            await delivery._client.aclose()


async def endpoint(
    database: Any, url: str = "https://hooks.example.com/in", *, shop: str = SHOP, **fields: Any
) -> dict[str, Any]:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "url": url,
        "events": ["CONTACT_UPDATED"],
        "enabled": True,
        "createdAt": AT - dt.timedelta(days=30),
        "updatedAt": AT - dt.timedelta(days=30),
        "secrets": [{"key": KEY, "createdAt": AT, "expiresAt": None}],
        "lastDeliveryAt": None,
        "lastError": None,
        "failingSince": None,
        **fields,
    }
    await database.webhook_endpoints.insert_one(doc)
    return doc


async def pending(
    database: Any,
    to: dict[str, Any],
    *,
    contact: ObjectId | None = ANN,
    seq: dt.datetime = AT,
    due: dt.datetime | None = AT,
    created: dt.datetime = AT,
    shop: str = SHOP,
    **fields: Any,
) -> dict[str, Any]:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "endpointId": to["_id"],
        "eventId": ObjectId(),
        "type": "CONTACT_UPDATED",
        "contactId": contact,
        "seq": seq,
        "body": BODY,
        "status": "PENDING",
        "attempts": 0,
        "createdAt": created,
        "nextAttemptAt": due,
        "lease": None,
        **fields,
    }
    await database.webhook_deliveries.insert_one(doc)
    return doc


async def stored(database: Any, doc: dict[str, Any], *fields: str) -> dict[str, Any]:
    collection = database.webhook_deliveries if "endpointId" in doc else database.webhook_endpoints
    now_stored = await collection.find_one({"_id": doc["_id"]})
    assert now_stored is not None
    return {field: now_stored.get(field, MISSING) for field in fields}


async def exists(database: Any, doc: dict[str, Any]) -> bool:
    return await database.webhook_deliveries.find_one({"_id": doc["_id"]}) is not None


def msg_id(doc: dict[str, Any]) -> str:
    return f"msg_{doc['_id']}"


class Hooked:
    """A collection that lets something else happen right before its next calls of a method."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.before: dict[str, list[Callable[[], Awaitable[None]] | None]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        hooks = self.before.get(name)
        if not hooks:
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            hook = hooks.pop(0) if hooks else None
            if hook is not None:
                await hook()
            return await method(*args, **kwargs)

        return call


def racing(database: Any) -> Any:
    """The database as a worker sees it, with the deliveries' collection hooked."""
    return SimpleNamespace(
        webhook_endpoints=database.webhook_endpoints,
        webhook_deliveries=Hooked(database.webhook_deliveries),
    )


# -- the backoff ---------------------------------------------------------------------


def test_the_first_retry_waits_five_seconds_less_up_to_a_fifth(monkeypatch: pytest.MonkeyPatch):
    policy = DeliveryPolicy()
    monkeypatch.setattr(event_delivery.random, "uniform", lambda low, high: high)
    assert policy.delay(1) == 5.0
    assert policy.delay(0) == 5.0
    monkeypatch.setattr(event_delivery.random, "uniform", lambda low, high: low)
    assert policy.delay(1) == 4.0
    monkeypatch.undo()
    assert all(4.0 <= policy.delay(1) <= 5.0 for _ in range(50))


def test_each_failed_attempt_doubles_the_wait_up_to_an_hour(longest_backoff: None):
    policy = DeliveryPolicy()
    assert [policy.delay(n) for n in (2, 3, 4)] == [10.0, 20.0, 40.0]
    assert policy.delay(10) == 2560.0
    assert policy.delay(11) == 3600.0
    assert policy.delay(40) == 3600.0
    assert DeliveryPolicy(first_delay=1.5, max_delay=7.0).delay(3) == 6.0
    assert DeliveryPolicy(first_delay=1.5, max_delay=7.0).delay(4) == 7.0


async def test_the_settings_set_every_window_of_the_worker(database: Any):
    settings = SimpleNamespace(
        webhook_retry_first_seconds=1.0,
        webhook_retry_max_seconds=2.0,
        webhook_give_up_seconds=3.0,
        webhook_disable_after_seconds=4.0,
        webhook_lease_seconds=5.0,
        webhook_timeout_seconds=6.0,
        allow_insecure_webhooks=True,
        webhook_poll_seconds=7.0,
        webhook_concurrency=3,
    )
    made = delivery_from_settings(database, settings)
    assert made.policy == DeliveryPolicy(
        first_delay=1.0, max_delay=2.0, give_up_after=3.0, disable_after=4.0, lease=5.0, timeout=6.0
    )
    assert (made.allow_insecure, made.poll_seconds, made.concurrency) == (True, 7.0, 3)
    # It works on the database it was given.
    await pending(database, await endpoint(database), due=AT + dt.timedelta(seconds=2))
    assert await made._idle_seconds() == 2.0


def test_a_retry_carries_the_answer_s_status():
    assert Retry("HTTP 503", 503).status_code == 503
    assert Retry("No answer").status_code is None
    assert str(Retry("HTTP 503", 503)) == "HTTP 503"


# -- the address a request may go to -------------------------------------------------


async def test_a_public_address_in_the_url_is_used_as_it_is(dns: dict[str, list[str]]):
    address = await vetted_address(PUBLIC, 443, allow_insecure=False)
    assert str(address) == PUBLIC
    assert str(await vetted_address(PUBLIC_V6, 443, allow_insecure=False)) == PUBLIC_V6


@pytest.mark.parametrize("host", ["10.0.0.7", "127.0.0.1", "169.254.169.254", "::1", "224.0.0.1"])
async def test_a_non_public_address_in_the_url_is_refused(host: str):
    with pytest.raises(Refusal) as refused:
        await vetted_address(host, 443, allow_insecure=False)
    assert str(refused.value) == (
        f"Refused: {host} resolves to {host}, a private, loopback, link-local or reserved "
        "address; events are only sent to public addresses."
    )


async def test_loopback_in_the_url_is_allowed_only_when_insecure_webhooks_are(dns: Any):
    assert str(await vetted_address("127.0.0.1", 80, allow_insecure=True)) == "127.0.0.1"
    assert str(await vetted_address("::1", 80, allow_insecure=True)) == "::1"
    with pytest.raises(Refusal):
        await vetted_address("10.0.0.7", 80, allow_insecure=True)


async def test_a_host_name_goes_to_the_first_of_its_public_addresses(dns: dict[str, list[str]]):
    dns["hooks.example.com"] = [PUBLIC, "93.184.216.35"]
    assert str(await vetted_address("hooks.example.com", 443, allow_insecure=False)) == PUBLIC
    dns["hooks.example.com"] = [PUBLIC_V6, PUBLIC]
    assert str(await vetted_address("hooks.example.com", 443, allow_insecure=False)) == PUBLIC_V6


async def test_a_host_name_with_any_private_address_is_refused(dns: dict[str, list[str]]):
    dns["hooks.example.com"] = [PUBLIC, "192.168.1.20"]
    with pytest.raises(Refusal) as refused:
        await vetted_address("hooks.example.com", 443, allow_insecure=True)
    assert str(refused.value) == (
        "Refused: hooks.example.com resolves to 192.168.1.20, a private, loopback, link-local "
        "or reserved address; events are only sent to public addresses."
    )


async def test_only_localhost_may_resolve_to_loopback_and_only_when_insecure(
    dns: dict[str, list[str]],
):
    dns["localhost"] = ["127.0.0.1", "::1"]
    assert str(await vetted_address("localhost", 8080, allow_insecure=True)) == "127.0.0.1"
    assert str(await vetted_address("LOCALHOST", 8080, allow_insecure=True)) == "127.0.0.1"
    dns["LOCALHOST"] = ["::1"]
    with pytest.raises(Refusal, match="Refused: localhost resolves to 127.0.0.1"):
        await vetted_address("localhost", 8080, allow_insecure=False)
    dns["sneaky.example.com"] = ["127.0.0.1"]
    with pytest.raises(Refusal, match="sneaky.example.com resolves to 127.0.0.1"):
        await vetted_address("sneaky.example.com", 8080, allow_insecure=True)


async def test_localhost_resolving_also_to_a_private_address_is_refused(dns: dict[str, list[str]]):
    dns["localhost"] = ["127.0.0.1", "10.1.2.3"]
    with pytest.raises(Refusal, match="localhost resolves to 10.1.2.3"):
        await vetted_address("localhost", 8080, allow_insecure=True)


async def test_a_name_that_does_not_resolve_is_tried_again_later(dns: dict[str, list[str]]):
    with pytest.raises(Retry) as retry:
        await vetted_address("gone.invalid", 443, allow_insecure=False)
    assert str(retry.value) == (
        "The host name could not be resolved: [Errno -2] Name or service not known"
    )
    assert retry.value.status_code is None
    dns["empty.example.com"] = []
    with pytest.raises(Retry) as empty:
        await vetted_address("empty.example.com", 443, allow_insecure=False)
    assert str(empty.value) == "The host name resolved to no address."


# -- the request ---------------------------------------------------------------------


async def test_a_delivery_is_posted_to_the_checked_address_signed_with_the_name_kept(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database, "https://hooks.example.com/in?shop=acme")
    doc = await pending(database, to)
    before = int(time.time())
    assert await worker().deliver_one() is True
    after = int(time.time())

    [request] = receiving.requests
    assert request.method == "POST"
    assert str(request.url) == f"https://{PUBLIC}/in?shop=acme"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.content == BODY.encode()
    assert request.headers["host"] == "hooks.example.com"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == msg_id(doc)
    assert before <= int(request.headers["webhook-timestamp"]) <= after
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    headers = {
        k: request.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    Webhook(show_secret(KEY)).verify(request.content, headers)


async def test_a_port_and_an_ipv6_address_are_kept_and_plain_http_sends_no_sni(
    database: Any, worker: Any, receiving: Endpoint, dns: dict[str, list[str]]
):
    dns["hooks.example.com"] = [PUBLIC_V6]
    await pending(
        database, await endpoint(database, "https://hooks.example.com:8443"), due=AT - 3 * MS
    )
    await pending(database, await endpoint(database, "http://localhost:8080/x"), due=AT - 2 * MS)
    await pending(database, await endpoint(database, "http://localhost"), due=AT - MS)
    sender = worker(allow_insecure=True)
    assert [await sender.deliver_one() for _ in range(3)] == [True, True, True]

    first, second, third = receiving.requests
    assert str(first.url) == f"https://[{PUBLIC_V6}]:8443/"
    assert first.headers["host"] == "hooks.example.com:8443"
    assert first.extensions["sni_hostname"] == "hooks.example.com"
    assert str(second.url) == "http://127.0.0.1:8080/x"
    assert second.headers["host"] == "localhost:8080"
    assert "sni_hostname" not in second.extensions
    assert str(third.url) == "http://127.0.0.1/"
    assert third.headers["host"] == "localhost"


async def test_https_without_a_port_goes_to_443(
    database: Any, worker: Any, receiving: Endpoint, dns: dict[str, list[str]]
):
    dns["localhost"] = ["127.0.0.1"]
    await pending(database, await endpoint(database, "https://localhost/in"))
    await worker(allow_insecure=True).deliver_one()
    assert receiving.requests[0].url.port is None
    assert str(receiving.requests[0].url) == "https://127.0.0.1/in"


async def test_a_rotated_secret_signs_beside_the_new_one_until_its_window_ends(
    database: Any, worker: Any, receiving: Endpoint
):
    secrets = [
        {"key": OLD_KEY, "createdAt": AT, "expiresAt": AT + MS},
        {"key": bytes(range(50, 82)), "createdAt": AT, "expiresAt": AT},
        {"key": KEY, "createdAt": AT, "expiresAt": None},
    ]
    await pending(database, await endpoint(database, secrets=secrets))
    await worker().deliver_one()
    [request] = receiving.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for key, signature in zip((OLD_KEY, KEY), signatures, strict=True):
        one = {
            "webhook-id": request.headers["webhook-id"],
            "webhook-timestamp": request.headers["webhook-timestamp"],
            "webhook-signature": signature,
        }
        Webhook(show_secret(key)).verify(request.content, one)


# -- what an answer stores -----------------------------------------------------------

DELIVERY_FIELDS = (
    "status",
    "attempts",
    "nextAttemptAt",
    "lease",
    "lastError",
    "lastStatusCode",
    "deliveredAt",
    "expiresAt",
)
ENDPOINT_FIELDS = ("enabled", "lastDeliveryAt", "failingSince", "lastError")


@pytest.mark.parametrize("status_code", [200, 204, 299])
async def test_a_2xx_answer_delivers_it_and_clears_the_endpoint_s_failures(
    database: Any, worker: Any, receiving: Endpoint, status_code: int
):
    to = await endpoint(
        database, failingSince=AT - dt.timedelta(hours=2), lastError="HTTP 502", lastDeliveryAt=AT
    )
    doc = await pending(database, to, attempts=3, lastError="HTTP 502", lastStatusCode=502)
    receiving.answers = [status_code]
    assert await worker().deliver_one() is True
    assert await stored(database, doc, *DELIVERY_FIELDS) == {
        "status": "DELIVERED",
        "attempts": 4,
        "nextAttemptAt": None,
        "lease": None,
        "lastError": None,
        "lastStatusCode": status_code,
        "deliveredAt": AT,
        "expiresAt": AT + dt.timedelta(days=7),
    }
    assert await stored(database, to, *ENDPOINT_FIELDS) == {
        "enabled": True,
        "lastDeliveryAt": AT,
        "failingSince": None,
        "lastError": None,
    }


@pytest.mark.parametrize("status_code", [199, 300, 404, 500])
async def test_any_other_answer_is_tried_again_after_the_backoff(
    database: Any, worker: Any, receiving: Endpoint, longest_backoff: None, status_code: int
):
    to = await endpoint(database)
    doc = await pending(database, to)
    receiving.answers = [status_code]
    await worker().deliver_one()
    assert await stored(database, doc, *DELIVERY_FIELDS) == {
        "status": "PENDING",
        "attempts": 1,
        "nextAttemptAt": AT + dt.timedelta(seconds=5),
        "lease": None,
        "lastError": f"HTTP {status_code}",
        "lastStatusCode": status_code,
        "deliveredAt": MISSING,
        "expiresAt": MISSING,
    }
    assert await stored(database, to, *ENDPOINT_FIELDS) == {
        "enabled": True,
        "lastDeliveryAt": None,
        "failingSince": AT,
        "lastError": f"HTTP {status_code}",
    }


async def test_the_wait_doubles_with_the_attempts_already_made(
    database: Any, worker: Any, receiving: Endpoint, longest_backoff: None
):
    doc = await pending(database, await endpoint(database), attempts=2, lastStatusCode=500)
    receiving.error = httpx.ConnectError("All connection attempts failed")
    await worker().deliver_one()
    assert await stored(
        database, doc, "attempts", "nextAttemptAt", "lastError", "lastStatusCode"
    ) == {
        "attempts": 3,
        "nextAttemptAt": AT + dt.timedelta(seconds=20),
        "lastError": "ConnectError: All connection attempts failed",
        "lastStatusCode": None,
    }


async def test_a_retry_is_logged_with_its_wait(
    database: Any, worker: Any, receiving: Endpoint, longest_backoff: None, caplog: Any
):
    doc = await pending(database, await endpoint(database))
    receiving.answers = [503]
    with caplog.at_level(logging.INFO, logger="contactgraph"):
        await worker().deliver_one()
    assert f"webhooks: delivery {doc['_id']} not delivered (HTTP 503); again in 5.0s" in (
        caplog.messages
    )


async def test_no_answer_in_time_and_a_failed_connection_are_tried_again(
    database: Any, worker: Any, receiving: Endpoint
):
    first = await pending(database, await endpoint(database))
    receiving.error = httpx.ReadTimeout("timed out")
    await worker().deliver_one()
    assert await stored(database, first, "status", "lastError") == {
        "status": "PENDING",
        "lastError": "No answer within 10 s.",
    }
    second = await pending(database, await endpoint(database), contact=BOB)
    receiving.error = httpx.ConnectTimeout("timed out")
    await worker(DeliveryPolicy(timeout=2.5)).deliver_one()
    assert await stored(database, second, "lastError") == {"lastError": "No answer within 2.5 s."}


async def test_a_long_connection_error_is_kept_to_300_characters(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    doc = await pending(database, to)
    receiving.error = httpx.RemoteProtocolError("x" * 400)
    await worker().deliver_one()
    kept = "RemoteProtocolError: " + "x" * 279
    assert await stored(database, doc, "lastError") == {"lastError": kept}
    assert await stored(database, to, "lastError") == {"lastError": kept}
    other = await pending(database, await endpoint(database), contact=BOB)
    receiving.error = OSError("no route")
    await worker().deliver_one()
    assert await stored(database, other, "lastError") == {"lastError": "OSError: no route"}


async def test_an_address_never_sent_to_fails_the_delivery_at_once(
    database: Any, worker: Any, receiving: Endpoint, dns: dict[str, list[str]], caplog: Any
):
    dns["hooks.example.com"] = ["10.9.8.7"]
    to = await endpoint(database)
    doc = await pending(database, to, attempts=1, lastStatusCode=503)
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        assert await worker().deliver_one() is True
    reason = (
        "Refused: hooks.example.com resolves to 10.9.8.7, a private, loopback, link-local or "
        "reserved address; events are only sent to public addresses."
    )
    assert receiving.requests == []
    assert await stored(database, doc, *DELIVERY_FIELDS) == {
        "status": "FAILED",
        "attempts": 2,
        "nextAttemptAt": None,
        "lease": None,
        "lastError": reason,
        "lastStatusCode": 503,  # the last answer there was
        "deliveredAt": MISSING,
        "expiresAt": AT + dt.timedelta(days=7),
    }
    assert await stored(database, to, *ENDPOINT_FIELDS) == {
        "enabled": True,
        "lastDeliveryAt": None,
        "failingSince": AT,
        "lastError": reason,
    }
    assert f"webhooks: delivery {doc['_id']} failed: {reason}" in caplog.messages


async def test_a_url_this_server_no_longer_allows_fails_the_delivery(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database, "http://localhost:9000/in")
    doc = await pending(database, to)
    await worker().deliver_one()
    reason = "Refused: the URL is not allowed by this server's settings."
    assert receiving.requests == []
    assert await stored(database, doc, "status", "lastError") == {
        "status": "FAILED",
        "lastError": reason,
    }
    assert await stored(database, to, "lastError") == {"lastError": reason}


async def test_a_long_refusal_is_kept_whole_on_the_delivery_and_cut_on_the_endpoint(
    database: Any, worker: Any, dns: dict[str, list[str]]
):
    host = ".".join(["a" * 63] * 3) + ".example.com"
    dns[host] = ["10.0.0.1"]
    to = await endpoint(database, f"https://{host}/in")
    doc = await pending(database, to)
    await worker().deliver_one()
    reason = (await stored(database, doc, "lastError"))["lastError"]
    assert reason.startswith(f"Refused: {host} resolves to 10.0.0.1") and len(reason) > 300
    assert await stored(database, to, "lastError") == {"lastError": reason[:300]}


# -- giving up, disabling ------------------------------------------------------------


async def test_three_days_after_the_event_a_failing_delivery_gives_up(
    database: Any, worker: Any, receiving: Endpoint, longest_backoff: None, caplog: Any
):
    to = await endpoint(database)
    at_limit = await pending(
        database, to, created=AT - dt.timedelta(days=3), attempts=6, contact=ANN
    )
    just_inside = await pending(
        database, to, created=AT - dt.timedelta(days=3) + MS, attempts=6, contact=BOB
    )
    receiving.answers = [503, 503]
    sender = worker()
    with caplog.at_level(logging.INFO, logger="contactgraph"):
        await sender.deliver_one()
        await sender.deliver_one()
    again = [m for m in caplog.messages if "again in" in m]
    assert again == [
        f"webhooks: delivery {just_inside['_id']} not delivered (HTTP 503); again in 320.0s"
    ]
    assert await stored(database, at_limit, *DELIVERY_FIELDS) == {
        "status": "FAILED",
        "attempts": 7,
        "nextAttemptAt": None,
        "lease": None,
        "lastError": "Gave up after 7 attempts; last error: HTTP 503",
        "lastStatusCode": 503,
        "deliveredAt": MISSING,
        "expiresAt": AT + dt.timedelta(days=7),
    }
    assert await stored(database, just_inside, "status", "attempts", "nextAttemptAt") == {
        "status": "PENDING",
        "attempts": 7,
        "nextAttemptAt": AT + dt.timedelta(seconds=320),
    }


async def test_the_give_up_window_comes_from_the_policy(
    database: Any, worker: Any, receiving: Endpoint
):
    doc = await pending(database, await endpoint(database), created=AT - dt.timedelta(seconds=30))
    receiving.answers = [500]
    await worker(DeliveryPolicy(give_up_after=30)).deliver_one()
    assert await stored(database, doc, "status", "lastError") == {
        "status": "FAILED",
        "lastError": "Gave up after 1 attempts; last error: HTTP 500",
    }


async def test_an_endpoint_failing_for_five_days_is_disabled_and_says_why(
    database: Any, worker: Any, receiving: Endpoint, caplog: Any
):
    since = AT - dt.timedelta(days=5)
    long = await endpoint(database, failingSince=since, lastError="HTTP 502")
    short = await endpoint(database, failingSince=since + MS, lastError="HTTP 502")
    await pending(database, long)
    await pending(database, short, contact=BOB)
    receiving.answers = [500, 500]
    sender = worker()
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        await sender.deliver_one()
        await sender.deliver_one()
    assert await stored(database, long, *ENDPOINT_FIELDS) == {
        "enabled": False,
        "lastDeliveryAt": None,
        "failingSince": since,
        "lastError": "Disabled: no delivery succeeded for 5 days; last error: HTTP 500",
    }
    assert await stored(database, short, *ENDPOINT_FIELDS) == {
        "enabled": True,
        "lastDeliveryAt": None,
        "failingSince": since + MS,
        "lastError": "HTTP 500",
    }
    assert f"webhooks: endpoint {long['_id']} disabled after failing since {since}" in (
        caplog.messages
    )
    assert not any(f"endpoint {short['_id']} disabled" in m for m in caplog.messages)


async def test_the_disable_window_and_a_long_error_in_the_reason(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database, failingSince=AT - dt.timedelta(hours=36), lastError="x")
    await pending(database, to)
    receiving.error = httpx.ConnectError("y" * 400)
    await worker(DeliveryPolicy(disable_after=1.5 * 86_400)).deliver_one()
    reason = (
        "Disabled: no delivery succeeded for 1.5 days; last error: ConnectError: " + "y" * 400
    )[:300]
    assert await stored(database, to, "enabled", "lastError") == {
        "enabled": False,
        "lastError": reason,
    }


async def test_an_endpoint_disabled_by_hand_meanwhile_keeps_its_last_error(
    database: Any, worker: Any, receiving: Endpoint
):
    recent = await endpoint(database, failingSince=AT - dt.timedelta(days=1), lastError="HTTP 502")
    old = await endpoint(database, failingSince=AT - dt.timedelta(days=6), lastError="HTTP 502")
    await pending(database, recent)
    await pending(database, old, contact=BOB)

    async def disable_both() -> None:
        await database.webhook_endpoints.update_many({}, {"$set": {"enabled": False}})

    receiving.meanwhile = disable_both
    receiving.answers = [500, 500]
    sender = worker()
    await sender.deliver_one()
    await sender.deliver_one()
    for to in (recent, old):
        assert await stored(database, to, "enabled", "lastError", "failingSince") == {
            "enabled": False,
            "lastError": "HTTP 502",
            "failingSince": to["failingSince"],
        }


async def test_a_disabled_endpoint_s_deliveries_fail_without_an_attempt(
    database: Any, worker: Any, receiving: Endpoint
):
    disabled = await endpoint(database, enabled=False)
    unset = await endpoint(database)
    await database.webhook_endpoints.update_one({"_id": unset["_id"]}, {"$unset": {"enabled": 1}})
    first = await pending(database, disabled, attempts=2, lastStatusCode=500)
    second = await pending(database, unset, contact=BOB)
    sender = worker()
    await sender.deliver_one()
    await sender.deliver_one()
    assert receiving.requests == []
    assert await stored(database, first, *DELIVERY_FIELDS) == {
        "status": "FAILED",
        "attempts": 2,
        "nextAttemptAt": None,
        "lease": None,
        "lastError": "The endpoint is disabled.",
        "lastStatusCode": 500,
        "deliveredAt": MISSING,
        "expiresAt": AT + dt.timedelta(days=7),
    }
    assert await stored(database, second, "status", "attempts", "lastStatusCode") == {
        "status": "FAILED",
        "attempts": 0,
        "lastStatusCode": MISSING,
    }
    assert await stored(database, disabled, "failingSince", "lastError") == {
        "failingSince": None,
        "lastError": None,
    }


async def test_a_deleted_endpoint_s_delivery_is_dropped(
    database: Any, worker: Any, receiving: Endpoint
):
    gone = {"_id": ObjectId()}
    doc = await pending(database, gone)
    # Another shop's endpoint never receives this shop's event, whatever it names.
    theirs = await endpoint(database, shop=OTHER_SHOP)
    misdirected = await pending(database, theirs, contact=BOB)
    sender = worker()
    assert await sender.deliver_one() is True
    assert await sender.deliver_one() is True
    assert receiving.requests == []
    assert not await exists(database, doc)
    assert not await exists(database, misdirected)


# -- the endpoint's last delivery ----------------------------------------------------


@pytest.mark.parametrize(
    ("last", "failing_since", "last_error", "written"),
    [
        (AT - dt.timedelta(milliseconds=999), None, None, False),
        (AT - dt.timedelta(seconds=1), None, None, True),
        (None, None, None, True),
        (AT - dt.timedelta(milliseconds=10), AT - dt.timedelta(hours=1), "HTTP 500", True),
        (AT - dt.timedelta(milliseconds=10), None, "HTTP 500", True),
        (AT - dt.timedelta(milliseconds=10), AT - dt.timedelta(hours=1), None, True),
    ],
)
async def test_a_success_moves_the_endpoint_s_last_delivery_at_most_once_a_second(
    database: Any,
    worker: Any,
    last: dt.datetime | None,
    failing_since: dt.datetime | None,
    last_error: str | None,
    written: bool,
):
    to = await endpoint(
        database, lastDeliveryAt=last, failingSince=failing_since, lastError=last_error
    )
    await pending(database, to)
    await worker().deliver_one()
    expected = (
        {"lastDeliveryAt": AT, "failingSince": None, "lastError": None}
        if written
        else {"lastDeliveryAt": last, "failingSince": None, "lastError": None}
    )
    assert await stored(database, to, "lastDeliveryAt", "failingSince", "lastError") == expected


# -- the claim -----------------------------------------------------------------------


async def test_nothing_due_means_nothing_claimed(database: Any, worker: Any, receiving: Endpoint):
    to = await endpoint(database)
    later = await pending(database, to, due=AT + MS)
    done = await pending(
        database, to, contact=BOB, status="DELIVERED", due=AT - dt.timedelta(hours=1)
    )
    sender = worker()
    assert await sender.deliver_one() is False
    assert receiving.requests == []
    assert await stored(database, later, "nextAttemptAt", "lease") == {
        "nextAttemptAt": AT + MS,
        "lease": None,
    }
    assert await stored(database, done, "status", "attempts") == {
        "status": "DELIVERED",
        "attempts": 0,
    }


async def test_the_delivery_due_longest_goes_first(database: Any, worker: Any, receiving: Endpoint):
    to = await endpoint(database)
    due_now = await pending(database, to, contact=ANN, due=AT)
    due_before = await pending(database, to, contact=BOB, due=AT - dt.timedelta(minutes=5))
    sender = worker()
    assert [await sender.deliver_one() for _ in range(3)] == [True, True, False]
    assert receiving.ids() == [msg_id(due_before), msg_id(due_now)]


async def test_a_worker_that_dies_mid_delivery_leaves_it_due_when_the_lease_ends(
    database: Any, worker: Any, receiving: Endpoint, clock: Clock
):
    doc = await pending(database, await endpoint(database))
    dying = worker()

    async def die(delivery: Any, lease: Any) -> None:
        raise RuntimeError("killed")

    dying._attempt = die
    with pytest.raises(RuntimeError):
        await dying.deliver_one()
    claim = await stored(database, doc, "status", "nextAttemptAt", "lease", "attempts")
    assert isinstance(claim.pop("lease"), ObjectId)
    assert claim == {
        "status": "PENDING",
        "nextAttemptAt": AT + dt.timedelta(seconds=60),
        "attempts": 0,
    }
    clock.at = AT + dt.timedelta(seconds=60) - MS
    assert await worker().deliver_one() is False
    clock.at = AT + dt.timedelta(seconds=60)
    assert await worker().deliver_one() is True
    assert receiving.ids() == [msg_id(doc)]
    assert await stored(database, doc, "status") == {"status": "DELIVERED"}


async def test_the_lease_comes_from_the_policy(database: Any, worker: Any):
    doc = await pending(database, await endpoint(database))
    holding = worker(DeliveryPolicy(lease=7.5))

    async def hold(delivery: Any, lease: Any) -> None:
        raise RuntimeError("stop here")

    holding._attempt = hold
    with pytest.raises(RuntimeError):
        await holding.deliver_one()
    assert await stored(database, doc, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=7.5)
    }


@pytest.mark.parametrize("answer", [200, 500])
async def test_a_worker_whose_lease_was_taken_over_records_nothing(
    database: Any, worker: Any, receiving: Endpoint, answer: int
):
    to = await endpoint(database)
    doc = await pending(database, to, attempts=1)
    other = ObjectId()

    async def lease_runs_out_and_another_claims() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": doc["_id"]},
            {"$set": {"lease": other, "nextAttemptAt": AT + dt.timedelta(seconds=60)}},
        )

    receiving.meanwhile = lease_runs_out_and_another_claims
    receiving.answers = [answer]
    await worker().deliver_one()
    assert await stored(database, doc, *DELIVERY_FIELDS) == {
        "status": "PENDING",
        "attempts": 1,
        "nextAttemptAt": AT + dt.timedelta(seconds=60),
        "lease": other,
        "lastError": MISSING,
        "lastStatusCode": MISSING,
        "deliveredAt": MISSING,
        "expiresAt": MISSING,
    }


async def test_a_worker_whose_lease_was_taken_over_does_not_drop_the_delivery(
    database: Any, worker: Any
):
    db = racing(database)
    doc = await pending(database, {"_id": ObjectId()})
    other = ObjectId()

    async def another_claims() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": doc["_id"]}, {"$set": {"lease": other}}
        )

    db.webhook_deliveries.before["delete_one"] = [another_claims]
    await worker(db=db).deliver_one()
    assert await stored(database, doc, "lease") == {"lease": other}


# -- one contact's events in order ---------------------------------------------------


async def test_a_later_event_of_a_contact_waits_while_an_earlier_one_is_pending(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    earlier = await pending(
        database, to, seq=AT - dt.timedelta(seconds=2), due=AT + dt.timedelta(seconds=30)
    )
    later = await pending(database, to, seq=AT - dt.timedelta(seconds=1), due=AT)
    sender = worker()
    assert await sender.deliver_one() is True
    assert receiving.requests == []
    assert await stored(database, later, "status", "nextAttemptAt", "lease", "attempts") == {
        "status": "PENDING",
        "nextAttemptAt": AT + dt.timedelta(seconds=30),
        "lease": None,
        "attempts": 0,
    }
    assert await stored(database, earlier, "waiters", "nextAttemptAt") == {
        "waiters": True,
        "nextAttemptAt": AT + dt.timedelta(seconds=30),
    }
    assert not sender._wake.is_set()


async def test_a_waiting_event_is_looked_at_again_after_one_poll_at_the_soonest(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    await pending(database, to, seq=AT - dt.timedelta(seconds=2), due=AT + MS)
    later = await pending(database, to, seq=AT - dt.timedelta(seconds=1), due=AT)
    await worker().deliver_one()
    await worker(poll_seconds=0.5).deliver_one()
    assert await stored(database, later, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=2)
    }
    second = await pending(database, to, contact=BOB, seq=AT - dt.timedelta(seconds=2), due=AT + MS)
    third = await pending(database, to, contact=BOB, seq=AT - dt.timedelta(seconds=1), due=AT)
    await worker(poll_seconds=0.5).deliver_one()
    assert await stored(database, second, "waiters") == {"waiters": True}
    assert await stored(database, third, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(milliseconds=500)
    }


async def test_the_earliest_pending_event_is_the_one_waited_for(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    first = await pending(
        database, to, seq=AT - dt.timedelta(seconds=3), due=AT + dt.timedelta(seconds=40)
    )
    second = await pending(
        database, to, seq=AT - dt.timedelta(seconds=2), due=AT + dt.timedelta(seconds=20)
    )
    third = await pending(database, to, seq=AT - dt.timedelta(seconds=1), due=AT)
    await worker().deliver_one()
    assert receiving.requests == []
    assert await stored(database, first, "waiters") == {"waiters": True}
    assert await stored(database, second, "waiters") == {"waiters": MISSING}
    assert await stored(database, third, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=40)
    }


async def test_of_two_events_at_the_same_moment_the_first_recorded_goes_first(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    first = await pending(database, to, _id=ObjectId("0000000000000000000000f1"), due=AT + MS)
    second = await pending(database, to, _id=ObjectId("0000000000000000000000f2"), due=AT)
    await worker().deliver_one()
    assert receiving.requests == []
    assert await stored(database, first, "waiters") == {"waiters": True}
    assert await stored(database, second, "lease", "nextAttemptAt") == {
        "lease": None,
        "nextAttemptAt": AT + dt.timedelta(seconds=2),
    }


async def test_the_earliest_pending_event_is_waited_for_whatever_order_they_were_stored_in(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    second = await pending(
        database,
        to,
        _id=ObjectId("0000000000000000000000a1"),
        seq=AT - dt.timedelta(seconds=2),
        due=AT + dt.timedelta(seconds=20),
    )
    first = await pending(
        database,
        to,
        _id=ObjectId("0000000000000000000000a2"),
        seq=AT - dt.timedelta(seconds=3),
        due=AT + dt.timedelta(seconds=40),
    )
    third = await pending(
        database, to, _id=ObjectId("0000000000000000000000a3"), seq=AT - dt.timedelta(seconds=1)
    )
    await worker().deliver_one()
    assert receiving.requests == []
    assert await stored(database, first, "waiters") == {"waiters": True}
    assert await stored(database, second, "waiters") == {"waiters": MISSING}
    assert await stored(database, third, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=40)
    }


async def test_of_events_at_the_same_moment_the_first_recorded_is_waited_for_whatever_order_they_were_stored_in(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    second = await pending(database, to, _id=ObjectId("0000000000000000000000f2"), due=AT + MS)
    first = await pending(database, to, _id=ObjectId("0000000000000000000000f1"), due=AT + 2 * MS)
    third = await pending(database, to, _id=ObjectId("0000000000000000000000f3"), due=AT)
    await worker().deliver_one()
    assert receiving.requests == []
    assert await stored(database, first, "waiters") == {"waiters": True}
    assert await stored(database, second, "waiters") == {"waiters": MISSING}
    assert await stored(database, third, "nextAttemptAt") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=2)
    }


async def test_a_worker_keeps_no_claim_once_a_delivery_is_sent_or_waits(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    await pending(database, to, seq=AT - dt.timedelta(seconds=2), due=AT + MS)
    await pending(database, to, seq=AT - dt.timedelta(seconds=1), due=AT)
    bobs = await pending(database, to, contact=BOB, due=AT)
    sender = worker()
    assert await sender.deliver_one() is True
    assert await sender.deliver_one() is True
    assert await sender.deliver_one() is False
    assert receiving.ids() == [msg_id(bobs)]  # Ann's later event waits for her earlier one
    assert sender._claimed == {}


async def test_the_first_recorded_of_two_at_the_same_moment_does_not_wait(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    first = await pending(database, to, _id=ObjectId("0000000000000000000000f1"), due=AT)
    second = await pending(database, to, _id=ObjectId("0000000000000000000000f2"), due=AT + MS)
    await worker().deliver_one()
    assert receiving.ids() == [msg_id(first)]
    assert await stored(database, second, "waiters") == {"waiters": MISSING}


@pytest.mark.parametrize(
    "other",
    [
        {"contact": BOB},
        {"shop": OTHER_SHOP},
        {"endpoint": "another"},
        {"status": "FAILED"},
        {"status": "DELIVERED"},
        {"seq": AT + MS},
    ],
    ids=["other-contact", "other-shop", "other-endpoint", "failed", "delivered", "later"],
)
async def test_an_event_waits_only_for_earlier_pending_ones_of_its_contact_and_endpoint(
    database: Any, worker: Any, receiving: Endpoint, other: dict[str, Any]
):
    to = await endpoint(database)
    another = await endpoint(database)
    await pending(
        database,
        another if other.get("endpoint") else to,
        contact=other.get("contact", ANN),
        shop=other.get("shop", SHOP),
        status=other.get("status", "PENDING"),
        seq=other.get("seq", AT - dt.timedelta(seconds=5)),
        due=AT + dt.timedelta(seconds=30),
    )
    doc = await pending(database, to, seq=AT)
    await worker().deliver_one()
    assert receiving.ids() == [msg_id(doc)]


async def test_an_event_of_no_contact_never_waits(database: Any, worker: Any, receiving: Endpoint):
    to = await endpoint(database)
    await pending(
        database, to, contact=None, seq=AT - dt.timedelta(seconds=5), due=AT + dt.timedelta(hours=1)
    )
    doc = await pending(database, to, contact=None, seq=AT)
    await worker().deliver_one()
    assert receiving.ids() == [msg_id(doc)]


async def test_an_earlier_event_finished_meanwhile_is_looked_for_again(
    database: Any, worker: Any, receiving: Endpoint
):
    db = racing(database)
    to = await endpoint(database)
    firsts = [
        await pending(
            database, to, seq=AT - dt.timedelta(seconds=n), due=AT + dt.timedelta(hours=1)
        )
        for n in (9, 8, 7)
    ]
    doc = await pending(database, to, seq=AT)

    def finishes(earlier: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def finish() -> None:
            await database.webhook_deliveries.update_one(
                {"_id": earlier["_id"]}, {"$set": {"status": "DELIVERED"}}
            )

        return finish

    # The first two finish between being found and being marked; the third is marked.
    db.webhook_deliveries.before["update_one"] = [finishes(firsts[0]), finishes(firsts[1])]
    await worker(db=db).deliver_one()
    assert receiving.requests == []
    assert await stored(database, firsts[2], "waiters") == {"waiters": True}
    assert await stored(database, doc, "nextAttemptAt", "lease") == {
        "nextAttemptAt": AT + dt.timedelta(hours=1),
        "lease": None,
    }


async def test_after_three_earlier_events_finished_meanwhile_the_event_goes(
    database: Any, worker: Any, receiving: Endpoint
):
    db = racing(database)
    to = await endpoint(database)
    firsts = [
        await pending(
            database, to, seq=AT - dt.timedelta(seconds=n), due=AT + dt.timedelta(hours=1)
        )
        for n in (9, 8, 7, 6)
    ]
    doc = await pending(database, to, seq=AT)

    def finishes(earlier: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def finish() -> None:
            await database.webhook_deliveries.update_one(
                {"_id": earlier["_id"]}, {"$set": {"status": "DELIVERED"}}
            )

        return finish

    db.webhook_deliveries.before["update_one"] = [finishes(e) for e in firsts[:3]]
    await worker(db=db).deliver_one()
    assert receiving.ids() == [msg_id(doc)]
    assert await stored(database, firsts[3], "waiters") == {"waiters": MISSING}


async def test_an_earlier_event_finished_while_this_one_gave_back_its_claim_makes_it_due_now(
    database: Any, worker: Any, receiving: Endpoint
):
    db = racing(database)
    to = await endpoint(database)
    earlier = await pending(
        database, to, seq=AT - dt.timedelta(seconds=5), due=AT + dt.timedelta(hours=1)
    )
    doc = await pending(database, to, seq=AT)

    async def earlier_finishes() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": earlier["_id"]}, {"$set": {"status": "DELIVERED"}}
        )

    # The mark lands; the earlier one finishes before this one's claim is given back.
    db.webhook_deliveries.before["update_one"] = [None, earlier_finishes]
    sender = worker(db=db)
    assert await sender.deliver_one() is True
    assert receiving.requests == []
    assert await stored(database, doc, "status", "nextAttemptAt", "lease") == {
        "status": "PENDING",
        "nextAttemptAt": AT,
        "lease": None,
    }
    assert sender._wake.is_set()


async def test_a_due_again_event_claimed_by_another_worker_meanwhile_is_left_to_it(
    database: Any, worker: Any, receiving: Endpoint
):
    db = racing(database)
    to = await endpoint(database)
    earlier = await pending(
        database, to, seq=AT - dt.timedelta(seconds=5), due=AT + dt.timedelta(hours=1)
    )
    doc = await pending(database, to, seq=AT)
    other = ObjectId()

    async def earlier_finishes() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": earlier["_id"]}, {"$set": {"status": "DELIVERED"}}
        )

    async def another_claims() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": doc["_id"]},
            {"$set": {"lease": other, "nextAttemptAt": AT + dt.timedelta(seconds=60)}},
        )

    db.webhook_deliveries.before["update_one"] = [None, earlier_finishes, another_claims]
    await worker(db=db).deliver_one()
    assert await stored(database, doc, "nextAttemptAt", "lease") == {
        "nextAttemptAt": AT + dt.timedelta(seconds=60),
        "lease": other,
    }


async def test_a_due_again_event_finished_by_another_worker_meanwhile_stays_finished(
    database: Any, worker: Any, receiving: Endpoint
):
    db = racing(database)
    to = await endpoint(database)
    earlier = await pending(
        database, to, seq=AT - dt.timedelta(seconds=5), due=AT + dt.timedelta(hours=1)
    )
    doc = await pending(database, to, seq=AT)

    async def earlier_finishes() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": earlier["_id"]}, {"$set": {"status": "DELIVERED"}}
        )

    async def another_delivers_it() -> None:
        await database.webhook_deliveries.update_one(
            {"_id": doc["_id"]}, {"$set": {"status": "DELIVERED", "nextAttemptAt": None}}
        )

    db.webhook_deliveries.before["update_one"] = [None, earlier_finishes, another_delivers_it]
    await worker(db=db).deliver_one()
    assert await stored(database, doc, "status", "nextAttemptAt", "lease") == {
        "status": "DELIVERED",
        "nextAttemptAt": None,
        "lease": None,
    }


async def test_finishing_a_waited_for_event_wakes_the_next_of_its_contact(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    another = await endpoint(database)
    first = await pending(database, to, seq=AT - dt.timedelta(seconds=9), waiters=True)
    hour = AT + dt.timedelta(hours=1)
    untouched = [
        await pending(database, to, contact=BOB, seq=AT - dt.timedelta(seconds=8), due=hour),
        await pending(database, another, seq=AT - dt.timedelta(seconds=8), due=hour),
        await pending(database, to, shop=OTHER_SHOP, seq=AT - dt.timedelta(seconds=8), due=hour),
        await pending(database, to, seq=AT - dt.timedelta(seconds=7), due=hour, lease=ObjectId()),
        await pending(database, to, seq=AT - dt.timedelta(seconds=7), due=hour, status="FAILED"),
    ]
    # Stored out of order: the earlier event is the one woken, not the first stored.
    third = await pending(database, to, seq=AT - dt.timedelta(seconds=4), due=hour)
    second = await pending(database, to, seq=AT - dt.timedelta(seconds=5), due=hour)
    sender = worker()
    await sender.deliver_one()
    assert receiving.ids() == [msg_id(first)]
    assert await stored(database, second, "nextAttemptAt", "waiters") == {
        "nextAttemptAt": AT,
        "waiters": True,
    }
    assert await stored(database, third, "nextAttemptAt", "waiters") == {
        "nextAttemptAt": hour,
        "waiters": MISSING,
    }
    for doc in untouched:
        assert await stored(database, doc, "nextAttemptAt", "waiters") == {
            "nextAttemptAt": hour,
            "waiters": MISSING,
        }
    assert sender._wake.is_set()


@pytest.mark.parametrize("answer", [200, "refused", "disabled"])
async def test_an_event_that_ends_in_any_way_wakes_the_one_waiting_for_it(
    database: Any, worker: Any, receiving: Endpoint, dns: dict[str, list[str]], answer: Any
):
    if answer == "refused":
        dns["hooks.example.com"] = ["10.0.0.1"]
    to = await endpoint(database, enabled=answer != "disabled")
    await pending(database, to, seq=AT - dt.timedelta(seconds=9), waiters=True)
    second = await pending(database, to, seq=AT - dt.timedelta(seconds=5), due=AT + MS)
    await worker().deliver_one()
    assert await stored(database, second, "nextAttemptAt") == {"nextAttemptAt": AT}


async def test_of_two_at_the_same_moment_the_first_recorded_is_woken(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    await pending(database, to, seq=AT - dt.timedelta(seconds=9), waiters=True)
    hour = AT + dt.timedelta(hours=1)
    second = await pending(database, to, _id=ObjectId("0000000000000000000000f2"), due=hour)
    first = await pending(database, to, _id=ObjectId("0000000000000000000000f1"), due=hour)
    await worker().deliver_one()
    assert await stored(database, first, "nextAttemptAt") == {"nextAttemptAt": AT}
    assert await stored(database, second, "nextAttemptAt") == {"nextAttemptAt": hour}


async def test_an_event_nobody_waits_for_wakes_nothing(
    database: Any, worker: Any, receiving: Endpoint
):
    to = await endpoint(database)
    await pending(database, to, seq=AT - dt.timedelta(seconds=9))
    hour = AT + dt.timedelta(hours=1)
    later = await pending(database, to, seq=AT - dt.timedelta(seconds=5), due=hour)
    sender = worker()
    await sender.deliver_one()
    assert await stored(database, later, "nextAttemptAt") == {"nextAttemptAt": hour}
    assert not sender._wake.is_set()
    # Waited for, but nothing left to wake.
    lone = await pending(database, to, contact=BOB, waiters=True)
    await sender.deliver_one()
    assert receiving.ids()[-1] == msg_id(lone)
    assert not sender._wake.is_set()


# -- when an idle worker looks again -------------------------------------------------


@pytest.mark.parametrize(
    ("due", "poll", "seconds"),
    [
        (None, 2.0, 2.0),
        (dt.timedelta(milliseconds=500), 2.0, 0.5),
        (dt.timedelta(seconds=3), 2.0, 2.0),
        (dt.timedelta(seconds=3), 5.0, 3.0),
        (dt.timedelta(0), 2.0, 0.01),
        (-dt.timedelta(minutes=1), 2.0, 0.01),
    ],
)
async def test_an_idle_worker_looks_again_when_the_next_is_due_or_after_one_poll(
    database: Any, worker: Any, due: dt.timedelta | None, poll: float, seconds: float
):
    to = await endpoint(database)
    if due is not None:
        # The soonest counts; a finished one does not.
        await pending(database, to, due=AT + due + dt.timedelta(minutes=2))
        await pending(database, to, due=AT + due)
        await pending(database, to, due=AT - dt.timedelta(hours=1), status="DELIVERED")
    assert await worker(poll_seconds=poll)._idle_seconds() == seconds


async def test_the_default_poll_is_two_seconds(database: Any):
    assert await EventDelivery(database)._idle_seconds() == 2.0


async def test_a_pending_delivery_without_a_due_time_does_not_stop_the_worker(
    database: Any, worker: Any
):
    await pending(database, await endpoint(database), due=None)
    assert await worker(poll_seconds=1.5)._idle_seconds() == 1.5


async def test_by_default_plain_http_to_localhost_is_refused_at_delivery(
    database: Any, receiving: Endpoint, dns: Any
):
    doc = await pending(database, await endpoint(database, "http://127.0.0.1:9000/in"))
    sender = EventDelivery(database)
    sender._client = httpx.AsyncClient(transport=httpx.MockTransport(receiving.handle))
    try:
        await sender.deliver_one()
    finally:
        await sender._client.aclose()
    assert receiving.requests == []
    assert await stored(database, doc, "status", "lastError") == {
        "status": "FAILED",
        "lastError": "Refused: the URL is not allowed by this server's settings.",
    }


# -- the background workers, against a real receiver ---------------------------------


@pytest.fixture
def receiver() -> Any:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def silent() -> Any:
    """A port that takes connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    yield listener.getsockname()[1]
    listener.close()


async def eventually(condition: Callable[[], Awaitable[Any]], seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def statuses(database: Any) -> list[str]:
    docs = await database.webhook_deliveries.find({}, sort=[("_id", 1)]).to_list()
    return [doc["status"] for doc in docs]


@pytest.fixture
async def workers(database: Any) -> AsyncIterator[Callable[..., EventDelivery]]:
    made: list[EventDelivery] = []

    def make(policy: DeliveryPolicy | None = None, **options: Any) -> EventDelivery:
        options.setdefault("allow_insecure", True)
        delivery = EventDelivery(database, policy, **options)
        made.append(delivery)
        return delivery

    yield make
    for delivery in made:
        await delivery.stop(grace=0.1)


async def test_workers_deliver_everything_due_and_stop_when_told(
    database: Any, workers: Any, receiver: Receiver
):
    to = await endpoint(database, receiver.url)
    docs = [
        await pending(database, to, contact=ObjectId(), due=AT - (3 - n) * MS) for n in range(3)
    ]
    sender = workers(poll_seconds=30.0, concurrency=1)
    assert not sender.running
    sender.start()
    assert sender.running
    await eventually(lambda: statuses_are(database, ["DELIVERED"] * 3))
    assert [r.webhook_id for r in receiver.all()] == [msg_id(d) for d in docs]
    assert {r.headers["user-agent"] for r in receiver.all()} == {"contactgraph-webhooks"}
    assert all(r.verifies_with(show_secret(KEY)) for r in receiver.all())
    started = time.monotonic()
    await sender.stop()
    assert time.monotonic() - started < 4.0  # idle workers stop at once, not after the grace
    assert not sender.running


async def statuses_are(database: Any, expected: list[str]) -> bool:
    return await statuses(database) == expected


async def test_a_new_delivery_goes_at_once_when_the_workers_are_woken(
    database: Any, workers: Any, receiver: Receiver
):
    to = await endpoint(database, receiver.url)
    sender = workers(poll_seconds=30.0, concurrency=1)
    sender.start()
    await asyncio.sleep(0.3)  # idle now, for a poll
    await pending(database, to)
    sender.wake()
    await eventually(lambda: statuses_are(database, ["DELIVERED"]), seconds=3)


async def test_an_idle_worker_asks_the_database_once_per_poll(
    database: Any, workers: Any, receiver: Receiver
):
    sender = workers(poll_seconds=0.2, concurrency=1)
    calls = []
    claim = sender.deliver_one

    async def counted() -> bool:
        calls.append(time.monotonic())
        return await claim()

    sender.deliver_one = counted  # type: ignore[method-assign]
    sender.start()
    sender.wake()
    await asyncio.sleep(1.5)
    # About one look per poll (8 in 1.5 s), not one after another, and not only when woken.
    assert 3 <= len(calls) <= 15


async def test_workers_started_again_after_a_stop_deliver_again(
    database: Any, workers: Any, receiver: Receiver
):
    to = await endpoint(database, receiver.url)
    sender = workers(poll_seconds=0.1, concurrency=1)
    await sender.stop()  # never started: nothing to do
    sender.start()
    await sender.stop()
    await sender.stop()
    await pending(database, to)
    sender.start()
    await eventually(lambda: statuses_are(database, ["DELIVERED"]))


async def test_the_http_client_follows_no_redirect(database: Any, workers: Any, receiver: Receiver):
    to = await endpoint(database, receiver.url)
    doc = await pending(database, to)
    receiver.redirect_to = f"http://127.0.0.1:{receiver.port}/elsewhere"
    workers(poll_seconds=0.1, concurrency=1).start()
    await eventually(lambda: stored_error(database, doc))
    assert [r.path for r in receiver.all()] == ["/hooks"]
    assert await stored(database, doc, "lastError", "lastStatusCode") == {
        "lastError": "HTTP 307",
        "lastStatusCode": 307,
    }


async def stored_error(database: Any, doc: dict[str, Any]) -> Any:
    found = await database.webhook_deliveries.find_one({"_id": doc["_id"]})
    return found and found.get("lastError")


async def test_the_environment_s_proxies_are_not_used(
    database: Any, workers: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
):
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.setenv(name, nowhere)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    to = await endpoint(database, receiver.url)
    await pending(database, to)
    workers(poll_seconds=0.1, concurrency=1).start()
    await eventually(lambda: statuses_are(database, ["DELIVERED"]))


async def test_an_endpoint_that_does_not_answer_in_time_is_tried_again(
    database: Any, workers: Any, silent: int
):
    to = await endpoint(database, f"http://127.0.0.1:{silent}/hooks")
    doc = await pending(database, to)
    workers(DeliveryPolicy(timeout=0.3), poll_seconds=0.1, concurrency=1).start()
    assert await eventually(lambda: stored_error(database, doc), seconds=4) == (
        "No answer within 0.3 s."
    )


async def test_a_worker_carries_on_after_a_database_or_unexpected_error(
    database: Any, workers: Any, receiver: Receiver, caplog: Any
):
    to = await endpoint(database, receiver.url)
    sender = workers(poll_seconds=0.1, concurrency=1)
    claim = sender.deliver_one
    errors: list[Exception] = [PyMongoError("connection refused"), RuntimeError("surprise")]

    async def flaky() -> bool:
        if errors:
            raise errors.pop(0)
        return await claim()

    sender.deliver_one = flaky  # type: ignore[method-assign]
    await pending(database, to)
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        sender.start()
        await eventually(lambda: statuses_are(database, ["DELIVERED"]), seconds=3)
    assert "webhooks: the database is not reachable; trying again" in caplog.messages
    assert "webhooks: unexpected error; carrying on" in caplog.messages
    levels = {r.getMessage(): r.levelname for r in caplog.records}
    assert levels["webhooks: unexpected error; carrying on"] == "ERROR"
    assert levels["webhooks: the database is not reachable; trying again"] == "WARNING"
    assert all(r.exc_info for r in caplog.records if r.getMessage().startswith("webhooks: the"))


async def test_a_stop_waits_five_seconds_for_attempts_under_way_then_gives_back_their_claims(
    database: Any, workers: Any, silent: int, monkeypatch: pytest.MonkeyPatch
):
    # How long the stop waits, read from the wait itself: a busy machine stretches the clock.
    waited: list[float | None] = []
    real_wait = asyncio.wait

    async def wait(tasks: Any, **options: Any) -> Any:
        waited.append(options.get("timeout"))
        return await real_wait(tasks, **options)

    monkeypatch.setattr(event_delivery.asyncio, "wait", wait)
    to = await endpoint(database, f"http://127.0.0.1:{silent}/hooks")
    for _ in range(10):
        await pending(database, to, contact=ObjectId())
    sender = workers(DeliveryPolicy(timeout=9.0), poll_seconds=0.1)
    sender.start()
    sender.start()  # already running: no more workers

    async def claimed() -> int:
        return await database.webhook_deliveries.count_documents({"lease": {"$ne": None}})

    await eventually(lambda: claimed_at_least(claimed, 8))
    await asyncio.sleep(0.3)
    assert await claimed() == 8  # eight at once by default
    started = time.monotonic()
    await sender.stop()
    assert time.monotonic() - started >= 4.9
    assert 5.0 in waited
    assert not sender.running
    docs = await database.webhook_deliveries.find({}).to_list()
    assert {(d["status"], d["lease"], d["nextAttemptAt"], d["attempts"]) for d in docs} == {
        ("PENDING", None, AT, 0)
    }


async def test_an_attempt_that_crashed_keeps_its_claim_until_the_lease_ends_even_over_a_stop(
    database: Any, workers: Any
):
    doc = await pending(database, await endpoint(database, "http://127.0.0.1:9/hooks"))
    sender = workers(poll_seconds=30.0, concurrency=1)

    async def crash(delivery: Any, lease: Any) -> None:
        raise RuntimeError("crashed")

    sender._attempt = crash
    with pytest.raises(RuntimeError):
        await sender.deliver_one()
    sender.start()
    await asyncio.sleep(0.1)
    await sender.stop()
    held = await stored(database, doc, "nextAttemptAt", "lease")
    assert held["nextAttemptAt"] == AT + dt.timedelta(seconds=60)
    assert isinstance(held["lease"], ObjectId)


async def claimed_at_least(count: Callable[[], Awaitable[int]], least: int) -> bool:
    return await count() >= least


async def test_a_stop_gives_back_every_claim_it_can_when_the_database_fails_for_one(
    database: Any, receiving: Endpoint, dns: Any
):
    db = racing(database)
    to = await endpoint(database)
    first = await pending(database, to, contact=ANN, due=AT - 2 * MS)
    second = await pending(database, to, contact=BOB, due=AT - MS)
    sender = EventDelivery(db, poll_seconds=30.0, concurrency=2)
    sender.start()
    assert sender._client is not None
    await sender._client.aclose()
    sender._client = httpx.AsyncClient(transport=httpx.MockTransport(receiving.handle))

    async def no_answer() -> None:
        await asyncio.Event().wait()

    receiving.meanwhile = no_answer

    async def both_sent() -> bool:
        return len(receiving.requests) == 2

    await eventually(both_sent)

    async def unreachable() -> None:
        raise PyMongoError("connection refused")

    db.webhook_deliveries.before["update_one"] = [unreachable]
    await sender.stop(grace=0.1)
    assert not sender.running
    # The two claims answer in either order, so either one may be the write that failed.
    states = [await stored(database, doc, "nextAttemptAt", "lease") for doc in (first, second)]
    held = [state for state in states if state["lease"] is not None]
    given_back = [state for state in states if state["lease"] is None]
    assert len(held) == 1
    assert held[0]["nextAttemptAt"] == AT + dt.timedelta(seconds=60)
    assert isinstance(held[0]["lease"], ObjectId)
    assert given_back == [{"nextAttemptAt": AT, "lease": None}]


async def test_a_stop_closes_the_connections_kept_open_to_the_endpoints(
    database: Any, workers: Any
):
    closed = asyncio.Event()

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client closes the connection
        closed.set()
        writer.close()

    server = await asyncio.start_server(keep_alive, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        await pending(database, await endpoint(database, f"http://127.0.0.1:{port}/hooks"))
        sender = workers(poll_seconds=30.0, concurrency=1)
        sender.start()
        await eventually(lambda: statuses_are(database, ["DELIVERED"]))
        await asyncio.sleep(0.2)
        assert not closed.is_set()  # kept for the next delivery
        await sender.stop()
        await asyncio.wait_for(closed.wait(), 3)
    finally:
        server.close()
        await server.wait_closed()
