"""Shop and key rules to the edge: ids, currencies, webhook secrets, key names, what is stored.

tests/test_auth.py tells the story through HTTP (which key may call, in
which shop); these pin the rules underneath: the shapes a shop id and a
currency may take (both sides of each bound), how a webhook secret is
shown and read back as the HMAC key it stands for, the previous secret's
overlap to the instant, and what making, listing, revoking and finding a
key stores and answers.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from conftest import OTHER_SHOP, SHOP

from resolvers import shops as shop_rules
from resolvers.shops import (
    ApiKey,
    Role,
    Shop,
    ShopError,
    create_key,
    create_keys,
    ensure_shop,
    find_key,
    get_shop,
    hash_key,
    list_keys,
    new_webhook_secret,
    revoke_key,
    rotate_webhook_secret,
    webhook_secret,
    webhook_secret_key,
    webhook_secret_text,
)

T0 = dt.datetime(2026, 2, 1, 8, 0, tzinfo=dt.UTC)
SHOP_ID_MESSAGE = "A shop id is 1-63 lower-case letters, digits, '-' or '_'."
CURRENCY_MESSAGE = "A currency is a three-letter ISO 4217 code such as EUR."
NAME_MESSAGE = "A key's name is 1-100 characters: it signs notes and consent changes."


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The shops' clock: each read takes the next minute from T0 (the list holds those given)."""
    given: list[dt.datetime] = []

    def tick() -> dt.datetime:
        given.append(T0 + dt.timedelta(minutes=len(given)))
        return given[-1]

    monkeypatch.setattr(shop_rules, "now", tick)
    return given


# -- roles -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "text"),
    [
        (Role.ADMIN, "An ADMIN key"),
        (Role.STAFF, "A STAFF key"),
        (Role.READER, "A READER key"),
        (Role.INGEST, "An INGEST key"),
        (Role.PUBLIC, "A PUBLIC key"),
    ],
)
def test_a_role_names_its_key_with_the_right_article(role, text):
    assert role.a_key == text


# -- webhook secrets ---------------------------------------------------------


def test_a_new_webhook_secret_is_32_random_bytes_in_standard_webhooks_form():
    secrets = {new_webhook_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        key = webhook_secret_key(secret)
        assert key is not None and len(key) == 32
        assert secret == "whsec_" + base64.b64encode(key).decode("ascii")


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (None, ""),
        ("", ""),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        # A secret from before Standard Webhooks: its hex text was the key, byte for byte.
        ("0a1b2c", "whsec_MGExYjJj"),
    ],
)
def test_a_stored_secret_is_shown_in_standard_webhooks_form(stored, shown):
    assert webhook_secret_text(stored) == shown


def test_an_old_hex_secret_stays_the_same_hmac_key():
    old = "3f2a9c" * 8
    assert webhook_secret_key(webhook_secret_text(old)) == old.encode()


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("whsec_AAEC", b"\x00\x01\x02"),
        ("whsec_aGVsbG8=", b"hello"),
        ("whsec_", None),  # no key at all
        ("aGVsbG8=", None),  # not a whsec_ secret
        ("WHSEC_aGVsbG8=", None),
        (" whsec_aGVsbG8=", None),
        ("whsec_aGVsbG8", None),  # padding missing
        ("whsec_aGV*bG8=", None),  # not base64
        ("whsec_aGVs bG8=", None),
        ("whsec_aGVsbG8=é", None),  # not even ASCII
    ],
)
def test_a_secret_is_read_as_its_key_only_when_it_is_whsec_and_strict_base64(secret, key):
    assert webhook_secret_key(secret) == key


def shop(**fields: Any) -> Shop:
    return Shop(**{"id": "s", "name": "S", "currency": None, "webhook_secret": "whsec_A", **fields})


