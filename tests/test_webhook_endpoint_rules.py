"""The rules of webhook endpoints, checked to the edge: URLs, event types, secrets and signatures.

tests/test_webhook_endpoints.py manages endpoints through the API; these pin
the rules themselves, most without a database: each URL problem's message and
code, which addresses count as public, how a secret signs during a rotation;
the last ones call the stored-endpoint functions directly, at a fixed time,
for what the API cannot show (rotation windows, list order, retries).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from typing import Any

import pytest
from bson import ObjectId

from resolvers import webhook_endpoints
from resolvers.errors import Problem, Refused
from resolvers.events import EVENT_TYPES
from resolvers.webhook_endpoints import (
    check_events,
    check_url,
    is_local_host,
    is_public_address,
    new_secret,
    show_secret,
    sign,
    signing_keys,
)

FIELD = ("url",)
NOT_HTTPS = "The URL must start with https:// (events carry personal data)."
NOT_PUBLIC = "The URL must not point at a private, loopback or link-local address."
BAD_HOST = "The URL's host is not a valid host name."
NOT_PLAIN = "The URL must be plain ASCII without spaces (punycode for other names)."


def problems(url: Any, *, allow_insecure: bool = False) -> list[tuple[Any, str, str]]:
    return [
        (p.field, p.message, p.code) for p in check_url(FIELD, url, allow_insecure=allow_insecure)
    ]


def invalid(message: str) -> list[tuple[Any, str, str]]:
    return [(FIELD, message, "INVALID")]


# --- URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/contactgraph",
        "HTTPS://hooks.example.com/X",  # the scheme in any case; an upper-case path
        "https://hooks.example.com./x",  # a fully qualified name
        "https://hooks.example.com:1/x",
        "https://hooks.example.com:65535/x",
        "https://hooks.example.com/x#",  # an empty fragment is no fragment
        "https://1.example.com/x",  # digits are fine but in the last label
        "https://8.8.8.8/x",
        "https://[2001:4860::8888]/x",
        "https://localhost/x",  # a name: its address is checked at delivery
        "https://hooks.example.com/?q=" + "a" * (2_000 - 31),
    ],
)
def test_a_usable_url_has_no_problems(url):
    assert problems(url) == []


def test_a_url_may_be_2000_characters_long_but_not_more():
    url = "https://hooks.example.com/" + "a" * (2_000 - 26)
    assert len(url) == 2_000 and problems(url) == []
    assert problems(url + "a") == [(FIELD, "A URL is at most 2000 characters.", "TOO_LONG")]


@pytest.mark.parametrize("url", [None, "", 42, ["https://hooks.example.com"]])
def test_a_missing_url_is_required(url):
    assert problems(url) == [(FIELD, "Give the endpoint's URL.", "REQUIRED")]


def test_the_field_is_the_one_given():
    assert check_url(("input", "url"), "ftp://x.example.com", allow_insecure=False) == [
        Problem(("input", "url"), "The URL must start with https://.", "INVALID")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://hööks.example.com/x",
        "https://hooks.example.com/\tx",
        "https://hooks.example.com/\x7f",
        *(f"https://hooks.example.com/a{c}b" for c in ' <>"\\{}|^`'),
    ],
)
def test_a_url_is_plain_ascii_without_spaces(url):
    assert problems(url) == invalid(NOT_PLAIN)


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/x",
        "https://hooks.example.com:99999/x",
        "https://hooks.example.com:port/x",
    ],
)
def test_what_cannot_be_read_as_a_url_is_not_a_url(url):
    assert problems(url) == invalid("This is not a URL.")


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com/x", "//h.com"])
def test_only_web_urls_are_accepted(url):
    assert problems(url) == invalid("The URL must start with https://.")


@pytest.mark.parametrize("url", ["https:///x", "https://:443/x", "https://"])
def test_a_url_names_a_host(url):
    assert problems(url) == invalid("The URL must name a host.")


@pytest.mark.parametrize(
    "url",
    [
        "https://user@hooks.example.com/x",
        "https://:secret@hooks.example.com/x",
        "https://user:secret@hooks.example.com/x",
    ],
)
def test_a_url_carries_no_credentials(url):
    assert problems(url) == invalid(
        "The URL must not carry a user name or password; the signature proves the sender."
    )


def test_a_url_has_no_fragment():
    assert problems("https://hooks.example.com/x#part") == invalid(
        "The URL must not have a #fragment."
    )


def test_port_zero_is_refused():
    assert problems("https://hooks.example.com:0/x") == invalid("The URL's port must be 1-65535.")


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/x", "http://localhost:8080/x", "http://127.0.0.1/x"]
)
def test_plain_http_is_refused_by_default(url):
    assert problems(url) == invalid(NOT_HTTPS)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/x",
        "http://LOCALHOST/x",
        "http://127.0.0.1:8080/x",
        "http://[::1]:8080/x",
        "https://127.0.0.1/x",
        "https://[::1]/x",
    ],
)
def test_a_server_allowing_insecure_webhooks_accepts_localhost(url):
    assert problems(url, allow_insecure=True) == []


@pytest.mark.parametrize("url", ["http://hooks.example.com/x", "http://10.0.0.1/x"])
def test_insecure_webhooks_are_plain_http_to_localhost_only(url):
    assert problems(url, allow_insecure=True) == invalid(NOT_HTTPS)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/x",
        "https://192.168.1.20/x",
        "https://169.254.169.254/x",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://224.0.0.1/x",
        "https://0.0.0.0/x",
    ],
)
def test_a_literal_non_public_address_is_refused(url):
    assert problems(url) == invalid(NOT_PUBLIC)


def test_an_allowed_localhost_does_not_open_other_private_addresses():
    assert problems("https://10.0.0.1/x", allow_insecure=True) == invalid(NOT_PUBLIC)


@pytest.mark.parametrize(
    "url",
    [
        "https://-bad-.example.com/x",
        "https://hooks..example.com/x",
        "https://hooks_1.example.com/x",
        "https://10.1/x",  # a partial address, not a name
        "https://example.123/x",
        "https://10.0.0.1.2/x",
        "https://" + "a" * 64 + ".example.com/x",
    ],
)
def test_a_host_is_a_valid_name(url):
    assert problems(url) == invalid(BAD_HOST)


def test_a_host_name_has_up_to_253_characters_and_labels_up_to_63():
    labels = ["a" * 63, "b" * 63, "c" * 63]
    longest = ".".join([*labels, "d" * 61])
    assert len(longest) == 253
    assert problems(f"https://{longest}/x") == []
    assert problems(f"https://{longest}d/x") == invalid(BAD_HOST)


def test_a_digit_only_label_is_fine_before_the_last():
    assert problems("https://123.com/x") == []


# --- addresses


@pytest.mark.parametrize("address", ["8.8.8.8", "192.0.0.9", "2001:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "240.0.0.1",
        "224.0.0.1",  # multicast
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff0e::1",  # multicast
        "64:ff9b::808:808",  # reserved
        "::ffff:10.0.0.1",
        "::ffff:224.0.0.1",  # a mapped multicast address
    ],
)
def test_non_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "::1", "[::1]"])
def test_local_hosts(host):
    assert is_local_host(host) is True


@pytest.mark.parametrize(
    "host", ["localhost.example.com", "127.0.0.2", "0.0.0.0", "::2", "example.com"]
)
def test_other_hosts_are_not_local(host):
    assert is_local_host(host) is False


# --- event types


@pytest.mark.parametrize("events", [None, [], ()])
def test_at_least_one_event_type(events):
    assert check_events(("events",), events) == (
        [],
        [Problem(("events",), "Subscribe to at least one event type.", "REQUIRED")],
    )


def test_event_types_are_kept_in_their_own_order_each_once():
    chosen, problems_found = check_events(
        ("events",), ["LABELS_CHANGED", "CONTACT_CREATED", "LABELS_CHANGED"]
    )
    assert (chosen, problems_found) == (["CONTACT_CREATED", "LABELS_CHANGED"], [])


def test_every_event_type_may_be_chosen():
    assert check_events(("events",), list(reversed(EVENT_TYPES))) == (list(EVENT_TYPES), [])


def test_each_unknown_event_type_is_named_at_its_place():
    chosen, found = check_events(
        ("input", "events"), ["CONTACT_UPDATED", "CONTACT_TELEPORTED", "contact_created"]
    )
    assert chosen == ["CONTACT_UPDATED"]
    assert found == [
        Problem(("input", "events", 1), "Unknown event type 'CONTACT_TELEPORTED'.", "INVALID"),
        Problem(("input", "events", 2), "Unknown event type 'contact_created'.", "INVALID"),
    ]


# --- secrets and signatures


def test_a_new_secret_is_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert (type(first), len(first), len(second)) == (bytes, 32, 32)
    assert first != second


def test_a_secret_is_shown_as_whsec_and_base64():
    assert (
        show_secret(b"\x00\x01\xfe\xff" * 8) == "whsec_AAH+/wAB/v8AAf7/AAH+/wAB/v8AAf7/AAH+/wAB/v8="
    )


def test_a_signature_matches_the_standard_webhooks_example():
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
AT = dt.datetime(2126, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_the_current_secret_and_those_in_their_rotation_window_sign():
    endpoint = {
        "secrets": [
            {"key": b"new", "createdAt": AT, "expiresAt": None},
            {"key": b"recent", "expiresAt": AT + dt.timedelta(milliseconds=1)},
            {"key": b"just-expired", "expiresAt": AT},
            {"key": b"old", "expiresAt": AT - dt.timedelta(days=1)},
            {"key": b"unset"},
        ]
    }
    assert signing_keys(endpoint, AT) == [b"new", b"recent", b"unset"]


def test_a_key_stored_as_binary_signs_as_bytes():
    [key] = signing_keys({"secrets": [{"key": bytearray(b"k"), "expiresAt": None}]}, AT)
    assert type(key) is bytes and key == b"k"


@pytest.mark.parametrize("endpoint", [{}, {"secrets": None}, {"secrets": []}])
def test_an_endpoint_without_secrets_signs_with_none(endpoint):
    assert signing_keys(endpoint, AT) == []


# --- stored endpoints (these need the database)

URL = "https://hooks.example.com/contactgraph"
SHOP = "rules-shop"
GONE = Problem(("id",), "Webhook endpoint not found.", "NOT_FOUND")


def at_time(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime) -> None:
    monkeypatch.setattr(webhook_endpoints, "now", lambda: moment)


async def not_found_by(call: Any) -> list[Problem]:
    with pytest.raises(Refused) as refusal:
        await call
    return refusal.value.problems


async def retried_once(database: Any, work: Any) -> Any:
    """As a transaction that failed once and ran again: the first attempt's writes are undone."""
    async with database.client.start_session() as session:
        await session.start_transaction()
        await work(session)
        await session.abort_transaction()
        return await session.with_transaction(work)


