"""duplicateCandidates: same phone, same mailbox, same name and address; grouped, never paired."""

from __future__ import annotations

import pytest
from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, at, contact_doc

from resolvers.duplicates import canonical_email

DUPLICATES = """
query($first: Int) {
  duplicateCandidates(first: $first) { reason contactCount contacts { email } }
}
"""

CREATE = """
mutation($input: ContactInput!) { contactCreate(input: $input) { contact { id } userErrors { code } } }
"""
UPDATE = """
mutation($id: ID!, $input: ContactInput!) { contactUpdate(id: $id, input: $input) { userErrors { code } } }
"""


@pytest.mark.parametrize(
    ("email", "mailbox"),
    [
        ("John.Doe+news@GoogleMail.com", "johndoe@gmail.com"),
        ("j.o.h.n.doe@gmail.com", "johndoe@gmail.com"),
        ("ann.lee+shop@outlook.com", "ann.lee@outlook.com"),
        ("ann+a+b@icloud.com", "ann@icloud.com"),
        ("a.b+c@example.com", "a.b+c@example.com"),
        ("A.B@Example.COM", "a.b@example.com"),
    ],
)
def test_the_mailbox_an_address_delivers_to(email, mailbox):
    assert canonical_email(email) == mailbox


async def test_the_mailbox_is_stored_when_the_email_is_written(api, database):
    created = await api.data(CREATE, {"input": {"email": "Jo.Ann+promo@gmail.com"}})
    contact_id = created["contactCreate"]["contact"]["id"]
    assert (await database.contacts.find_one({"shopId": SHOP}))["emailCanon"] == "joann@gmail.com"

    updated = await api.data(UPDATE, {"id": contact_id, "input": {"email": "jo.ann+x@outlook.com"}})

    assert updated["contactUpdate"]["userErrors"] == []
    assert (await database.contacts.find_one({"shopId": SHOP}))[
        "emailCanon"
    ] == "jo.ann@outlook.com"


@pytest.fixture
async def people(database):
    address = {
        "line1": "Hauptstraße 1",
        "postalCode": "10115",
        "city": "Berlin",
        "countryCode": "DE",
    }
    await add_contacts(
        database,
        # same phone
        contact_doc("phone-a@example.com", phone="+4915112345678", created=at(0)),
        contact_doc("phone-b@example.org", phone="+4915112345678", created=at(1)),
        contact_doc("phone-c@example.org", phone="+4915199999999", created=at(2)),
        # same mailbox
        contact_doc("john.doe@gmail.com", created=at(3)),
        contact_doc("JohnDoe+shop@googlemail.com", created=at(4)),
        contact_doc("john.doe@example.com", created=at(5)),
        contact_doc("johndoe@example.com", created=at(6)),
        contact_doc("ann@outlook.com", created=at(7)),
        contact_doc("ann+news@outlook.com", created=at(8)),
        # same name and address, in any case and spacing, shipping or billing
        contact_doc(
            "mia1@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=address,
            created=at(9),
        ),
        contact_doc(
            "mia2@example.com",
            firstName="MIA",
            lastName="klein",
            created=at(10),
            billingAddress={
                "line1": " hauptstraße 1 ",
                "postalCode": "101 15",
                "countryCode": "DE",
            },
        ),
        contact_doc(
            "mia3@example.com",
            firstName="Mia",
            lastName="Klein",
            created=at(11),
            shippingAddress={**address, "line1": "Nebenweg 2"},
        ),
        contact_doc("mia4@example.com", firstName="Mia", lastName="Klein", created=at(12)),
        # both the same phone and the same name and address: reported once
        contact_doc(
            "tom1@example.com",
            firstName="Tom",
            lastName="Berg",
            phone="+4930111111",
            shippingAddress=address,
            created=at(13),
        ),
        contact_doc(
            "tom2@example.com",
            firstName="Tom",
            lastName="Berg",
            phone="+4930111111",
            shippingAddress=address,
            created=at(14),
        ),
        # another shop is another world
        contact_doc("phone-x@example.com", shop=OTHER_SHOP, phone="+4915112345678"),
    )


async def test_groups_by_phone_mailbox_and_name_with_address(as_role, people):
    data = await as_role("READER").data(DUPLICATES)

    groups = [
        (g["reason"], g["contactCount"], [c["email"] for c in g["contacts"]])
        for g in data["duplicateCandidates"]
    ]
    assert groups == [
        ("same phone", 2, ["phone-a@example.com", "phone-b@example.org"]),
        ("same phone", 2, ["tom1@example.com", "tom2@example.com"]),
        ("same email except dots/plus-tag", 2, ["ann@outlook.com", "ann+news@outlook.com"]),
        (
            "same email except dots/plus-tag",
            2,
            ["john.doe@gmail.com", "JohnDoe+shop@googlemail.com"],
        ),
        ("same name and address", 2, ["mia1@example.com", "mia2@example.com"]),
    ]


async def test_first_limits_the_groups_and_is_checked(api, people):
    data = await api.data(DUPLICATES, {"first": 3})
    assert [g["reason"] for g in data["duplicateCandidates"]] == [
        "same phone",
        "same phone",
        "same email except dots/plus-tag",
    ]
    for first in (0, 101):
        body = await api.gql(DUPLICATES, {"first": first})
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_big_group_is_counted_whole_and_listed_in_part(api, database):
    await add_contacts(
        database,
        *[
            contact_doc(f"shared{i:02d}@example.com", phone="+4930222222", created=at(i))
            for i in range(60)
        ],
    )

    data = await api.data(DUPLICATES)

    (group,) = data["duplicateCandidates"]
    assert group["contactCount"] == 60
    assert [c["email"] for c in group["contacts"]] == [
        f"shared{i:02d}@example.com" for i in range(50)
    ]


async def test_aggregations_per_reason_and_one_read_for_all_contacts(api, people, commands):
    commands.reset()
    await api.data(DUPLICATES)

    assert commands.on("contacts") == ["aggregate", "aggregate", "aggregate", "find"]


async def test_no_duplicates_no_groups(api, database):
    await add_contacts(
        database,
        contact_doc("one@example.com", phone="+4930333333"),
        contact_doc("two@example.com"),
    )
    assert (await api.data(DUPLICATES))["duplicateCandidates"] == []


async def test_groups_keep_their_oldest_ids_while_grouping(api, people, commands):
    commands.reset()
    await api.data(DUPLICATES)

    pipelines = [c["pipeline"] for c in commands.documents("aggregate", "contacts")]
    assert len(pipelines) == 3
    for pipeline in pipelines:
        names = [next(iter(stage)) for stage in pipeline]
        # Nothing sorts the shop before the grouping, and no group collects every id.
        grouping = names.index("$group")
        assert "$sort" not in names[:grouping]
        group = pipeline[grouping]["$group"]
        assert group["ids"] == {"$topN": {"n": 50, "sortBy": {"_id": 1}, "output": "$_id"}}
        assert "$push" not in str(pipeline)
