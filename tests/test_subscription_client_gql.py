"""Python's `gql` client against the real `contactgraph serve`: record, read and cancel a membership."""

from __future__ import annotations

from typing import Any

from real_server import RunningServer, missing_client, real_server_fixture  # noqa: F401

try:
    from gql import Client, GraphQLRequest
    from gql.transport.httpx import HTTPXAsyncTransport
except ImportError as error:  # pragma: no cover - the test extra pins it
    missing_client(f"gql is not installed ({error}); pip install -e '.[test]'")

RECORD = """
mutation Record($input: SubscriptionContractInput!) {
  subscriptionContractRecord(input: $input) {
    subscriptionContract { id status contact { id } }
    userErrors { field message code }
  }
}
"""
TAB = """
query Tab($id: ID!) {
  contact(id: $id) {
    kind
    activeSubscriptionCount
    isMember
    subscriptionContracts(first: 10) {
      totalCount
      nodes { externalId kind status title quantity price { amount currencyCode } cancelRequestedAt }
    }
  }
  members: contacts(first: 5, filter: { segment: "MEMBERS" }) { nodes { id } }
}
"""
CANCEL = """
mutation Cancel($id: ID!, $reason: String) {
  subscriptionContractCancel(id: $id, reason: $reason) {
    subscriptionContract { cancelRequestedAt }
    userErrors { code }
  }
}
"""


def client(server: RunningServer) -> Client:
    transport = HTTPXAsyncTransport(url=server.graphql_url, headers=server.headers, timeout=30)
    return Client(transport=transport)


def request(document: str, **variables: Any) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


async def test_the_recurring_tab_over_http_with_gql(real_server):
    membership = {
        "externalId": "GQL-1",
        "email": "gql-member@example.com",
        "kind": "MEMBERSHIP",
        "status": "ACTIVE",
        "title": "Studio pass",
        "price": "19.00",
        "currencyCode": "EUR",
        "interval": "MONTH",
        "startedAt": "2026-01-01T00:00:00Z",
    }
    async with client(real_server) as session:
        recorded = await session.execute(request(RECORD, input=membership))
        answer = recorded["subscriptionContractRecord"]
        assert answer["userErrors"] == []
        contract_id = answer["subscriptionContract"]["id"]
        contact_id = answer["subscriptionContract"]["contact"]["id"]

        asked = await session.execute(request(CANCEL, id=contract_id, reason="Moving"))
        assert asked["subscriptionContractCancel"]["userErrors"] == []
        asked_at = asked["subscriptionContractCancel"]["subscriptionContract"]["cancelRequestedAt"]
        assert asked_at

        tab = await session.execute(request(TAB, id=contact_id))

    assert tab["contact"]["kind"] == "CUSTOMER"
    assert tab["contact"]["activeSubscriptionCount"] == 1 and tab["contact"]["isMember"] is True
    assert tab["contact"]["subscriptionContracts"] == {
        "totalCount": 1,
        "nodes": [
            {
                "externalId": "GQL-1",
                "kind": "MEMBERSHIP",
                "status": "ACTIVE",
                "title": "Studio pass",
                "quantity": 1,
                "price": {"amount": "19.00", "currencyCode": "EUR"},
                "cancelRequestedAt": asked_at,
            }
        ],
    }
    assert {"id": contact_id} in tab["members"]["nodes"]