async def test_rotations_keep_the_earliest_end_of_each_old_secret(database, monkeypatch):
    at_time(monkeypatch, AT)
    doc, first = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )

    rotated, second = await webhook_endpoints.rotate_secret(
        database, SHOP, doc["_id"], overlap_seconds=3_600
    )
    assert rotated == await database.webhook_endpoints.find_one({"_id": doc["_id"]})
    assert [
        (show_secret(s["key"]), s["createdAt"], s["expiresAt"]) for s in rotated["secrets"]
    ] == [
        (second, AT, None),
        (first, AT, AT + dt.timedelta(hours=1)),
    ]
    assert rotated["updatedAt"] == AT

    later = AT + dt.timedelta(seconds=10)
    in_a_minute = later + dt.timedelta(minutes=1)
    at_time(monkeypatch, later)
    shorter, third = await webhook_endpoints.rotate_secret(
        database, SHOP, doc["_id"], overlap_seconds=60
    )
    assert [(show_secret(s["key"]), s["expiresAt"]) for s in shorter["secrets"]] == [
        (third, None),
        (second, in_a_minute),  # an hour was left: the new window is shorter
        (first, in_a_minute),
    ]
    assert shorter["updatedAt"] == later

    longer, fourth = await webhook_endpoints.rotate_secret(
        database, SHOP, doc["_id"], overlap_seconds=86_400
    )
    assert [(show_secret(s["key"]), s["expiresAt"]) for s in longer["secrets"]] == [
        (fourth, None),
        (third, later + dt.timedelta(days=1)),
        (second, in_a_minute),  # a longer window does not reopen them
        (first, in_a_minute),
    ]


