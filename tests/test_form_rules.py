"""Contact form rules to the edge: every refusal's field, message and code, each bound on both sides.

tests/test_forms.py tells the story through the API (leads, PENDING
consent, the PUBLIC role); these pin what a visitor reads when a form is
refused, what a form's fields become (the name split in two, the evidence
of a marketing request), and the per-minute count behind the rate limit:
the exact window, the wait it names, and what happens when two first
submissions of a window race.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from conftest import OTHER_SHOP, SHOP
from pymongo.errors import DuplicateKeyError

from resolvers import activity
from resolvers import forms as forms_rules
from resolvers.activity import EMBEDDED_KEEP, SPILL_AT
from resolvers.contact_counts import contact_totals
from resolvers.contacts import new_contact
from resolvers.errors import RateLimited, Refused
from resolvers.forms import (
    CheckedForm,
    FormData,
    _split_name,
    check_form,
    count_hit,
    submit_form,
)


def problems(data: FormData) -> list[tuple[Any, str, str]]:
    with pytest.raises(Refused) as refusal:
        check_form(data)
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def form(**fields: Any) -> FormData:
    return FormData(**{"email": "visitor@example.com", "message": "Hello", **fields})


# -- what a form becomes ----------------------------------------------------


def test_a_full_form_is_trimmed_and_normalized():
    checked = check_form(
        FormData(
            email="  Vera@Example.COM ",
            message="  Do you ship\nto Austria?\r\n\tThanks  ",
            name="  Vera von Visitor ",
            phone=" +43 1 5551234 ",
            accepts_marketing=True,
            consent_text=" Yes,\nsend me the newsletter. ",
            page_url=" https://shop.example/contact ",
        )
    )
    assert checked == CheckedForm(
        email="Vera@example.com",
        email_key="vera@example.com",
        first_name="Vera",
        last_name="von Visitor",
        phone="+4315551234",
        message="Do you ship\nto Austria?\r\n\tThanks",
        accepts_marketing=True,
        evidence="Yes,\nsend me the newsletter. | https://shop.example/contact",
    )


def test_a_form_with_only_email_and_message_has_nothing_else():
    assert check_form(form()) == CheckedForm(
        email="visitor@example.com",
        email_key="visitor@example.com",
        first_name=None,
        last_name=None,
        phone=None,
        message="Hello",
        accepts_marketing=False,
        evidence=None,
    )


@pytest.mark.parametrize(
    ("blank", "expected"), [(None, None), ("", None), ("   ", None), ("\n", None)]
)
def test_blank_optional_fields_are_absent(blank, expected):
    checked = check_form(form(name=blank, phone=blank, consent_text=blank, page_url=blank))
    assert (checked.first_name, checked.last_name, checked.phone, checked.evidence) == (
        expected,
        expected,
        expected,
        expected,
    )


@pytest.mark.parametrize(
    ("consent_text", "page_url", "evidence"),
    [
        ("I agree", None, "I agree"),
        (None, "http://shop.example/", "http://shop.example/"),
        ("  I agree  ", "  http://shop.example/  ", "I agree | http://shop.example/"),
        (None, None, None),
    ],
)
def test_the_evidence_is_the_consent_text_and_the_page_it_was_given_on(
    consent_text, page_url, evidence
):
    checked = check_form(form(consent_text=consent_text, page_url=page_url))
    assert checked.evidence == evidence


@pytest.mark.parametrize(
    ("box", "accepts"),
    [(True, True), (False, False), (None, False)],
)
def test_only_a_checked_box_asks_for_marketing(box, accepts):
    assert check_form(form(accepts_marketing=box)).accepts_marketing is accepts


def test_an_unchecked_box_is_the_default():
    assert FormData(email="a@example.com", message="Hi").accepts_marketing is False
    assert check_form(FormData(email="a@example.com", message="Hi")).accepts_marketing is False


def test_the_name_is_stored_in_unicode_composed_form():
    # "e" + combining acute accent: what is stored is the single character é.
    checked = check_form(form(name="Rene\u0301 Cafe\u0301", message="Cafe\u0301?"))
    assert (checked.first_name, checked.last_name, checked.message) == ("René", "Café", "Café?")


# -- the one name field ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        (None, None, None),
        ("", None, None),
        ("Vera", "Vera", None),
        ("Vera ", "Vera", None),
        ("Vera   ", "Vera", None),
        ("Vera von Visitor", "Vera", "von Visitor"),
        ("Vera  von   Visitor", "Vera", "von   Visitor"),
        ("Jean-Luc O'Neil", "Jean-Luc", "O'Neil"),
    ],
)
def test_the_first_word_is_the_first_name_and_the_rest_the_last_name(name, first, last):
    assert _split_name(name) == (first, last)


def test_a_form_name_is_split_after_trimming():
    checked = check_form(form(name="   Ann   Marie Smith   "))
    assert (checked.first_name, checked.last_name) == ("Ann", "Marie Smith")


# -- refusals ----------------------------------------------------------------


def test_an_empty_form_names_both_required_fields():
    assert problems(FormData(email=None, message=None)) == [
        (("input", "email"), "Email is required.", "REQUIRED"),
        (("input", "message"), "Message is required.", "REQUIRED"),
    ]


@pytest.mark.parametrize("blank", ["", "   ", " \n\t "])
def test_a_blank_email_and_message_are_required(blank):
    assert problems(FormData(email=blank, message=blank)) == [
        (("input", "email"), "Email is required.", "REQUIRED"),
        (("input", "message"), "Message is required.", "REQUIRED"),
    ]


def test_an_invalid_email_says_why():
    assert problems(form(email="visitor@localhost")) == [
        (
            ("input", "email"),
            "Email is not valid: The part after the @-sign is not valid. It should have a period.",
            "INVALID",
        )
    ]


def test_an_email_of_254_characters_is_read_and_255_refused():
    local = "v" * 64
    domain_254 = ".".join(["d" * 63, "d" * 63, "d" * 57, "com"])
    email_254 = f"{local}@{domain_254}"
    assert len(email_254) == 254
    assert check_form(form(email=email_254)).email == email_254
    assert problems(form(email=email_254 + "m")) == [
        (("input", "email"), "Email is longer than 254 characters.", "TOO_LONG")
    ]


@pytest.mark.parametrize(
    ("field", "argument", "label", "limit"),
    [
        ("name", "name", "Name", 200),
        ("message", "message", "Message", 5000),
        ("consentText", "consent_text", "Consent text", 5000),
        ("pageUrl", "page_url", "Page url", 2000),
    ],
)
def test_each_text_is_read_up_to_its_limit_and_refused_one_past_it(field, argument, label, limit):
    prefix = "https://shop.example/" if field == "pageUrl" else ""
    at_limit = prefix + "x" * (limit - len(prefix))
    check_form(form(**{argument: at_limit}))
    # Surrounding blanks do not count against the limit.
    check_form(form(**{argument: f"  {at_limit}  "}))
    assert problems(form(**{argument: at_limit + "x"})) == [
        (("input", field), f"{label} is longer than {limit} characters.", "TOO_LONG")
    ]


def test_the_limit_on_the_name_is_what_is_split():
    checked = check_form(form(name="A " + "b" * 198))
    assert (checked.first_name, checked.last_name) == ("A", "b" * 198)


def test_a_message_and_consent_text_may_have_several_lines_but_a_name_or_url_not():
    checked = check_form(form(message="one\ntwo\r\nthree\tfour", consent_text="yes\nplease"))
    assert checked.message == "one\ntwo\r\nthree\tfour"
    assert checked.evidence == "yes\nplease"
    assert problems(form(name="Vera\nvon Visitor", page_url="https://shop.example/\ncontact")) == [
        (("input", "name"), "Name contains control characters.", "INVALID"),
        (("input", "pageUrl"), "Page url contains control characters.", "INVALID"),
    ]


def test_control_characters_are_refused_in_every_text():
    assert problems(
        FormData(
            email="visitor@example.com",
            message="Hi\x00",
            name="Vera\x07",
            consent_text="yes\x1b",
            page_url="https://shop.example/\x7f",
        )
    ) == [
        (("input", "name"), "Name contains control characters.", "INVALID"),
        (("input", "message"), "Message contains control characters.", "INVALID"),
        (("input", "consentText"), "Consent text contains control characters.", "INVALID"),
        (("input", "pageUrl"), "Page url contains control characters.", "INVALID"),
    ]


@pytest.mark.parametrize("phone", ["12", "not a number", "+1 555"])
def test_a_phone_that_is_no_number_is_refused(phone):
    assert problems(form(phone=phone)) == [
        (("input", "phone"), "Phone number is not valid.", "INVALID")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/",
        "https://shop.example/",
        "HTTP://SHOP.EXAMPLE/",
        "Https://shop.example/contact?x=1",
    ],
)
def test_a_page_url_is_an_http_or_https_address_in_any_case(url):
    assert check_form(form(page_url=url)).evidence == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://shop.example/",
        "shop.example/contact",
        "/contact",
        "http:/shop.example",
        "httpss://shop.example",
        " mailto:http://shop.example",
    ],
)
def test_any_other_page_url_is_refused(url):
    assert problems(form(page_url=url)) == [
        (("input", "pageUrl"), "Page URL must be an http(s) address.", "INVALID")
    ]


def test_every_problem_of_a_form_is_named_at_once_in_the_order_of_its_fields():
    assert problems(
        FormData(
            email="nope",
            message=None,
            name="n" * 201,
            phone="12",
            consent_text="c" * 5001,
            page_url="ftp://shop.example/",
            accepts_marketing=True,
        )
    ) == [
        (
            ("input", "email"),
            "Email is not valid: An email address must have an @-sign.",
            "INVALID",
        ),
        (("input", "name"), "Name is longer than 200 characters.", "TOO_LONG"),
        (("input", "phone"), "Phone number is not valid.", "INVALID"),
        (("input", "message"), "Message is required.", "REQUIRED"),
        (("input", "consentText"), "Consent text is longer than 5000 characters.", "TOO_LONG"),
        (("input", "pageUrl"), "Page URL must be an http(s) address.", "INVALID"),
    ]


def test_a_refusal_says_all_its_problems_in_its_text():
    with pytest.raises(Refused, match=r"^Email is required\.; Message is required\.$"):
        check_form(FormData(email=None, message=None))


# -- the per-minute count behind the rate limit ------------------------------


# A whole minute tomorrow, fixed once: counters of a future window outlive any test, and
# no test sees the real clock turn to the next minute between two of its calls.
TOMORROW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(second=0, microsecond=0)


def minute(offset_seconds: float = 0) -> dt.datetime:
    return TOMORROW + dt.timedelta(seconds=offset_seconds)


async def test_calls_are_counted_up_to_the_limit_and_the_next_is_refused(database):
    at = minute(30)
    assert [await count_hit(database, SHOP, "form:1.2.3.4", 3, at) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(RateLimited) as refusal:
        await count_hit(database, SHOP, "form:1.2.3.4", 3, at)
    assert str(refusal.value) == (
        "Too many submissions from this address; try again in 30 seconds."
    )
    # A refused call counts too: the client keeps being refused until the window ends.
    with pytest.raises(RateLimited):
        await count_hit(database, SHOP, "form:1.2.3.4", 3, at)
    stored = await database.rate_limits.find({}, {"_id": 0}).to_list()
    window = int(at.timestamp()) // 60
    assert stored == [
        {
            "shopId": SHOP,
            "key": "form:1.2.3.4",
            "window": window,
            "count": 5,
            # Kept a minute past its window's end, then removed by the TTL index.
            "expiresAt": minute(120),
        }
    ]


async def test_a_limit_of_zero_refuses_the_first_call(database):
    with pytest.raises(RateLimited):
        await count_hit(database, SHOP, "form:a", 0, minute())
    assert await count_hit(database, SHOP, "form:b", 1, minute()) == 1


@pytest.mark.parametrize(
    ("offset", "wait"), [(0, 60), (0.999, 60), (1, 59), (30.5, 30), (59, 1), (59.999, 1)]
)
async def test_the_wait_named_is_the_rest_of_the_minute_in_whole_seconds(database, offset, wait):
    at = minute(offset)
    await count_hit(database, SHOP, "form:x", 1, at)
    named = "1 second" if wait == 1 else f"{wait} seconds"
    with pytest.raises(RateLimited, match=rf"; try again in {named}\.$"):
        await count_hit(database, SHOP, "form:x", 1, at)


async def test_each_clock_minute_has_its_own_count(database):
    assert await count_hit(database, SHOP, "form:x", 2, minute(0)) == 1
    assert await count_hit(database, SHOP, "form:x", 2, minute(59.9)) == 2
    # The first second of the next minute starts afresh.
    assert await count_hit(database, SHOP, "form:x", 2, minute(60)) == 1
    assert await count_hit(database, SHOP, "form:x", 2, minute(119)) == 2
    windows = await database.rate_limits.find({}, {"_id": 0, "window": 1, "expiresAt": 1}).to_list()
    first = int(minute().timestamp()) // 60
    assert sorted((w["window"], w["expiresAt"]) for w in windows) == [
        (first, minute(120)),
        (first + 1, minute(180)),
    ]


async def test_each_shop_and_client_has_its_own_count(database):
    at = minute(10)
    assert await count_hit(database, SHOP, "form:1.2.3.4", 1, at) == 1
    assert await count_hit(database, SHOP, "form:5.6.7.8", 1, at) == 1
    assert await count_hit(database, OTHER_SHOP, "form:1.2.3.4", 1, at) == 1
    with pytest.raises(RateLimited):
        await count_hit(database, SHOP, "form:1.2.3.4", 1, at)


async def test_without_a_time_the_count_is_of_the_current_minute(database, monkeypatch):
    at = minute(45)
    monkeypatch.setattr(forms_rules, "utc_now", lambda: at)
    assert await count_hit(database, SHOP, "form:x", 1) == 1
    with pytest.raises(RateLimited, match=r"try again in 15 seconds\.$"):
        await count_hit(database, SHOP, "form:x", 1)
    stored = await database.rate_limits.find_one({})
    assert stored["window"] == int(at.timestamp()) // 60


class Racing:
    """The database, but the counter's first `lost` updates lose a race to make the counter."""

    def __init__(self, database: Any, lost: int) -> None:
        self.real = database.rate_limits
        self.lost = lost
        self.rate_limits = self

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        if self.lost:
            self.lost -= 1
            raise DuplicateKeyError("E11000 duplicate key error")
        return await self.real.find_one_and_update(*args, **kwargs)


