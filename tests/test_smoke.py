CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) {
    contact { id email kind displayName totalSpent { amount currencyCode } consent { state } createdAt }
    userErrors { field message code }
  }
}
"""


async def test_create_and_read(api):
    data = await api.data(CREATE, {"input": {"email": "Ann@Example.com", "firstName": "Ann"}})
    print(data)
    contact = data["contactCreate"]["contact"]
    assert contact["kind"] == "LEAD"
    again = await api.data(CREATE, {"input": {"email": "ann@example.com"}})
    assert again["contactCreate"]["userErrors"][0]["code"] == "TAKEN"
    page = await api.data("{ contacts(first: 5) { totalCount nodes { email } pageInfo { hasNextPage endCursor } } }")
    print(page)
    assert page["contacts"]["totalCount"] == 1