async def test_a_rotation_drops_secrets_whose_window_has_closed(database, monkeypatch):
    at_time(monkeypatch, AT)
    doc, current = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    old = [
        {"key": b"closing-now", "createdAt": AT, "expiresAt": AT},
        {"key": b"still-open", "createdAt": AT, "expiresAt": AT + dt.timedelta(seconds=1)},
    ]
    await database.webhook_endpoints.update_one({}, {"$push": {"secrets": {"$each": old}}})

    rotated, _ = await webhook_endpoints.rotate_secret(
        database, SHOP, doc["_id"], overlap_seconds=60
    )

    assert [(s["key"], s["expiresAt"]) for s in rotated["secrets"][1:]] == [
        (base64.b64decode(current.removeprefix("whsec_")), AT + dt.timedelta(minutes=1)),
        (b"still-open", AT + dt.timedelta(seconds=1)),
    ]


async def test_a_rotation_that_keeps_losing_the_race_gives_up_after_ten_tries(
    database, monkeypatch
):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    reads = []

    async def stale(*args: Any) -> dict:
        reads.append(args)
        return {**doc, "secrets": []}  # never what is stored: every write misses

    monkeypatch.setattr(webhook_endpoints, "find_endpoint", stale)
    with pytest.raises(RuntimeError) as failure:
        await webhook_endpoints.rotate_secret(database, SHOP, doc["_id"], overlap_seconds=60)
    assert str(failure.value) == "the endpoint's secrets kept changing while they were rotated"
    assert len(reads) == 10
    assert len((await database.webhook_endpoints.find_one({}))["secrets"]) == 1


