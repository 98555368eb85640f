"""The Starlette application: routes, middleware and the MongoDB client's lifetime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from graph.errors import MASKED_MESSAGE
from graph.http.auth import KeyCache
from graph.http.body_limit import BodyLimit
from graph.http.cors import BrowserOrigins
from graph.http.exports import export_contacts
from graph.http.graphql_view import ContactgraphGraphQL, GraphQLEndpoint
from graph.http.health import healthz, readyz
from graph.http.metrics import metrics_endpoint, worker_stopped
from graph.http.playground import playground_asset
from graph.http.request_log import RequestLog
from graph.http.responses import problem
from graph.http.unsubscribe import unsubscribe_endpoint
from graph.http.webhooks import order_webhook, subscription_webhook
from graph.log_setup import configure_logging, skip_unused_record_fields
from graph.schema import build_schema
from graph.settings import Settings
from graph.tracing import Tracing
from loaders.activity_feed import ActivityFeed
from loaders.contacts import adapt_to_server
from loaders.mongo import Database, connect
from loaders.observability import CommandMonitor
from resolvers.event_delivery import delivery_from_settings
from resolvers.migrations import SchemaNotReady, migrate, schema_gaps
from resolvers.outbox import Outbox, RetryPolicy, SmtpServer

log = logging.getLogger("contactgraph")


async def internal_error(request: Request, exc: Exception) -> Response:
    # Outside GraphQL execution (e.g. the key look-up while MongoDB is away).
    # Starlette re-raises after this answer so the server logs the traceback;
    # the client learns nothing of it.
    return problem(500, MASKED_MESSAGE, "INTERNAL_SERVER_ERROR")


def _outbox(database: Database, settings: Settings) -> Outbox:
    policy = RetryPolicy(
        first_delay=settings.outbox_retry_first_seconds,
        max_delay=settings.outbox_retry_max_seconds,
        give_up_after=settings.outbox_give_up_hours * 3600,
    )
    server = SmtpServer.from_url(settings.smtp_url or "")
    return Outbox(database, server, settings.mail_from, policy, settings.outbox_poll_seconds)


def create_app(settings: Settings, tracing: Tracing | None = None) -> Starlette:
    """The app; `tracing` (else from the OTEL_* environment, else none) makes its spans."""
    if not settings.mongodb_uri:
        raise ValueError(
            "create_app needs settings.mongodb_uri (the CLI starts the embedded server)"
        )
    tracing = tracing if tracing is not None else Tracing.from_env()
    schema = build_schema(settings)
    view = ContactgraphGraphQL(schema, settings)
    endpoint = GraphQLEndpoint(view)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect(
            settings.mongodb_uri or "",
            serverSelectionTimeoutMS=5000,
            # Each command's time, for the request line and the metrics.
            event_listeners=[CommandMonitor(tracing)],
        )
        database = Database(client[settings.database])
        try:
            await adapt_to_server(database)
            if settings.migrate_on_start:
                await migrate(database)
            elif gaps := await schema_gaps(database):
                # Building indexes or rewriting data is one deploy step
                # (`contactgraph migrate`), never each worker's start.
                raise SchemaNotReady(gaps)
        except BaseException:
            await client.close()
            raise
        app.state.indexes_ensured = True
        app.state.database = database
        app.state.settings = settings
        app.state.key_cache = KeyCache(settings.key_cache_seconds)
        app.state.activity_feed = ActivityFeed(database)
        # Without SMTP_URL messages stay QUEUED: nothing delivers them.
        app.state.outbox = _outbox(database, settings) if settings.smtp_url else None
        if app.state.outbox is not None:
            app.state.outbox.start()
        # Outbound events to the shops' webhook endpoints (every instance shares the queue).
        app.state.event_delivery = delivery_from_settings(database, settings)
        if settings.webhook_delivery:
            app.state.event_delivery.start()
        try:
            yield
        finally:
            await app.state.event_delivery.stop()
            if app.state.outbox is not None:
                await app.state.outbox.stop()
            await app.state.activity_feed.close()
            await client.close()
            worker_stopped()
            if tracing is not None:
                tracing.shutdown()

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoint),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/playground/{path:path}", playground_asset, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
        Route("/exports/contacts.csv", export_contacts, methods=["GET"]),
        Route("/webhooks/orders", order_webhook(schema, settings), methods=["POST"]),
        Route("/webhooks/subscriptions", subscription_webhook(schema, settings), methods=["POST"]),
    ]
    if settings.metrics_token:
        # Without a token there is no /metrics at all (404, like any unknown path).
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={Exception: internal_error}
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Outermost, so refusals (401, 413) reach the browser app readable too.
        app.add_middleware(BrowserOrigins, origins=settings.cors_origins)
    # Outermost of all: every answer, refusals and preflights too, has a request id and a line.
    app.add_middleware(RequestLog, tracing=tracing)
    return app


def app_from_env() -> Starlette:
    """The app as uvicorn's workers build it: settings from the environment."""
    settings = Settings.from_env()
    if not logging.getLogger().handlers:
        # Run by uvicorn directly rather than by `contactgraph serve`, which configures it.
        configure_logging(settings.log_format)
    skip_unused_record_fields()  # in each of uvicorn's workers too
    return create_app(settings)
