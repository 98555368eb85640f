"""The queries the code sends are answered from an index that fits them (see tests/plans.py)."""

from __future__ import annotations

from list_factories import add_contacts, contact_doc
from plans import assert_index_walk

EMAIL_PAGE = """
query($after: String, $reverse: Boolean) {
  contacts(first: 10, after: $after, sortKey: EMAIL, reverse: $reverse) {
    nodes { email }
    pageInfo { endCursor }
  }
}
"""


def last_sorted_find(commands, collection: str = "contacts") -> dict:
    finds = [c for c in commands.documents("find", collection) if c.get("sort")]
    assert finds, f"no sorted find on {collection} was sent"
    return finds[-1]


async def test_an_email_sorted_page_walks_the_email_index(api, database, commands):
    await add_contacts(database, *[contact_doc(f"c{i:02}@example.com") for i in range(30)])

    for reverse in (False, True):
        commands.reset()
        first = (await api.data(EMAIL_PAGE, {"reverse": reverse}))["contacts"]
        await assert_index_walk(
            database,
            "contacts",
            last_sorted_find(commands),
            "shopId_1_emailKey_1__id_1",
            most_keys=11,
        )
        commands.reset()
        after = first["pageInfo"]["endCursor"]
        second = (await api.data(EMAIL_PAGE, {"after": after, "reverse": reverse}))["contacts"]
        assert second["nodes"][0]["email"] != first["nodes"][-1]["email"]
        await assert_index_walk(
            database,
            "contacts",
            last_sorted_find(commands),
            "shopId_1_emailKey_1__id_1",
            most_keys=12,
        )


async def test_the_csv_export_by_email_walks_the_email_index(http, keys, database, commands):
    await add_contacts(database, *[contact_doc(f"c{i:02}@example.com") for i in range(30)])
    commands.reset()

    response = await http.get(
        "/exports/contacts.csv",
        params={"sortKey": "EMAIL"},
        headers={"Authorization": f"Bearer {keys['READER']}"},
    )

    assert response.status_code == 200 and response.text.count("@example.com") == 30
    await assert_index_walk(
        database, "contacts", last_sorted_find(commands), "shopId_1_emailKey_1__id_1", most_keys=31
    )