def test_the_previous_secret_verifies_until_the_instant_its_overlap_ends():
    until = T0 + dt.timedelta(hours=24)
    both = shop(previous_webhook_secret="whsec_P", previous_webhook_secret_until=until)
    assert both.webhook_secrets(until - dt.timedelta(microseconds=1)) == ["whsec_A", "whsec_P"]
    assert both.webhook_secrets(until) == ["whsec_A"]
    assert both.webhook_secrets(until + dt.timedelta(seconds=1)) == ["whsec_A"]


def test_a_previous_secret_without_an_end_or_a_missing_secret_verifies_nothing():
    assert shop(previous_webhook_secret="whsec_P").webhook_secrets(T0) == ["whsec_A"]
    assert shop(previous_webhook_secret_until=T0 + dt.timedelta(hours=1)).webhook_secrets(T0) == [
        "whsec_A"
    ]
    only_previous = shop(
        webhook_secret="",
        previous_webhook_secret="whsec_P",
        previous_webhook_secret_until=T0 + dt.timedelta(hours=1),
    )
    assert only_previous.webhook_secrets(T0) == ["whsec_P"]
    assert shop(webhook_secret="").webhook_secrets(T0) == []


def test_a_shop_is_read_from_its_document():
    assert Shop.from_doc({"_id": "acme", "webhookSecret": "0a1b2c"}) == Shop(
        id="acme",
        name="acme",
        currency=None,
        webhook_secret="whsec_MGExYjJj",
        previous_webhook_secret=None,
        previous_webhook_secret_until=None,
    )
    until = T0 + dt.timedelta(hours=24)
    assert Shop.from_doc(
        {
            "_id": "acme",
            "name": "ACME Inc.",
            "currency": "EUR",
            "webhookSecret": "whsec_AAEC",
            "previousWebhookSecret": "0a1b2c",
            "previousWebhookSecretUntil": until,
        }
    ) == Shop("acme", "ACME Inc.", "EUR", "whsec_AAEC", "whsec_MGExYjJj", until)
    # An empty name or previous secret is none.
    assert Shop.from_doc(
        {"_id": "acme", "name": "", "webhookSecret": "", "previousWebhookSecret": ""}
    ) == Shop("acme", "acme", None, "", None, None)


# -- keys ---------------------------------------------------------------------


def test_a_key_is_stored_as_its_sha256():
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("cg_admin_x") == (
        "e5c92252c9ebfb25d31f3b46f86eb393678ec3d34d6aac8cccbd0dd9043c1e90"
    )
    # Not ASCII either: UTF-8.
    assert hash_key("é") == "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"


# -- shops (stored) ------------------------------------------------------------


@pytest.mark.parametrize(
    "shop_id", ["a", "0", "acme", "acme-shop_2", "a" + "-" * 62, "9" * 63, "a_"]
)
async def test_a_shop_id_of_up_to_63_lower_case_letters_digits_dashes_and_underscores(
    database, shop_id
):
    made, created = await ensure_shop(database, shop_id)
    assert (made.id, made.name, created) == (shop_id, shop_id, True)


@pytest.mark.parametrize(
    "shop_id", ["", "a" * 64, "Acme", "-acme", "_acme", "acme shop", "acme.shop", "acme\n", "é"]
)
async def test_any_other_shop_id_is_refused(database, shop_id):
    with pytest.raises(ShopError, match=f"^{SHOP_ID_MESSAGE}$".replace("(", r"\(")):
        await ensure_shop(database, shop_id)
    assert await database.shops.count_documents({}) == 0


@pytest.mark.parametrize("currency", ["eur", "EU", "EURO", "E1R", " EUR", ""])
async def test_a_currency_is_three_capital_letters(database, currency):
    with pytest.raises(ShopError) as refusal:
        await ensure_shop(database, "acme", currency=currency)
    assert str(refusal.value) == CURRENCY_MESSAGE
    assert await database.shops.count_documents({}) == 0


