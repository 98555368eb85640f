"""Contact forms: leads, the logged message, PENDING consent, the rate limit, the PUBLIC role."""

from __future__ import annotations

import datetime as dt
import json

import httpx
from conftest import OTHER_SHOP, SHOP, Api

from resolvers import forms as forms_rules
from resolvers.shops import Role, create_key

SUBMIT = """
mutation($input: ContactFormInput!) {
  contactFormSubmit(input: $input) { ok userErrors { field message code } }
}
"""

CONTACT = """
query($email: String!) {
  contactByEmail(email: $email) {
    kind firstName lastName phone
    consent { state optInLevel source history { state source evidence } }
  }
}
"""


def form(email: str = "visitor@example.com", **extra: object) -> dict:
    return {"email": email, "message": "Do you ship to Austria?", **extra}


async def submit(api: Api, **kwargs: object) -> dict:
    body = await api.gql(SUBMIT, {"input": form(**kwargs)})  # type: ignore[arg-type]
    return body


async def contact_doc(database, email: str = "visitor@example.com") -> dict | None:  # type: ignore[no-untyped-def]
    return await database.contacts.find_one({"shopId": SHOP, "emailKey": email.lower()})


def within_one_minute(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The limit counts per clock minute: hold the forms' clock inside the current one.

    A burst that crossed a minute boundary (a slow machine, a start at :59)
    would start a fresh count; the time stays recent enough for the counter
    to outlive the test.
    """
    moment = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    monkeypatch.setattr(forms_rules, "utc_now", lambda: moment)


async def test_a_new_email_becomes_a_lead_with_the_message_logged(as_role, api, database):
    body = await submit(
        as_role("PUBLIC"),
        name="Vera von Visitor",
        phone="+43 1 5551234",
        message="  Do you ship\nto Austria?  ",
    )
    assert body["data"]["contactFormSubmit"] == {"ok": True, "userErrors": []}
    doc = await contact_doc(database)
    assert doc["kind"] == "LEAD"
    assert (doc["firstName"], doc["lastName"], doc["phone"]) == (
        "Vera",
        "von Visitor",
        "+4315551234",
    )
    assert [(e["kind"], e["text"]) for e in doc["activity"]] == [
        ("FORM_SUBMITTED", "Do you ship\nto Austria?")
    ]
    assert doc["activityCount"] == 1 and doc["nameKey"] == "vera von visitor"
    seen = (await api.data(CONTACT, {"email": "visitor@example.com"}))["contactByEmail"]
    assert seen["consent"]["state"] == "NOT_SUBSCRIBED" and seen["consent"]["history"] == []


async def test_a_known_email_gets_the_message_but_keeps_its_details(as_role, api, database):
    await api.data(
        'mutation { orderRecord(input: {externalId: "O-1", email: "visitor@example.com", '
        'currencyCode: "EUR", '
        'firstName: "Real", lastName: "Customer", '
        'lineItems: [{title: "Mug", quantity: 1, unitPrice: "9"}]}) { userErrors { code } } }'
    )
    before = await contact_doc(database)
    body = await submit(
        as_role("PUBLIC"), email="VISITOR@example.com", name="Someone Else", phone="+4930123456"
    )
    assert body["data"]["contactFormSubmit"] == {"ok": True, "userErrors": []}
    after = await contact_doc(database)
    assert after["kind"] == "CUSTOMER"
    assert (after["firstName"], after["lastName"], after["phone"]) == ("Real", "Customer", None)
    assert after["orderCount"] == before["orderCount"] == 1
    log = sorted(after["activity"], key=lambda e: (e["at"], e["_id"]), reverse=True)
    assert [e["kind"] for e in log] == ["FORM_SUBMITTED", "ORDER_PLACED"]
    assert await database.contacts.count_documents({"shopId": SHOP}) == 1


async def test_the_answer_does_not_reveal_whether_the_email_existed(as_role, api, database):
    await api.data(
        'mutation { contactCreate(input: {email: "known@example.com"}) { contact { id } } }'
    )
    public = as_role("PUBLIC")
    known = await public.client.post(
        "/graphql",
        json={"query": SUBMIT, "variables": {"input": form("known@example.com")}},
        headers=public.headers(),
    )
    unknown = await public.client.post(
        "/graphql",
        json={"query": SUBMIT, "variables": {"input": form("unknown@example.com")}},
        headers=public.headers(),
    )
    assert known.status_code == unknown.status_code == 200

    def without_budget_left(body: bytes) -> dict:
        # What the key has left moves with every request it makes; all else must be equal.
        answer = json.loads(body)
        del answer["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        return answer

    assert without_budget_left(known.content) == without_budget_left(unknown.content)
    assert known.headers["content-type"] == unknown.headers["content-type"]


async def test_a_checked_marketing_box_asks_for_confirmation_only(as_role, api, database):
    body = await submit(
        as_role("PUBLIC"),
        acceptsMarketing=True,
        consentText="Yes, send me the newsletter.",
        pageUrl="https://shop.example/contact",
    )
    assert body["data"]["contactFormSubmit"]["ok"] is True
    consent = (await api.data(CONTACT, {"email": "visitor@example.com"}))["contactByEmail"][
        "consent"
    ]
    assert consent["state"] == "PENDING" and consent["source"] == "CONTACT_FORM"
    assert consent["history"] == [
        {
            "state": "PENDING",
            "source": "CONTACT_FORM",
            "evidence": "Yes, send me the newsletter. | https://shop.example/contact",
        }
    ]
    doc = await contact_doc(database)
    assert sorted(e["kind"] for e in doc["activity"]) == ["CONSENT_CHANGED", "FORM_SUBMITTED"]


async def test_repeated_forms_leave_one_pending_request(as_role, api, database):
    for i in range(5):
        await submit(as_role("PUBLIC"), acceptsMarketing=True, consentText=f"Newsletter {i}")
    consent = (await api.data(CONTACT, {"email": "visitor@example.com"}))["contactByEmail"][
        "consent"
    ]
    assert consent["state"] == "PENDING"
    assert [e["evidence"].split(" |")[0] for e in consent["history"]] == ["Newsletter 0"]
    kinds = sorted(e["kind"] for e in (await contact_doc(database))["activity"])
    assert kinds == ["CONSENT_CHANGED"] + ["FORM_SUBMITTED"] * 5


async def test_a_form_never_downgrades_or_upgrades_a_subscribed_contact(as_role, api, database):
    await api.data(
        'mutation { orderRecord(input: {externalId: "O-1", email: "visitor@example.com", '
        'currencyCode: "EUR", '
        "acceptsMarketing: true, "
        'lineItems: [{title: "Mug", quantity: 1, unitPrice: "9"}]}) { userErrors { code } } }'
    )
    await submit(as_role("PUBLIC"), acceptsMarketing=True, consentText="Newsletter")
    consent = (await api.data(CONTACT, {"email": "visitor@example.com"}))["contactByEmail"][
        "consent"
    ]
    assert consent["state"] == "SUBSCRIBED" and [e["state"] for e in consent["history"]] == [
        "SUBSCRIBED"
    ]


async def test_form_input_is_checked_and_refusals_write_nothing(as_role, database):
    public = as_role("PUBLIC")
    cases = [
        ({"message": ""}, ["input", "message"], "REQUIRED"),
        ({"message": " \n\t "}, ["input", "message"], "REQUIRED"),
        ({"message": "x" * 5001}, ["input", "message"], "TOO_LONG"),
        ({"email": "nope"}, ["input", "email"], "INVALID"),
        ({"name": "n" * 201}, ["input", "name"], "TOO_LONG"),
        ({"phone": "12"}, ["input", "phone"], "INVALID"),
        ({"pageUrl": "javascript:alert(1)"}, ["input", "pageUrl"], "INVALID"),
        ({"consentText": "c" * 5001}, ["input", "consentText"], "TOO_LONG"),
    ]
    for change, field, code in cases:
        body = await submit(public, **change)
        payload = body["data"]["contactFormSubmit"]
        assert payload["ok"] is False, change
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)], change
    assert await database.contacts.count_documents({}) == 0
    # Exactly the limit is fine.
    body = await submit(public, message="y" * 5000)
    assert body["data"]["contactFormSubmit"]["ok"] is True


async def test_submissions_are_rate_limited_per_shop_and_client_address(
    served, as_role, database, settings, monkeypatch
):
    limit = settings.form_rate_per_minute
    assert limit == 10
    public = as_role("PUBLIC")
    within_one_minute(monkeypatch)
    for i in range(limit):
        body = await submit(public, email=f"v{i}@example.com")
        assert body["data"]["contactFormSubmit"]["ok"] is True, body
    blocked = await submit(public, email="one-more@example.com")
    assert blocked["data"] is None
    assert blocked["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await contact_doc(database, "one-more@example.com") is None
    # Invalid submissions count too, and are refused as limited before being read.
    assert (await submit(public, message=""))["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # Another client address has its own allowance ...
    transport = httpx.ASGITransport(app=served.asgi, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as elsewhere:
        body = await submit(Api(elsewhere, public.key), email="elsewhere@example.com")
        assert body["data"]["contactFormSubmit"]["ok"] is True
    # ... and so has another shop, from the same address.
    _, other_key = await create_key(database, OTHER_SHOP, Role.PUBLIC, "Other site")
    body = await submit(Api(public.client, other_key), email="other-shop@example.com")
    assert body["data"]["contactFormSubmit"]["ok"] is True
    assert await database.contacts.count_documents({"shopId": SHOP}) == limit + 1


async def test_staff_and_admin_may_submit_forms_too(as_role, database):
    for role in ("STAFF", "ADMIN"):
        body = await submit(as_role(role), email=f"{role.lower()}@example.com")
        assert body["data"]["contactFormSubmit"]["ok"] is True
    for role in ("READER", "INGEST"):
        body = await submit(as_role(role), email=f"{role.lower()}@example.com")
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await database.contacts.count_documents({}) == 2


async def test_a_public_key_can_do_nothing_but_submit_forms(as_role, api, database):
    created = await api.data(
        'mutation { contactCreate(input: {email: "someone@example.com"}) { contact { id } } }'
    )
    contact_id = created["contactCreate"]["contact"]["id"]
    before = await database.contacts.find_one({"shopId": SHOP})
    public = as_role("PUBLIC")
    operations = [
        ("{ contacts(first: 5) { nodes { email } } }", {}),
        ('{ contactByEmail(email: "someone@example.com") { id } }', {}),
        ("query($id: ID!) { contact(id: $id) { email } }", {"id": contact_id}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": contact_id}),
        ("query($id: ID!) { order(id: $id) { id } }", {"id": contact_id}),
        ('mutation { contactCreate(input: {email: "new@example.com"}) { contact { id } } }', {}),
        (
            'mutation($id: ID!) { contactUpdate(id: $id, input: {firstName: "X"}) '
            "{ contact { id } } }",
            {"id": contact_id},
        ),
        ("mutation($id: ID!) { contactsDelete(ids: [$id]) { deletedIds } }", {"id": contact_id}),
        (
            'mutation { orderRecord(input: {externalId: "P-1", email: "p@example.com", '
            'currencyCode: "EUR", '
            'lineItems: [{title: "A", quantity: 1, unitPrice: "1"}]}) { order { id } } }',
            {},
        ),
        ("mutation($id: ID!) { orderCancel(id: $id) { order { id } } }", {"id": contact_id}),
        (
            'mutation($id: ID!) { draftOrderCreate(contactId: $id, input: {currencyCode: "EUR", '
            'lineItems: [{title: "A", quantity: 1, unitPrice: "1"}]}) { order { id } } }',
            {"id": contact_id},
        ),
        # A form submission bundled with a read is refused as a whole.
        (
            'mutation { contactFormSubmit(input: {email: "a@example.com", message: "hi"}) { ok } '
            'contactCreate(input: {email: "b@example.com"}) { contact { id } } }',
            {},
        ),
    ]
    for query, variables in operations:
        body = await public.gql(query, variables)
        assert body["data"] is None, query
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", query
    after = await database.contacts.find_one({"shopId": SHOP})
    assert after == before
    assert await database.contacts.count_documents({}) == 1
    assert await database.orders.count_documents({}) == 0
    # And the one thing it may do works.
    assert (await submit(public))["data"]["contactFormSubmit"]["ok"] is True