async def test_a_call_that_lost_the_race_to_make_the_counter_is_counted_on_it(database):
    at = minute(5)
    assert await count_hit(database, SHOP, "form:x", 5, at) == 1
    assert await count_hit(Racing(database, 1), SHOP, "form:x", 5, at) == 2
    # Nine lost races in a row still count; the tenth gives up.
    assert await count_hit(Racing(database, 9), SHOP, "form:x", 5, at) == 3
    with pytest.raises(RuntimeError, match="^could not count a rate-limited call$"):
        await count_hit(Racing(database, 10), SHOP, "form:x", 5, at)
    assert (await database.rate_limits.find_one({}))["count"] == 3


# -- a submission ------------------------------------------------------------


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """The forms' clock held at one instant (as stored: whole milliseconds)."""
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    monkeypatch.setattr(forms_rules, "utc_now", lambda: at)
    return at


async def submit(database: Any, client: str = "192.0.2.1", rate: int = 10, **fields: Any) -> None:
    data = FormData(**{"email": "visitor@example.com", "message": "Do you ship?", **fields})
    await submit_form(database, SHOP, data, client=client, rate_per_minute=rate)


async def stored(database: Any, email: str = "visitor@example.com") -> dict[str, Any]:
    doc = await database.contacts.find_one({"shopId": SHOP, "emailKey": email.lower()})
    assert doc is not None, email
    return doc


