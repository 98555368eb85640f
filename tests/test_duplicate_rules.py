"""Mailbox rules to the edge: which parts of an address its provider ignores, and which it keeps.

tests/test_duplicates.py tells the story of duplicateCandidates against the
database; these pin `canonical_email`, the key the same-mailbox groups are
made of, without one: dots only at Gmail, `+tag` at every listed provider,
GoogleMail read as Gmail, letter case everywhere and nothing else.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.duplicates import canonical_email

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
