"""The unsubscribe link: only a person (or a mail client's one-click POST) unsubscribes.

Mail scanners and link previews fetch every link they see, so GET and HEAD
show a page and change nothing; POST records UNSUBSCRIBED. A merged-away
contact's link acts on the contact it went into; an erased contact's link
answers a neutral page and stores nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from conftest import SHOP

from graph.types.node import decode_id
from resolvers.messages import make_token, shop_secret

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
CONSENT = """
mutation($id: ID!, $state: MarketingState!) {
  consentUpdate(contactId: $id, state: $state) { userErrors { code } }
}
"""
STATE = "query($id: ID!) { contact(id: $id) { consent { state source history { state source } } } }"
MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) { contact { id } userErrors { code } }
}
"""
ERASE = "mutation($id: ID!) { contactErase(id: $id) { deletedIds userErrors { code } } }"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


async def subscribed(api, email: str) -> str:
    gid = (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]
    assert (await api.data(CONSENT, {"id": gid, "state": "SUBSCRIBED"}))["consentUpdate"] == {
        "userErrors": []
    }
    return gid


async def link(database, contact: str | ObjectId) -> str:
    """The path of the unsubscribe link a marketing e-mail to this contact (id or GraphQL id) carries."""
    secret = await shop_secret(database, SHOP)
    assert secret is not None
    oid = contact if isinstance(contact, ObjectId) else decode_id(contact, "Contact")
    token = make_token(secret, SHOP, oid, dt.datetime.now(dt.UTC))
    return f"/unsubscribe/{token}"


async def consent(api, gid: str) -> dict[str, Any]:
    return (await api.data(STATE, {"id": gid}))["contact"]["consent"]


async def everything(database) -> dict[str, list[dict]]:
    names = sorted(await database.db.list_collection_names())
    return {name: await database.db[name].find({}).sort("_id").to_list() for name in names}


def assert_page_headers(response) -> None:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "script" not in response.text.lower()
    assert "http" not in response.text  # no outside resource, no link away


async def test_opening_the_link_asks_and_changes_nothing(api, http, database):
    gid = await subscribed(api, "reader@example.com")
    path = await link(database, gid)
    oid = decode_id(gid, "Contact")
    before = await database.contacts.find_one({"_id": oid})

    page = await http.get(path)
    head = await http.head(path)
    again = await http.get(path)  # a scanner and then a preview: still nothing

    assert page.status_code == head.status_code == again.status_code == 200
    assert '<form method="post">' in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert "Unsubscribe</button>" in page.text
    assert head.content == b""
    assert_page_headers(page)
    assert head.headers["cache-control"] == "no-store"
    assert await database.contacts.find_one({"_id": oid}) == before
    state = await consent(api, gid)
    assert state["state"] == "SUBSCRIBED" and len(state["history"]) == 1


async def test_the_button_on_the_page_unsubscribes(api, http, database):
    gid = await subscribed(api, "clicker@example.com")
    path = await link(database, gid)

    # Exactly what a browser sends for the page's form.
    response = await http.post(path, data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert "Unsubscribed" in response.text and '<form method="post">' not in response.text
    assert_page_headers(response)
    state = await consent(api, gid)
    assert (state["state"], state["source"]) == ("UNSUBSCRIBED", "UNSUBSCRIBE_LINK")
    # Opened again later: says so, offers no button, records nothing more.
    later = await http.get(path)
    assert later.status_code == 200 and '<form method="post">' not in later.text
    assert "no longer receive marketing e-mail" in later.text
    assert len((await consent(api, gid))["history"]) == 2


async def test_one_click_post_from_a_mail_client_unsubscribes(api, http, database):
    gid = await subscribed(api, "oneclick@example.com")
    path = await link(database, gid)

    response = await http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    repeated = await http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert response.status_code == repeated.status_code == 200
    state = await consent(api, gid)
    assert state["state"] == "UNSUBSCRIBED"
    assert [e["state"] for e in state["history"]] == ["SUBSCRIBED", "UNSUBSCRIBED"]


async def test_a_merged_away_contacts_link_unsubscribes_the_contact_it_went_into(
    api, http, database
):
    kept = await subscribed(api, "kept@example.com")
    first = await subscribed(api, "first.alias@example.com")
    second = await subscribed(api, "second.alias@example.com")
    first_link, second_link = await link(database, first), await link(database, second)
    # Two merges in a row: the first alias went into the second, the second into the kept one.
    for target, source in ((second, first), (kept, second)):
        payload = (await api.data(MERGE, {"target": target, "sources": [source]}))["contactsMerge"]
        assert payload == {"contact": {"id": target}, "userErrors": []}

    page = await http.get(first_link)
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert (await consent(api, kept))["state"] == "SUBSCRIBED"

    response = await http.post(first_link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert response.status_code == 200 and "Unsubscribed" in response.text
    state = await consent(api, kept)
    assert (state["state"], state["source"]) == ("UNSUBSCRIBED", "UNSUBSCRIBE_LINK")
    assert await database.contacts.count_documents({}) == 1
    # The other alias's link finds the same person, already unsubscribed.
    assert (await http.post(second_link)).status_code == 200
    assert [e["state"] for e in (await consent(api, kept))["history"]].count("UNSUBSCRIBED") == 1


async def test_an_erased_contacts_link_answers_a_neutral_page_and_stores_nothing(
    api, http, database
):
    gid = await subscribed(api, "forget.me@example.com")
    path = await link(database, gid)
    unknown = await link(database, ObjectId())
    assert (await api.data(ERASE, {"id": gid}))["contactErase"]["userErrors"] == []
    before = await everything(database)

    answers = [
        await http.get(path),
        await http.head(path),
        await http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK),
        await http.post(unknown, data={"List-Unsubscribe": "One-Click"}),  # genuine, never was
    ]

    assert [r.status_code for r in answers] == [200] * 4
    for response in (answers[0], answers[2], answers[3]):
        assert "You will receive no further e-mail from test-shop." in response.text
        assert '<form method="post">' not in response.text
        assert_page_headers(response)
    assert answers[0].text == answers[2].text == answers[3].text  # nothing tells them apart
    assert await everything(database) == before


async def test_a_forged_or_altered_link_is_a_404_page(api, http, database):
    gid = await subscribed(api, "target@example.com")
    path = await link(database, gid)
    shop, contact_hex, issued, signature = path.removeprefix("/unsubscribe/").split(".")
    forged = [
        f"/unsubscribe/{shop}.{ObjectId()}.{issued}.{signature}",
        f"/unsubscribe/{shop}.{contact_hex}.{issued}.{signature[:-1]}{'B' if signature[-1] == 'A' else 'A'}",
        "/unsubscribe/%3Cscript%3Ealert(1)%3Cscript%3E",
    ]
    for target in forged:
        for method in ("GET", "HEAD", "POST"):
            response = await http.request(method, target)
            assert response.status_code == 404, (method, target)
            assert response.headers["cache-control"] == "no-store"
            if method != "HEAD":
                assert "Link not valid" in response.text and "<script>" not in response.text
    assert (await consent(api, gid))["state"] == "SUBSCRIBED"


async def test_the_page_escapes_the_shops_name(api, http, database):
    gid = await subscribed(api, "escaped@example.com")
    await database.shops.update_one(
        {"_id": SHOP}, {"$set": {"name": '<img src=x onerror="alert(1)"> & Co'}}
    )
    page = await http.get(await link(database, gid))
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Co" in page.text
    assert "<img" not in page.text
