"""Managing webhook endpoints: ADMIN only, URLs and event types checked, secrets shown once.

Through the app over HTTP (the server's default rule: https:// only); the
deliveries themselves are tests/test_outbound_events.py's.
"""

from __future__ import annotations

import base64

import pytest
from bson import ObjectId

from graph.types.node import encode_id
from resolvers.webhook_endpoints import MAX_ENDPOINTS

CREATE = """
mutation($url: String!, $events: [EventType!]!) {
  webhookEndpointCreate(url: $url, events: $events) {
    webhookEndpoint { id url events enabled createdAt lastDeliveryAt lastError failingSince }
    secret
    userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $url: String, $events: [EventType!], $enabled: Boolean) {
  webhookEndpointUpdate(id: $id, url: $url, events: $events, enabled: $enabled) {
    webhookEndpoint { id url events enabled }
    secret
    userErrors { field message code }
  }
}
"""
ROTATE = """
mutation($id: ID!) {
  webhookEndpointRotateSecret(id: $id) { webhookEndpoint { id } secret userErrors { field code } }
}
"""
DELETE = """
mutation($id: ID!) {
  webhookEndpointDelete(id: $id) { webhookEndpoint { id url } secret userErrors { field code } }
}
"""
LIST = "{ webhookEndpoints { id url events enabled } }"
DELIVERIES = """
query($id: ID!, $first: Int) { webhookDeliveries(endpointId: $id, first: $first) { id event status } }
"""
NODE = "query($id: ID!) { node(id: $id) { id ... on WebhookEndpoint { url } } }"
CONTACT = 'mutation { contactCreate(input: {email: "ann@example.com"}) { contact { id } } }'
RENAME = """
mutation($id: ID!) { contactUpdate(id: $id, input: {firstName: "Ann"}) { userErrors { code } } }
"""
NAMED = """
mutation($id: ID!, $n: String!) { contactUpdate(id: $id, input: {firstName: $n}) { userErrors { code } } }
"""

URL = "https://hooks.example.com/contactgraph"


async def create(api, url=URL, events=("CONTACT_UPDATED",)) -> dict:
    return (await api.data(CREATE, {"url": url, "events": list(events)}))["webhookEndpointCreate"]


async def test_create_shows_the_secret_once_and_lists_the_endpoint(api) -> None:
    made = await create(api, events=["LABELS_CHANGED", "CONTACT_CREATED", "LABELS_CHANGED"])
    assert made["userErrors"] == []
    endpoint = made["webhookEndpoint"]
    # In the order of EventType, each once.
    assert endpoint["events"] == ["CONTACT_CREATED", "LABELS_CHANGED"]
    assert endpoint["url"] == URL and endpoint["enabled"] is True
    assert endpoint["lastDeliveryAt"] is None and endpoint["failingSince"] is None
    secret = made["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    listed = (await api.data(LIST))["webhookEndpoints"]
    assert listed == [{k: endpoint[k] for k in ("id", "url", "events", "enabled")}]
    # Shown once: updating, listing and reading it never show it again.
    updated = await api.data(UPDATE, {"id": endpoint["id"], "enabled": False})
    assert updated["webhookEndpointUpdate"]["secret"] is None
    assert (await api.data(NODE, {"id": endpoint["id"]}))["node"] == {
        "id": endpoint["id"],
        "url": URL,
    }


async def test_two_endpoints_get_different_secrets(api) -> None:
    first, second = await create(api), await create(api, url=URL + "/2")
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "REQUIRED"),
        ("http://hooks.example.com/x", "INVALID"),
        ("ftp://hooks.example.com/x", "INVALID"),
        ("hooks.example.com/x", "INVALID"),
        ("https://", "INVALID"),
        ("https://user:secret@hooks.example.com/x", "INVALID"),
        ("https://hooks.example.com/x#part", "INVALID"),
        ("https://hooks .example.com/x", "INVALID"),
        ("https://hööks.example.com/x", "INVALID"),
        ("https://-bad-.example.com/x", "INVALID"),
        ("https://10.0.0.1/x", "INVALID"),
        ("https://192.168.1.20/x", "INVALID"),
        ("https://169.254.169.254/x", "INVALID"),
        ("https://127.0.0.1/x", "INVALID"),
        ("https://[::1]/x", "INVALID"),
        ("https://10.1/x", "INVALID"),
        ("http://localhost:8080/x", "INVALID"),
        ("https://hooks.example.com:99999/x", "INVALID"),
        ("https://hooks.example.com/" + "a" * 2_000, "TOO_LONG"),
    ],
)
async def test_a_bad_url_is_refused_and_nothing_is_stored(api, database, url, code) -> None:
    made = await create(api, url=url)
    assert made["webhookEndpoint"] is None and made["secret"] is None
    assert [(e["field"], e["code"]) for e in made["userErrors"]] == [(["url"], code)]
    assert await database.webhook_endpoints.count_documents({}) == 0