async def test_unknown_endpoints_are_not_found_by_name(database):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    for endpoint_id in (None, ObjectId()):
        assert await not_found_by(
            webhook_endpoints.rotate_secret(database, SHOP, endpoint_id, overlap_seconds=60)
        ) == [GONE]
        assert await not_found_by(
            webhook_endpoints.delete_endpoint(database, SHOP, endpoint_id)
        ) == [GONE]
        assert await not_found_by(
            webhook_endpoints.update_endpoint(
                database, SHOP, endpoint_id, enabled=False, allow_insecure=False
            )
        ) == [GONE]
    for call in (
        webhook_endpoints.rotate_secret(database, "other", doc["_id"], overlap_seconds=60),
        webhook_endpoints.delete_endpoint(database, "other", doc["_id"]),
        webhook_endpoints.update_endpoint(
            database, "other", doc["_id"], enabled=False, allow_insecure=False
        ),
    ):
        assert await not_found_by(call) == [GONE]
    assert await database.webhook_endpoints.find_one({}) == doc


async def failed(database: Any, work: Any) -> Any:
    """As a transaction that gave up: whatever it wrote is undone."""
    async with database.client.start_session() as session:
        await session.start_transaction()
        await work(session)
        await session.abort_transaction()
    raise RuntimeError("the transaction gave up")


async def test_a_failed_deletion_keeps_the_endpoint_and_its_log(database, monkeypatch):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    await database.webhook_deliveries.insert_one({"shopId": SHOP, "endpointId": doc["_id"]})
    monkeypatch.setattr(webhook_endpoints.activity, "in_transaction", failed)

    with pytest.raises(RuntimeError):
        await webhook_endpoints.delete_endpoint(database, SHOP, doc["_id"])
    assert await database.webhook_endpoints.find({}).to_list() == [doc]
    assert await database.webhook_deliveries.count_documents({}) == 1