async def test_a_new_shop_is_stored_with_a_fresh_secret_and_no_labels(database, clock):
    made, created = await ensure_shop(database, "acme", "ACME Inc.", "EUR")
    assert created is True
    doc = await database.shops.find_one({"_id": "acme"})
    assert doc == {
        "_id": "acme",
        "name": "ACME Inc.",
        "currency": "EUR",
        "webhookSecret": made.webhook_secret,
        "labelCount": 0,
        "createdAt": T0,
    }
    assert webhook_secret_key(made.webhook_secret) is not None
    assert made == Shop("acme", "ACME Inc.", "EUR", made.webhook_secret)


async def test_an_existing_shop_is_returned_as_it_is(database):
    await ensure_shop(database, "zeta", "Zeta Ltd.", "GBP")
    first, _ = await ensure_shop(database, "acme", "ACME Inc.", "EUR")
    again, created = await ensure_shop(database, "acme", "Other Name", "USD")
    assert created is False
    assert again == first
    assert await database.shops.count_documents({}) == 2


async def test_a_shop_and_its_secret_are_read_or_none(database):
    await database.shops.insert_one({"_id": "zeta", "webhookSecret": "ffff"})
    assert await get_shop(database, "acme") is None
    assert await webhook_secret(database, "acme") is None
    await database.shops.insert_one({"_id": "acme", "webhookSecret": "0a1b2c"})
    assert await get_shop(database, "acme") == Shop("acme", "acme", None, "whsec_MGExYjJj")
    assert await webhook_secret(database, "acme") == "whsec_MGExYjJj"


async def test_a_rotation_keeps_the_old_secret_for_24_hours(database, clock):
    made, _ = await ensure_shop(database, "acme")
    secret, until = await rotate_webhook_secret(database, "acme", at=T0 + dt.timedelta(hours=3))
    assert until == T0 + dt.timedelta(hours=27)
    assert secret != made.webhook_secret and webhook_secret_key(secret) is not None
    after = await get_shop(database, "acme")
    assert after == Shop("acme", "acme", None, secret, made.webhook_secret, until)
    # Rotating again ends the first secret's overlap; without a time, from now.
    newer, until2 = await rotate_webhook_secret(database, "acme")
    assert until2 == clock[-1] + dt.timedelta(hours=24)
    assert await get_shop(database, "acme") == Shop("acme", "acme", None, newer, secret, until2)


async def test_rotating_the_secret_of_no_shop_is_refused(database):
    with pytest.raises(ShopError, match=r"^No shop 'nope'\.$"):
        await rotate_webhook_secret(database, "nope")
    assert await database.shops.count_documents({}) == 0


# -- keys (stored) --------------------------------------------------------------


async def test_a_key_is_made_once_and_only_its_hash_is_stored(database, clock):
    await ensure_shop(database, SHOP)
    key, raw = await create_key(database, SHOP, Role.INGEST, "  Shop Sync ")
    assert key == ApiKey(key.id, SHOP, Role.INGEST, "Shop Sync")
    assert raw.startswith("cg_ingest_") and len(raw) == len("cg_ingest_") + 43
    doc = await database.api_keys.find_one({})
    assert doc == {
        "_id": key.id,
        "shopId": SHOP,
        "role": "INGEST",
        "name": "Shop Sync",
        "hash": hash_key(raw),
        "prefix": raw[:12],
        "createdAt": clock[-1],
        "revokedAt": None,
    }
    assert raw not in str(doc).replace(doc["prefix"], "")


async def test_keys_are_made_in_one_write_in_the_order_asked(database):
    await ensure_shop(database, SHOP)
    made = await create_keys(
        database, SHOP, [(Role.ADMIN, "Ann"), (Role.PUBLIC, "Site"), (Role.ADMIN, "Ann")]
    )
    assert [(k.role, k.name) for k, _ in made] == [
        (Role.ADMIN, "Ann"),
        (Role.PUBLIC, "Site"),
        (Role.ADMIN, "Ann"),
    ]
    assert [raw[:9] for _, raw in made] == ["cg_admin_", "cg_public", "cg_admin_"]
    assert len({raw for _, raw in made}) == 3
    stored = await database.api_keys.find({}, {"_id": 1}).to_list()
    assert sorted(d["_id"] for d in stored) == sorted(k.id for k, _ in made)
    assert await create_keys(database, SHOP, []) == []
    assert await database.api_keys.count_documents({}) == 3


