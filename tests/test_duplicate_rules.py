"""Duplicate rules to the edge: the mailbox key, and which contacts each reason groups.

tests/test_duplicates.py tells the story of duplicateCandidates; these pin
`canonical_email` without a database (dots only at Gmail, `+tag` at every
listed provider, GoogleMail read as Gmail, letter case everywhere and
nothing else), then each grouping's key at its edges (which address is
compared, postal codes without spaces or case, a missing part, a missing
name), the order of the groups and how `first` counts them across reasons.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SHOP
from hypothesis import given, settings
from hypothesis import strategies as st
from list_factories import add_contacts, at, contact_doc

from resolvers.duplicates import (
    SAME_MAILBOX,
    SAME_NAME_ADDRESS,
    SAME_PHONE,
    canonical_email,
    duplicate_groups,
)

TAG_PROVIDERS = [
    "gmail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "protonmail.com",
    "protonmail.ch",
    "proton.me",
    "pm.me",
    "fastmail.com",
    "fastmail.fm",
    "yandex.com",
    "yandex.ru",
    "zoho.com",
    "posteo.de",
    "mailbox.org",
]


@pytest.mark.parametrize("domain", TAG_PROVIDERS)
def test_a_provider_that_delivers_plus_tags_to_the_mailbox_loses_the_tag(domain: str) -> None:
    assert canonical_email(f"ann+news@{domain}") == f"ann@{domain}"
    assert canonical_email(f"ann+news+2026@{domain}") == f"ann@{domain}"
    assert canonical_email(f"ann@{domain}") == f"ann@{domain}"


@pytest.mark.parametrize("domain", [d for d in TAG_PROVIDERS if d != "gmail.com"])
def test_only_gmail_ignores_dots(domain: str) -> None:
    assert canonical_email(f"ann.lee+x@{domain}") == f"ann.lee@{domain}"


def test_gmail_ignores_dots_and_the_tag() -> None:
    assert canonical_email("j.o.h.n.doe@gmail.com") == "johndoe@gmail.com"
    assert canonical_email("john.doe+shop.news@gmail.com") == "johndoe@gmail.com"


def test_googlemail_is_gmail() -> None:
    assert canonical_email("John.Doe+news@GoogleMail.com") == "johndoe@gmail.com"
    assert canonical_email("johndoe@googlemail.com") == canonical_email("johndoe@gmail.com")


@pytest.mark.parametrize(
    "email",
    [
        "a.b+c@example.com",
        "ann+news@mail.gmail.com",  # a subdomain is another provider
        "ann.lee+x@gmail.co.uk",
        "ann+x@outlook.de",
    ],
)
def test_other_providers_keep_dots_and_tags(email: str) -> None:
    assert canonical_email(email) == email


def test_letter_case_and_outer_spaces_never_matter() -> None:
    assert canonical_email("  A.B+C@Example.COM \t") == "a.b+c@example.com"
    assert canonical_email("ANN+NEWS@OUTLOOK.COM") == "ann@outlook.com"


def test_the_domain_is_what_follows_the_last_at_sign() -> None:
    # a quoted local part may hold an "@"; the provider is still the last one
    assert canonical_email('"Jo@Home"+x@GMAIL.com') == '"jo@home"@gmail.com'
    assert canonical_email('"a@outlook.com"@example.com') == '"a@outlook.com"@example.com'


local = st.text(alphabet="abcXYZ019.+_-", min_size=1, max_size=12)
domain = st.sampled_from([*TAG_PROVIDERS, "googlemail.com", "example.com", "GMail.COM"])


@settings(max_examples=300, deadline=None)
@given(local, domain)
def test_the_mailbox_of_a_mailbox_is_itself(name: str, host: str) -> None:
    mailbox = canonical_email(f"{name}@{host}")
    assert canonical_email(mailbox) == mailbox
    assert canonical_email(f"{name}@{host}".upper()) == mailbox
    assert mailbox == mailbox.lower()
    assert mailbox.endswith("@" + ("gmail.com" if host == "googlemail.com" else host.lower()))


# --- the groups, against the database -------------------------------------

HOME = {"line1": "Hauptstraße 1", "postalCode": "10115", "city": "Berlin", "countryCode": "DE"}


async def groups(database: Any, first: int = 100) -> list[tuple[str, list[str], int]]:
    """(reason, the listed contacts' emails, the group's size) of every group, in order."""
    found = await duplicate_groups(database, SHOP, first)
    emails = {
        doc["_id"]: doc["email"]
        async for doc in database.contacts.find({"shopId": SHOP}, {"email": 1})
    }
    return [(g.reason, [emails[i] for i in g.contact_ids], g.size) for g in found]


async def test_without_a_street_line_on_the_shipping_address_the_billing_address_is_compared(
    database: Any,
) -> None:
    # Shipping holds only a town; the street lines are on the billing addresses, and they differ.
    town = {"city": "Berlin", "countryCode": "DE"}
    await add_contacts(
        database,
        contact_doc(
            "mia1@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=town,
            billingAddress=HOME,
            created=at(0),
        ),
        contact_doc(
            "mia2@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=town,
            billingAddress={**HOME, "line1": "Nebenweg 2"},
            created=at(1),
        ),
        contact_doc(
            "mia3@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=HOME,
            created=at(2),
        ),
    )

    assert await groups(database) == [
        (SAME_NAME_ADDRESS, ["mia1@example.com", "mia3@example.com"], 2)
    ]


async def test_the_postal_code_is_compared_without_spaces_or_letter_case(database: Any) -> None:
    london = {"line1": "10 Downing Street", "postalCode": "SW1A 2AA", "countryCode": "GB"}
    await add_contacts(
        database,
        contact_doc(
            "a@example.com", firstName="Ann", lastName="Lee", shippingAddress=london, created=at(0)
        ),
        contact_doc(
            "b@example.com",
            firstName="ann",
            lastName="LEE",
            shippingAddress={**london, "postalCode": "sw1a2aa"},
            created=at(1),
        ),
    )
    assert await groups(database) == [(SAME_NAME_ADDRESS, ["a@example.com", "b@example.com"], 2)]


@pytest.mark.parametrize(
    "other",
    [
        {**HOME, "postalCode": "10117"},
        {**HOME, "countryCode": "AT"},
        {**HOME, "line1": "Hauptstraße 2"},
    ],
)
async def test_another_street_postal_code_or_country_is_another_address(
    database: Any, other: dict[str, str]
) -> None:
    await add_contacts(
        database,
        contact_doc("a@example.com", firstName="Mia", lastName="Klein", shippingAddress=HOME),
        contact_doc("b@example.com", firstName="Mia", lastName="Klein", shippingAddress=other),
    )
    assert await groups(database) == []


async def test_addresses_without_postal_code_or_country_are_compared_by_the_rest(
    database: Any,
) -> None:
    street = {"line1": "Hauptstraße 1", "city": "Berlin"}
    await add_contacts(
        database,
        contact_doc(
            "a@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=street,
            created=at(0),
        ),
        contact_doc(
            "b@example.com",
            firstName="Mia",
            lastName="Klein",
            shippingAddress=street,
            created=at(1),
        ),
        contact_doc(
            "c@example.com", firstName="Mia", lastName="Klein", shippingAddress=HOME, created=at(2)
        ),
    )
    assert await groups(database) == [(SAME_NAME_ADDRESS, ["a@example.com", "b@example.com"], 2)]


async def test_a_contact_without_first_and_last_name_is_in_no_name_and_address_group(
    database: Any,
) -> None:
    await add_contacts(
        database,
        contact_doc("a@example.com", lastName="Klein", shippingAddress=HOME, created=at(0)),
        contact_doc("b@example.com", lastName="Klein", shippingAddress=HOME, created=at(1)),
        contact_doc("c@example.com", firstName="Klein", shippingAddress=HOME, created=at(2)),
        contact_doc("d@example.com", firstName="Klein", shippingAddress=HOME, created=at(3)),
    )
    assert await groups(database) == []


async def test_contacts_without_a_phone_or_an_email_canon_form_no_group(database: Any) -> None:
    first = contact_doc("a@example.com", created=at(0))
    second = contact_doc("b@example.com", created=at(1))
    for doc in (first, second):
        doc["emailCanon"] = None
        doc["phone"] = None
    await add_contacts(database, first, second)
    assert await groups(database) == []


async def test_groups_of_one_reason_come_in_the_order_of_their_key(database: Any) -> None:
    await add_contacts(
        database,
        *[
            contact_doc(f"{name}{i}@example.com", phone=phone, created=at(i))
            for i, (name, phone) in enumerate(
                [
                    ("z", "+4930999999"),
                    ("a", "+4930111111"),
                    ("z", "+4930999999"),
                    ("a", "+4930111111"),
                ]
            )
        ],
    )
    assert await groups(database) == [
        (SAME_PHONE, ["a1@example.com", "a3@example.com"], 2),
        (SAME_PHONE, ["z0@example.com", "z2@example.com"], 2),
    ]
    assert await groups(database, first=1) == [
        (SAME_PHONE, ["a1@example.com", "a3@example.com"], 2)
    ]


async def test_a_group_an_earlier_reason_named_does_not_take_a_later_groups_place(
    database: Any,
) -> None:
    # Ann and Ann share a phone and a name with an address (first by key), Zoe and Zoe only
    # the name and address: with room for two groups both pairs are named, once each.
    await add_contacts(
        database,
        *[
            contact_doc(
                f"{first.lower()}{i}@example.com",
                firstName=first,
                lastName="Lee",
                phone=phone,
                shippingAddress=HOME,
                created=at(i),
            )
            for i, (first, phone) in enumerate(
                [("Ann", "+4930111111"), ("Ann", "+4930111111"), ("Zoe", None), ("Zoe", None)]
            )
        ],
    )
    assert await groups(database, first=2) == [
        (SAME_PHONE, ["ann0@example.com", "ann1@example.com"], 2),
        (SAME_NAME_ADDRESS, ["zoe2@example.com", "zoe3@example.com"], 2),
    ]
    assert await groups(database, first=1) == [
        (SAME_PHONE, ["ann0@example.com", "ann1@example.com"], 2),
    ]


async def test_first_counts_groups_across_reasons(database: Any) -> None:
    await add_contacts(
        database,
        contact_doc("p1@example.com", phone="+4930111111", created=at(0)),
        contact_doc("p2@example.com", phone="+4930111111", created=at(1)),
        contact_doc("ann@gmail.com", created=at(2)),
        contact_doc("a.n.n@gmail.com", created=at(3)),
        contact_doc("bob@gmail.com", created=at(4)),
        contact_doc("b.o.b@gmail.com", created=at(5)),
    )
    assert await groups(database, first=2) == [
        (SAME_PHONE, ["p1@example.com", "p2@example.com"], 2),
        (SAME_MAILBOX, ["ann@gmail.com", "a.n.n@gmail.com"], 2),
    ]
    assert [reason for reason, _, _ in await groups(database, first=3)] == [
        SAME_PHONE,
        SAME_MAILBOX,
        SAME_MAILBOX,
    ]
    assert len(await groups(database, first=1)) == 1


async def test_namesakes_groups_come_by_postal_code_then_country_a_missing_one_first(
    database: Any,
) -> None:
    no_postal = {k: v for k, v in HOME.items() if k != "postalCode"}
    no_country = {k: v for k, v in HOME.items() if k != "countryCode"}
    await add_contacts(
        database,
        *[
            contact_doc(
                f"{tag}{i}@example.com",
                firstName="Mia",
                lastName="Klein",
                shippingAddress=address,
                created=at(n * 2 + i),
            )
            for n, (tag, address) in enumerate(
                [("home", HOME), ("nocountry", no_country), ("nopostal", no_postal)]
            )
            for i in range(2)
        ],
    )
    assert [emails for _, emails, _ in await groups(database)] == [
        ["nopostal0@example.com", "nopostal1@example.com"],
        ["nocountry0@example.com", "nocountry1@example.com"],
        ["home0@example.com", "home1@example.com"],
    ]
    assert [emails for _, emails, _ in await groups(database, first=1)] == [
        ["nopostal0@example.com", "nopostal1@example.com"],
    ]