async def test_endpoints_are_listed_oldest_first_and_ties_by_id(database):
    early, late = AT - dt.timedelta(days=1), AT
    ids = [ObjectId(f"{n:024x}") for n in (3, 1, 2, 4)]
    await database.webhook_endpoints.insert_many(
        [
            {"_id": ids[0], "shopId": SHOP, "createdAt": late},
            {"_id": ids[1], "shopId": SHOP, "createdAt": late},
            {"_id": ids[2], "shopId": SHOP, "createdAt": early},
            {"_id": ids[3], "shopId": "other", "createdAt": early},
        ]
    )

    listed = await webhook_endpoints.list_endpoints(database, SHOP)

    assert [d["_id"] for d in listed] == [ids[2], ids[1], ids[0]]


async def test_a_retried_deletion_still_answers_with_the_endpoint(database, monkeypatch):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    await database.webhook_deliveries.insert_one({"shopId": SHOP, "endpointId": doc["_id"]})
    monkeypatch.setattr(webhook_endpoints.activity, "in_transaction", retried_once)

    assert await webhook_endpoints.delete_endpoint(database, SHOP, doc["_id"]) == doc
    assert await database.webhook_endpoints.count_documents({}) == 0
    assert await database.webhook_deliveries.count_documents({}) == 0


async def test_a_new_endpoint_is_stored_with_its_one_secret(database, monkeypatch):
    at_time(monkeypatch, AT)

    doc, secret = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["LABELS_CHANGED", "CONTACT_CREATED"], allow_insecure=False
    )

    stored = await database.webhook_endpoints.find_one({})
    assert stored == doc
    key = doc["secrets"][0]["key"]
    assert {k: v for k, v in doc.items() if k != "_id"} == {
        "shopId": SHOP,
        "url": URL,
        "events": ["CONTACT_CREATED", "LABELS_CHANGED"],
        "enabled": True,
        "createdAt": AT,
        "updatedAt": AT,
        "secrets": [{"key": key, "createdAt": AT, "expiresAt": None}],
        "lastDeliveryAt": None,
        "lastError": None,
        "failingSince": None,
    }
    assert secret == show_secret(key) and len(key) == 32


async def test_a_new_endpoint_with_bad_input_names_every_problem_and_stores_nothing(database):
    with pytest.raises(Refused) as refusal:
        await webhook_endpoints.create_endpoint(
            database, SHOP, "http://hooks.example.com", ["NOPE"], allow_insecure=False
        )

    assert refusal.value.problems == [
        Problem(("url",), NOT_HTTPS, "INVALID"),
        Problem(("events", 0), "Unknown event type 'NOPE'.", "INVALID"),
    ]
    assert await database.webhook_endpoints.count_documents({}) == 0


async def test_a_server_allowing_insecure_webhooks_stores_a_localhost_endpoint(database):
    local = "http://localhost:8080/hook"
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, local, ["CONTACT_UPDATED"], allow_insecure=True
    )
    changed = await webhook_endpoints.update_endpoint(
        database, SHOP, doc["_id"], url=local + "/2", allow_insecure=True
    )
    assert changed["url"] == local + "/2"


async def test_the_twenty_first_endpoint_of_a_shop_is_refused(database):
    for n in range(20):
        await webhook_endpoints.create_endpoint(
            database, SHOP, f"{URL}/{n}", ["CONTACT_UPDATED"], allow_insecure=False
        )
    await webhook_endpoints.create_endpoint(
        database, "other", URL, ["CONTACT_UPDATED"], allow_insecure=False
    )

    with pytest.raises(Refused) as refusal:
        await webhook_endpoints.create_endpoint(
            database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
        )

    assert refusal.value.problems == [
        Problem(("url",), "A shop has at most 20 webhook endpoints.", "LIMIT_EXCEEDED")
    ]
    assert await database.webhook_endpoints.count_documents({"shopId": SHOP}) == 20


async def test_a_retried_creation_stores_the_endpoint_once(database, monkeypatch):
    await database.shops.insert_one({"_id": SHOP})
    monkeypatch.setattr(webhook_endpoints.activity, "in_transaction", retried_once)

    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )

    assert await database.webhook_endpoints.find({}).to_list() == [doc]
    assert (await database.shops.find_one({"_id": SHOP}))["webhookEndpointWrites"] == 1


