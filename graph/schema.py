"""The schema, assembled from each feature's Query and Mutation types."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from graph.attribute_resolvers import use_attribute_resolvers
from graph.errors import is_unexpected
from graph.field_rights import RightsExecutor
from graph.http.request_log import OperationObserver
from graph.limits import QueryChecks
from graph.operations.activity import ActivityMutation, ActivitySubscription
from graph.operations.consent import ConsentMutation
from graph.operations.contacts import ContactMutation, ContactQuery
from graph.operations.forms import FormMutation
from graph.operations.labels import LabelMutation, LabelQuery
from graph.operations.merging import MergeMutation, MergeQuery
from graph.operations.messages import MessageMutation, MessageQuery
from graph.operations.orders import OrderMutation, OrderQuery
from graph.operations.privacy import PrivacyMutation, PrivacyQuery
from graph.operations.recurring import RecurringMutation, RecurringQuery
from graph.operations.reporting import ReportingQuery
from graph.operations.segments import SegmentMutation, SegmentQuery
from graph.operations.webhooks import WebhookMutation, WebhookQuery
from graph.settings import Settings
from graph.types.scalars import SCALARS

SCHEMA_FILE = Path(__file__).with_name("schema.graphql")
log = logging.getLogger("contactgraph")

Query = merge_types(
    "Query",
    (
        ContactQuery,
        SegmentQuery,
        OrderQuery,
        ReportingQuery,
        MergeQuery,
        PrivacyQuery,
        LabelQuery,
        MessageQuery,
        RecurringQuery,
        WebhookQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        ContactMutation,
        SegmentMutation,
        OrderMutation,
        FormMutation,
        ActivityMutation,
        MergeMutation,
        PrivacyMutation,
        LabelMutation,
        ConsentMutation,
        MessageMutation,
        RecurringMutation,
        WebhookMutation,
    ),
)
Subscription = merge_types("Subscription", (ActivitySubscription,))


class ContactgraphSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Client mistakes are answered, not logged; only failures get a traceback.
        for error in errors:
            if is_unexpected(error):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # Factories: Strawberry builds fresh extensions per request; the parse and
    # validation caches behind them are shared. Depth, aliases, cost and the
    # key's budget are checked in one pass after validation (graph/limits.py).
    extensions: list[Any] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        lambda: QueryChecks(settings),
        # Names each operation in its request's log line; counts open subscriptions.
        OperationObserver,
    ]
    schema = ContactgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
        # Root-field and field-level rights, checked before anything runs.
        execution_context_class=RightsExecutor,
    )
    use_attribute_resolvers(schema)
    return schema


def printed_schema() -> str:
    return str(build_schema()) + "\n"


if __name__ == "__main__":
    # python -m graph.schema  rewrites graph/schema.graphql from the code
    SCHEMA_FILE.write_text(printed_schema())
    print(f"wrote {SCHEMA_FILE}")
