"""Search rules to the edge: the terms a contact is found by, the name it sorts by, the query's condition.

tests/test_contacts_filters.py and the paging tests search through the API;
these pin, without a database, which words of a name, company and email a
contact stores, how a query becomes a condition (every word a prefix of
some term, regex characters taken literally, at most eight words), and the
name a contact is shown and sorted by.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaders.contact_search import (
    MAX_QUERY_WORDS,
    display_name,
    name_key,
    query_match,
    search_terms,
)


def matches(condition: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    """What the server answers for one contact: `$regex` on an array matches any element."""
    if condition is None:
        return True
    if "$and" in condition:
        return all(matches(c, doc) for c in condition["$and"])
    pattern = condition["searchTerms"]["$regex"]
    return any(re.search(pattern, term) for term in search_terms(doc))


ANN = {
    "firstName": "Ann-Marie",
    "lastName": "O'Neil",
    "company": "Acme Widgets",
    "email": "Ann.ONeil+shop@Mail.Example.co.uk",
}


# --- terms -----------------------------------------------------------------


def test_a_contacts_terms_are_its_lower_cased_words_their_pieces_and_the_email_parts() -> None:
    assert search_terms(ANN) == sorted(
        {
            "ann-marie",
            "ann",
            "marie",
            "o'neil",
            "o",
            "neil",
            "acme",
            "widgets",
            "ann.oneil+shop@mail.example.co.uk",
            "ann.oneil+shop",
            "oneil",
            "shop",
            "mail.example.co.uk",
            "mail",
            "example",
            "co",
            "uk",
        }
    )


def test_terms_are_case_folded_not_only_lower_cased() -> None:
    assert search_terms({"lastName": "STRASSE", "company": "Straße"}) == ["strasse"]


def test_a_name_of_several_words_gives_each_word() -> None:
    assert search_terms({"firstName": "Mary  Ann", "company": "\tBig\nCo "}) == [
        "ann",
        "big",
        "co",
        "mary",
    ]


def test_a_contact_without_name_company_or_email_has_no_terms() -> None:
    assert search_terms({}) == []
    assert search_terms({"firstName": None, "lastName": "", "company": None, "email": None}) == []
    assert search_terms({"firstName": "  ", "email": ""}) == []


def test_an_email_without_a_local_part_adds_no_empty_term() -> None:
    assert search_terms({"email": "@example.com"}) == [
        "@example.com",
        "com",
        "example",
        "example.com",
    ]


def test_an_email_without_a_domain_adds_no_empty_term() -> None:
    assert search_terms({"email": "ann"}) == ["ann"]


def test_punctuation_alone_is_a_term_but_no_piece() -> None:
    assert search_terms({"company": "& --"}) == ["&", "--"]


# --- the query's condition -------------------------------------------------


def test_one_word_is_one_anchored_prefix_condition() -> None:
    assert query_match("  Ann ") == {"searchTerms": {"$regex": "^ann"}}


def test_several_words_must_all_match() -> None:
    assert query_match("ann ACME") == {
        "$and": [{"searchTerms": {"$regex": "^ann"}}, {"searchTerms": {"$regex": "^acme"}}]
    }


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_a_query_without_words_has_no_condition(text: str) -> None:
    assert query_match(text) is None


def test_regex_characters_in_a_query_are_taken_literally() -> None:
    assert query_match("a.c+") == {"searchTerms": {"$regex": "^" + re.escape("a.c+")}}
    assert matches(query_match("a.c+"), {"company": "a.c+"})
    assert not matches(query_match("a.c"), {"company": "abc"})
    assert not matches(query_match("(ann"), ANN)


def test_only_the_first_eight_words_count() -> None:
    words = [f"w{i}" for i in range(MAX_QUERY_WORDS + 1)]
    condition = query_match(" ".join(words))
    assert condition is not None
    assert [c["searchTerms"]["$regex"] for c in condition["$and"]] == [f"^w{i}" for i in range(8)]
    assert MAX_QUERY_WORDS == 8
    doc = {"company": " ".join(words[:8])}
    assert matches(condition, doc)  # the ninth word is not asked for


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("ann", True),
        ("ANN mar", True),
        ("marie ann", True),
        ("neil", True),
        ("o'ne", True),
        ("widg acme", True),
        ("example", True),
        ("mail.example", True),
        ("ann.oneil+shop@", True),
        ("co.uk", False),  # a prefix of a term, not any substring
        ("nn", False),
        ("ann bob", False),
        ("acmewidgets", False),
    ],
)
def test_a_query_finds_a_contact_when_every_word_starts_a_term(text: str, found: bool) -> None:
    assert matches(query_match(text), ANN) is found


words_ = st.text(alphabet="abcxyzÄß.+-*'@", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(words_, min_size=1, max_size=8))
def test_every_word_of_a_contacts_name_finds_it(name_words: list[str]) -> None:
    doc = {"company": " ".join(name_words)}
    for word in name_words:
        assert matches(query_match(word), doc)
        assert matches(query_match(word.upper()), doc)
    assert matches(query_match(" ".join(name_words)), doc)


# --- display name and the NAME sort ---------------------------------------


@pytest.mark.parametrize(
    ("doc", "name"),
    [
        ({"firstName": "Ann", "lastName": "Lee", "email": "a@x.io"}, "Ann Lee"),
        ({"firstName": "Ann", "email": "a@x.io"}, "Ann"),
        ({"lastName": "Lee", "email": "a@x.io"}, "Lee"),
        ({"firstName": "", "lastName": "Lee"}, "Lee"),
        ({"email": "a@x.io"}, "a@x.io"),
        ({"firstName": None, "lastName": None, "email": None}, ""),
        ({}, ""),
    ],
)
def test_a_contact_is_shown_by_its_name_or_else_its_email(doc: dict[str, Any], name: str) -> None:
    assert display_name(doc) == name


def test_the_name_sort_key_is_the_display_name_case_folded() -> None:
    assert name_key({"firstName": "Ann", "lastName": "STRAßE"}) == "ann strasse"
    assert name_key({"email": "Ann@X.io"}) == "ann@x.io"
    assert name_key({}) == ""