async def test_an_update_changes_what_is_given(database, monkeypatch):
    at_time(monkeypatch, AT)
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    later = AT + dt.timedelta(minutes=1)
    at_time(monkeypatch, later)

    changed = await webhook_endpoints.update_endpoint(
        database,
        SHOP,
        doc["_id"],
        url=URL + "/v2",
        events=["CONSENT_CHANGED", "CONTACT_CREATED"],
        allow_insecure=False,
    )

    assert changed == await database.webhook_endpoints.find_one({})
    assert changed == {
        **doc,
        "url": URL + "/v2",
        "events": ["CONTACT_CREATED", "CONSENT_CHANGED"],
        "updatedAt": later,
    }


async def test_an_update_with_bad_input_names_every_problem_and_changes_nothing(database):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    with pytest.raises(Refused) as refusal:
        await webhook_endpoints.update_endpoint(
            database,
            SHOP,
            doc["_id"],
            url="http://localhost:8080",
            events=[],
            enabled=False,
            allow_insecure=False,
        )

    assert refusal.value.problems == [
        Problem(("url",), NOT_HTTPS, "INVALID"),
        Problem(("events",), "Subscribe to at least one event type.", "REQUIRED"),
    ]
    assert await database.webhook_endpoints.find_one({}) == doc


async def test_disabling_keeps_the_failures_and_enabling_forgets_them(database, monkeypatch):
    at_time(monkeypatch, AT)
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    failing = {"failingSince": AT, "lastError": "HTTP 500"}
    await database.webhook_endpoints.update_one({}, {"$set": failing})

    off = await webhook_endpoints.update_endpoint(
        database, SHOP, doc["_id"], enabled=False, allow_insecure=False
    )
    assert off == {**doc, **failing, "enabled": False}

    on = await webhook_endpoints.update_endpoint(
        database, SHOP, doc["_id"], enabled=True, allow_insecure=False
    )
    assert on == {**doc, "enabled": True, "failingSince": None, "lastError": None}


async def test_an_endpoint_is_found_only_in_its_own_shop(database):
    doc, _ = await webhook_endpoints.create_endpoint(
        database, SHOP, URL, ["CONTACT_UPDATED"], allow_insecure=False
    )
    assert await webhook_endpoints.find_endpoint(database, SHOP, doc["_id"]) == doc
    assert await webhook_endpoints.find_endpoint(database, "other", doc["_id"]) is None
    assert await webhook_endpoints.find_endpoint(database, SHOP, None) is None


async def test_the_delivery_log_is_newest_first_without_bodies(database):
    endpoint_id, other_id = ObjectId(), ObjectId()
    ids = [ObjectId(f"{n:024x}") for n in (1, 2, 3, 4, 5, 6)]

    def delivery(n: int, at: dt.datetime, **more: Any) -> dict:
        return {"_id": ids[n], "shopId": SHOP, "endpointId": endpoint_id, "createdAt": at, **more}

    await database.webhook_deliveries.insert_many(
        [
            delivery(0, AT, body="{}"),
            delivery(1, AT, body="{}"),  # the same time: the later id first
            delivery(3, AT - dt.timedelta(hours=1)),
            delivery(2, AT + dt.timedelta(hours=1)),
            delivery(4, AT + dt.timedelta(days=1), endpointId=other_id),
            delivery(5, AT + dt.timedelta(days=1), shopId="other"),
        ]
    )

    log = await webhook_endpoints.list_deliveries(database, SHOP, endpoint_id, 250)
    assert [d["_id"] for d in log] == [ids[2], ids[1], ids[0], ids[3]]
    assert all("body" not in d and d["createdAt"] for d in log)
    first_two = await webhook_endpoints.list_deliveries(database, SHOP, endpoint_id, 2)
    assert [d["_id"] for d in first_two] == [ids[2], ids[1]]
    assert await webhook_endpoints.list_deliveries(database, SHOP, None, 250) == []