async def test_no_event_types_is_refused(api, database) -> None:
    made = await create(api, events=[])
    assert [(e["field"], e["code"]) for e in made["userErrors"]] == [(["events"], "REQUIRED")]
    assert await database.webhook_endpoints.count_documents({}) == 0


async def test_an_unknown_event_type_is_a_request_error(api, database) -> None:
    body = await api.gql(CREATE, {"url": URL, "events": ["CONTACT_TELEPORTED"]})
    assert body["data"] is None
    assert await database.webhook_endpoints.count_documents({}) == 0


async def test_every_problem_is_reported_at_once(api) -> None:
    made = await create(api, url="http://hooks.example.com", events=[])
    assert sorted(e["field"][0] for e in made["userErrors"]) == ["events", "url"]


async def test_a_shop_has_at_most_twenty_endpoints(api, database) -> None:
    for i in range(MAX_ENDPOINTS):
        assert (await create(api, url=f"{URL}/{i}"))["userErrors"] == []
    over = await create(api, url=f"{URL}/over")
    assert [(e["field"], e["code"]) for e in over["userErrors"]] == [(["url"], "LIMIT_EXCEEDED")]
    assert await database.webhook_endpoints.count_documents({}) == MAX_ENDPOINTS


async def test_update_changes_what_is_given_and_checks_it(api, database) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    changed = (
        await api.data(
            UPDATE, {"id": endpoint_id, "url": URL + "/v2", "events": ["CONSENT_CHANGED"]}
        )
    )["webhookEndpointUpdate"]
    assert changed["webhookEndpoint"] == {
        "id": endpoint_id,
        "url": URL + "/v2",
        "events": ["CONSENT_CHANGED"],
        "enabled": True,
    }
    refused = (
        await api.data(UPDATE, {"id": endpoint_id, "url": "http://x.example.com", "events": []})
    )["webhookEndpointUpdate"]
    assert sorted(e["code"] for e in refused["userErrors"]) == ["INVALID", "REQUIRED"]
    stored = await database.webhook_endpoints.find_one({})
    assert stored["url"] == URL + "/v2" and stored["events"] == ["CONSENT_CHANGED"]


async def test_an_endpoint_that_was_disabled_is_enabled_again_without_its_failures(
    api, database
) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    await database.webhook_endpoints.update_one(
        {},
        {
            "$set": {
                "enabled": False,
                "failingSince": ObjectId().generation_time,
                "lastError": "HTTP 500",
            }
        },
    )
    again = (await api.data(UPDATE, {"id": endpoint_id, "enabled": True}))["webhookEndpointUpdate"]
    assert again["webhookEndpoint"]["enabled"] is True
    stored = await database.webhook_endpoints.find_one({})
    assert stored["failingSince"] is None and stored["lastError"] is None


async def test_rotation_gives_a_new_secret_and_keeps_the_old_one_signing_for_a_day(
    api, database
) -> None:
    made = await create(api)
    rotated = (await api.data(ROTATE, {"id": made["webhookEndpoint"]["id"]}))[
        "webhookEndpointRotateSecret"
    ]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    stored = (await database.webhook_endpoints.find_one({}))["secrets"]
    assert [s["expiresAt"] is None for s in stored] == [True, False]
    assert base64.b64encode(stored[1]["key"]).decode() == made["secret"].removeprefix("whsec_")
    window = stored[1]["expiresAt"] - stored[0]["createdAt"]
    assert window.total_seconds() == 86_400


async def test_delete_takes_the_endpoint_and_its_log(api, database) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    contact_id = (await api.data(CONTACT))["contactCreate"]["contact"]["id"]
    await api.data(RENAME, {"id": contact_id})
    [delivery] = (await api.data(DELIVERIES, {"id": endpoint_id}))["webhookDeliveries"]
    assert delivery["event"] == "CONTACT_UPDATED" and delivery["status"] == "PENDING"
    assert delivery["id"].startswith("msg_")
    gone = (await api.data(DELETE, {"id": endpoint_id}))["webhookEndpointDelete"]
    assert gone["webhookEndpoint"]["id"] == endpoint_id and gone["userErrors"] == []
    assert await database.webhook_endpoints.count_documents({}) == 0
    assert await database.webhook_deliveries.count_documents({}) == 0
    again = (await api.data(DELETE, {"id": endpoint_id}))["webhookEndpointDelete"]
    assert [(e["field"], e["code"]) for e in again["userErrors"]] == [(["id"], "NOT_FOUND")]