@pytest.mark.parametrize("name", ["K", "k" * 100, " " + "k" * 100 + " "])
async def test_a_key_name_of_1_to_100_characters_is_taken(database, name):
    await ensure_shop(database, SHOP)
    key, _ = await create_key(database, SHOP, Role.STAFF, name)
    assert key.name == name.strip()


@pytest.mark.parametrize("name", ["", "   ", "k" * 101])
async def test_any_other_key_name_is_refused_and_no_key_made(database, name):
    await ensure_shop(database, SHOP)
    with pytest.raises(ShopError) as refusal:
        await create_keys(database, SHOP, [(Role.STAFF, "Fine"), (Role.STAFF, name)])
    assert str(refusal.value) == NAME_MESSAGE
    assert await database.api_keys.count_documents({}) == 0


async def test_a_key_of_no_shop_is_refused(database):
    with pytest.raises(ShopError, match=r"^No shop 'nope'\.$"):
        await create_key(database, "nope", Role.ADMIN, "Ann")
    assert await database.api_keys.count_documents({}) == 0


async def test_a_shops_keys_are_listed_oldest_first_without_their_hashes(database, monkeypatch):
    await ensure_shop(database, SHOP)
    await ensure_shop(database, OTHER_SHOP)
    for minutes, name in ((5, "Later"), (1, "Earlier"), (3, "Between")):
        monkeypatch.setattr(shop_rules, "now", lambda m=minutes: T0 + dt.timedelta(minutes=m))
        await create_key(database, SHOP, Role.STAFF, name)
    await create_key(database, OTHER_SHOP, Role.STAFF, "Elsewhere")
    listed = await list_keys(database, SHOP)
    assert [k["name"] for k in listed] == ["Earlier", "Between", "Later"]
    assert all("hash" not in k and k["prefix"].startswith("cg_staff_") for k in listed)
    assert await list_keys(database, "nope") == []


async def test_a_key_is_found_by_its_raw_text_with_its_shop(database):
    shop_made, _ = await ensure_shop(database, SHOP, "Test Shop", "EUR")
    key, raw = await create_key(database, SHOP, Role.READER, "Reports")
    assert await find_key(database, raw) == (key, shop_made)
    assert await find_key(database, raw + "x") is None
    assert await find_key(database, "") is None


async def test_a_revoked_key_is_found_no_more(database, clock):
    await ensure_shop(database, SHOP)
    key, raw = await create_key(database, SHOP, Role.ADMIN, "Ann")
    other, other_raw = await create_key(database, SHOP, Role.ADMIN, "Bob")
    assert await revoke_key(database, str(key.id)) is True
    revoked = await database.api_keys.find_one({"_id": key.id})
    assert revoked["revokedAt"] == clock[-1]
    assert await find_key(database, raw) is None
    # Revoking again changes nothing, not even the time.
    assert await revoke_key(database, str(key.id)) is False
    assert (await database.api_keys.find_one({"_id": key.id}))["revokedAt"] == revoked["revokedAt"]
    assert await find_key(database, other_raw) is not None


@pytest.mark.parametrize(
    "key_id", ["", "nonsense", "0" * 23, "g" * 24, "65a1b2c3d4e5f60718293a4b", 12]
)
async def test_revoking_no_such_key_answers_false(database, key_id):
    await ensure_shop(database, SHOP)
    key, raw = await create_key(database, SHOP, Role.ADMIN, "Ann")
    assert await revoke_key(database, key_id) is False
    assert await find_key(database, raw) == (key, await get_shop(database, SHOP))


async def test_a_key_of_a_shop_gone_is_found_no_more(database):
    await ensure_shop(database, SHOP)
    _, raw = await create_key(database, SHOP, Role.ADMIN, "Ann")
    await database.shops.delete_one({"_id": SHOP})
    assert await find_key(database, raw) is None