async def known(database: Any, kind: str = "CUSTOMER", **extra: Any) -> dict[str, Any]:
    at = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    doc = new_contact(
        SHOP,
        "Visitor@example.com",
        "visitor@example.com",
        kind,
        {"firstName": "Real", "lastName": "Customer", "phone": "+4930123456"},
        at,
    )
    doc.update(extra)
    await database.contacts.insert_one(doc)
    return doc


async def created_events(database: Any) -> list[Any]:
    events = await database.events.find({"type": "CONTACT_CREATED"}).to_list()
    return [e["contactId"] for e in events]


async def test_a_new_email_is_made_a_lead_with_its_details_and_the_message_logged(database, moment):
    await submit(
        database, name="Vera von Visitor", phone="+43 1 5551234", message=" Do you\nship? "
    )
    doc = await stored(database)
    assert {k: doc[k] for k in ("email", "kind", "firstName", "lastName", "phone")} == {
        "email": "visitor@example.com",
        "kind": "LEAD",
        "firstName": "Vera",
        "lastName": "von Visitor",
        "phone": "+4315551234",
    }
    assert doc["createdAt"] == doc["updatedAt"] == moment
    assert [(e["kind"], e["text"], e["at"]) for e in doc["activity"]] == [
        ("FORM_SUBMITTED", "Do you\nship?", moment)
    ]
    assert doc["activityCount"] == doc["activityEmbedded"] == 1
    assert doc["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}
    # Counted as a new lead, announced once.
    assert await contact_totals(database, SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}
    assert await created_events(database) == [doc["_id"]]


async def test_a_known_email_gets_the_message_but_keeps_its_details(database, moment):
    before = await known(database)
    await submit(database, email="VISITOR@example.com", name="Someone Else", phone="+4930999999")
    doc = await stored(database)
    unchanged = ("_id", "email", "kind", "firstName", "lastName", "phone", "createdAt", "consent")
    assert {k: doc[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert doc["updatedAt"] == moment
    assert [(e["kind"], e["text"]) for e in doc["activity"]] == [("FORM_SUBMITTED", "Do you ship?")]
    assert doc["activityCount"] == doc["activityEmbedded"] == 1
    # Not a new contact: not counted, not announced.
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 0, "LEAD": 0}
    assert await created_events(database) == []
    assert await database.contacts.count_documents({}) == 1


async def test_a_refused_form_writes_nothing_but_counts_against_the_limit(database, moment):
    with pytest.raises(Refused):
        await submit(database, rate=1, message=" ")
    assert await database.contacts.count_documents({}) == 0
    with pytest.raises(RateLimited):
        await submit(database, rate=1)
    assert await database.contacts.count_documents({}) == 0


async def test_submissions_are_limited_per_minute_per_shop_and_client(database, moment):
    for i in range(2):
        await submit(database, rate=2, email=f"v{i}@example.com")
    with pytest.raises(
        RateLimited,
        match=rf"^Too many submissions from this address; try again in {60 - moment.second} second",
    ):
        await submit(database, rate=2, email="late@example.com")
    assert await database.contacts.count_documents({"emailKey": "late@example.com"}) == 0
    await submit(database, client="198.51.100.9", rate=2, email="elsewhere@example.com")
    counters = await database.rate_limits.find({}, {"_id": 0, "key": 1, "count": 1}).to_list()
    assert sorted((c["key"], c["count"]) for c in counters) == [
        ("form:192.0.2.1", 3),
        ("form:198.51.100.9", 1),
    ]


async def test_a_checked_box_asks_for_confirmation_with_its_evidence(database, moment):
    await submit(
        database,
        accepts_marketing=True,
        consent_text="Yes, the newsletter.",
        page_url="https://shop.example/contact",
    )
    doc = await stored(database)
    assert doc["consent"]["state"] == "PENDING"
    assert doc["consent"]["history"] == [
        {
            "state": "PENDING",
            "optInLevel": None,
            "at": moment,
            "source": "CONTACT_FORM",
            "actor": None,
            "evidence": "Yes, the newsletter. | https://shop.example/contact",
        }
    ]
    assert sorted(e["kind"] for e in doc["activity"]) == ["CONSENT_CHANGED", "FORM_SUBMITTED"]


async def test_an_unchecked_box_leaves_consent_alone(database, moment):
    await submit(database, accepts_marketing=False, consent_text="Yes, the newsletter.")
    await submit(database, accepts_marketing=None)
    doc = await stored(database)
    assert doc["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}
    assert [e["kind"] for e in doc["activity"]] == ["FORM_SUBMITTED", "FORM_SUBMITTED"]


@pytest.mark.parametrize("state", ["UNSUBSCRIBED", "NOT_SUBSCRIBED"])
async def test_someone_not_subscribed_who_checks_the_box_is_asked_again(database, moment, state):
    await known(database, consent={"state": state, "history": []})
    await submit(database, accepts_marketing=True)
    doc = await stored(database)
    assert doc["consent"]["state"] == "PENDING"
    assert [e["state"] for e in doc["consent"]["history"]] == ["PENDING"]


@pytest.mark.parametrize("state", ["SUBSCRIBED", "PENDING"])
async def test_a_subscribed_or_pending_contact_is_not_asked_again(database, moment, state):
    earlier = {"state": state, "optInLevel": "SINGLE_OPT_IN", "at": moment, "source": "CHECKOUT"}
    consent = {**earlier, "history": [{**earlier, "actor": None, "evidence": None}]}
    await known(database, consent=consent)
    await submit(database, accepts_marketing=True, consent_text="Again")
    doc = await stored(database)
    assert doc["consent"] == consent
    assert [e["kind"] for e in doc["activity"]] == ["FORM_SUBMITTED"]


async def test_a_submission_that_fills_the_log_moves_its_oldest_entries_to_the_archive(
    database, moment
):
    old = [
        activity.entry("NOTE", text=f"note {i}", at=moment - dt.timedelta(seconds=SPILL_AT - i))
        for i in range(SPILL_AT - 1)
    ]
    await known(database, activity=old, activityCount=len(old), activityEmbedded=len(old))
    await submit(database)
    doc = await stored(database)
    assert doc["activityCount"] == SPILL_AT
    assert len(doc["activity"]) == doc["activityEmbedded"] == EMBEDDED_KEEP
    assert doc["activity"][-1]["kind"] == "FORM_SUBMITTED"
    assert await database.activity_archive.count_documents({"contactId": doc["_id"]}) == 1


def losing(times: int, before: Any = None) -> Any:
    """activity.in_transaction, but the first `times` calls lose a race to make the contact."""
    real = activity.in_transaction
    calls = {"left": times}

    async def in_transaction(database: Any, work: Any) -> Any:
        if calls["left"]:
            calls["left"] -= 1
            if before is not None:
                await before(database)
            raise DuplicateKeyError("E11000 duplicate key error")
        return await real(database, work)

    return in_transaction


async def test_a_submission_that_lost_the_race_to_make_the_contact_logs_on_the_winner(
    database, moment, monkeypatch
):
    async def other_submission_makes_it(database: Any) -> None:
        await known(database, kind="LEAD")

    monkeypatch.setattr(activity, "in_transaction", losing(1, other_submission_makes_it))
    await submit(database, name="Someone Else")
    doc = await stored(database)
    assert (doc["firstName"], doc["kind"]) == ("Real", "LEAD")
    assert [e["kind"] for e in doc["activity"]] == ["FORM_SUBMITTED"]
    assert await created_events(database) == []
    assert await database.contacts.count_documents({}) == 1


async def test_nine_lost_races_still_record_the_submission_and_the_tenth_gives_up(
    database, moment, monkeypatch
):
    monkeypatch.setattr(activity, "in_transaction", losing(9))
    await submit(database)
    assert [e["kind"] for e in (await stored(database))["activity"]] == ["FORM_SUBMITTED"]
    monkeypatch.setattr(activity, "in_transaction", losing(10))
    with pytest.raises(RuntimeError, match="^could not record a form submission$"):
        await submit(database, email="other@example.com")
    assert await database.contacts.count_documents({}) == 1


async def test_another_shop_has_its_own_allowance_for_the_same_client(database, moment):
    await submit(database, rate=1)
    with pytest.raises(RateLimited):
        await submit(database, rate=1, email="again@example.com")
    data = FormData(email="visitor@example.com", message="Hello from the other shop")
    await submit_form(database, OTHER_SHOP, data, client="192.0.2.1", rate_per_minute=1)
    counters = await database.rate_limits.find({}, {"_id": 0, "shopId": 1, "count": 1}).to_list()
    assert sorted((c["shopId"], c["count"]) for c in counters) == [(OTHER_SHOP, 1), (SHOP, 2)]
    other = await database.contacts.find_one({"shopId": OTHER_SHOP})
    assert [e["text"] for e in other["activity"]] == ["Hello from the other shop"]


async def test_a_counter_expires_a_minute_after_its_window_whatever_the_servers_zone(
    database, monkeypatch
):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        await count_hit(database, SHOP, "form:x", 1, minute(30))
    finally:
        monkeypatch.undo()
        time.tzset()
    stored = await database.rate_limits.find_one({})
    assert stored["expiresAt"] == minute(120)


class Aborted(Exception):
    pass


async def never_committed(database: Any, work: Any) -> Any:
    """activity.in_transaction, but the transaction fails after its work, before the commit."""
    async with database.client.start_session() as session:
        async with await session.start_transaction():
            await work(session)
            raise Aborted


async def test_a_submission_whose_transaction_fails_leaves_nothing_behind(
    database, moment, monkeypatch
):
    monkeypatch.setattr(activity, "in_transaction", never_committed)
    with pytest.raises(Aborted):
        await submit(database, name="Vera von Visitor")
    assert await database.contacts.count_documents({}) == 0
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 0, "LEAD": 0}
    assert await created_events(database) == []
    # The message reached no known contact either.
    before = await known(database)
    with pytest.raises(Aborted):
        await submit(database)
    assert await stored(database) == before


async def test_a_submission_reads_back_neither_the_log_nor_more_than_the_count(
    database, moment, commands
):
    """A public form may be sent often: the contact's log (up to SPILL_AT entries) stays put."""
    old = [activity.entry("NOTE", text="x" * 1000, at=moment) for _ in range(50)]
    await known(database, activity=old, activityCount=len(old), activityEmbedded=len(old))
    commands.reset()
    await submit(database)
    (update,) = commands.documents("findAndModify", "contacts")
    assert update["fields"] == {"activity": 0, "searchTerms": 0}
    (count,) = commands.documents("findAndModify", "rate_limits")
    assert count["fields"] == {"count": 1}