async def test_a_disabled_endpoint_or_one_not_subscribed_gets_no_delivery(api, database) -> None:
    on = (await create(api, events=["CONTACT_UPDATED"]))["webhookEndpoint"]["id"]
    off = (await create(api, url=URL + "/off"))["webhookEndpoint"]["id"]
    other = (await create(api, url=URL + "/other", events=["LABELS_CHANGED"]))["webhookEndpoint"][
        "id"
    ]
    await api.data(UPDATE, {"id": off, "enabled": False})
    contact_id = (await api.data(CONTACT))["contactCreate"]["contact"]["id"]
    await api.data(RENAME, {"id": contact_id})
    for endpoint_id, count in ((on, 1), (off, 0), (other, 0)):
        log = (await api.data(DELIVERIES, {"id": endpoint_id}))["webhookDeliveries"]
        assert len(log) == count


async def test_the_delivery_log_is_newest_first_and_paged_by_first(api) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    contact_id = (await api.data(CONTACT))["contactCreate"]["contact"]["id"]
    for name in ("A", "B", "C"):
        await api.data(NAMED, {"id": contact_id, "n": name})
    log = (await api.data(DELIVERIES, {"id": endpoint_id, "first": 2}))["webhookDeliveries"]
    everything = (await api.data(DELIVERIES, {"id": endpoint_id}))["webhookDeliveries"]
    assert len(everything) == 3 and log == everything[:2]
    assert everything == sorted(everything, key=lambda d: d["id"], reverse=True)
    for first in (0, 251):
        body = await api.gql(DELIVERIES, {"id": endpoint_id, "first": first})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "bad_id",
    ["nope", encode_id("Contact", ObjectId()), encode_id("WebhookEndpoint", ObjectId())],
    ids=["not-an-id", "another-type", "unknown-endpoint"],
)
async def test_unknown_ids_are_not_found_and_change_nothing(api, database, bad_id) -> None:
    kept = (await create(api))["webhookEndpoint"]
    for query, name, variables in (
        (UPDATE, "webhookEndpointUpdate", {"id": bad_id, "enabled": False}),
        (ROTATE, "webhookEndpointRotateSecret", {"id": bad_id}),
        (DELETE, "webhookEndpointDelete", {"id": bad_id}),
    ):
        payload = (await api.data(query, variables))[name]
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["id"], "NOT_FOUND")]
        assert payload["secret"] is None
    assert (await api.data(DELIVERIES, {"id": bad_id}))["webhookDeliveries"] == []
    stored = await database.webhook_endpoints.find_one({})
    assert stored["enabled"] is True and len(stored["secrets"]) == 1
    assert kept["id"] == encode_id("WebhookEndpoint", stored["_id"])


async def test_another_shops_endpoint_is_not_found(api, as_role, database) -> None:
    theirs = (await create(as_role("OTHER")))["webhookEndpoint"]["id"]
    assert (await api.data(LIST))["webhookEndpoints"] == []
    assert (await api.data(NODE, {"id": theirs}))["node"] is None
    payload = (await api.data(DELETE, {"id": theirs}))["webhookEndpointDelete"]
    assert payload["userErrors"][0]["code"] == "NOT_FOUND"
    assert await database.webhook_endpoints.count_documents({}) == 1


@pytest.mark.parametrize("role", ["STAFF", "READER", "INGEST", "PUBLIC"])
async def test_only_admin_keys_manage_endpoints(api, as_role, database, role) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    key = as_role(role)
    for query, variables in (
        (LIST, {}),
        (DELIVERIES, {"id": endpoint_id}),
        (CREATE, {"url": URL + "/x", "events": ["CONTACT_UPDATED"]}),
        (UPDATE, {"id": endpoint_id, "enabled": False}),
        (ROTATE, {"id": endpoint_id}),
        (DELETE, {"id": endpoint_id}),
    ):
        body = await key.gql(query, variables)
        assert body["data"] is None, query
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    stored = await database.webhook_endpoints.find_one({})
    assert await database.webhook_endpoints.count_documents({}) == 1
    assert stored["enabled"] is True and len(stored["secrets"]) == 1


async def test_node_hides_endpoints_from_keys_that_may_read_contacts(api, as_role) -> None:
    endpoint_id = (await create(api))["webhookEndpoint"]["id"]
    for role in ("STAFF", "READER"):
        assert (await as_role(role).data(NODE, {"id": endpoint_id}))["node"] is None
