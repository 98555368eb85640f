"""Prometheus metrics, and `GET /metrics` behind its bearer token.

The metrics live in this process (prometheus_client's registry); with
`serve --workers N`, `PROMETHEUS_MULTIPROC_DIR` (set up by `serve`) makes
every worker write them to files there and a scrape of any worker reports
the sum of all.

Label values stay few: an operation name is one of the first
`MAX_OPERATION_NAMES` names this process has seen (at most
`MAX_OPERATION_NAME_LENGTH` characters), else `other`; routes are the
app's route templates; codes are the API's own.

The outbox's depth and the age of its oldest queued message are read from
MongoDB when scraped (one count and one indexed find), so every instance
reports the same shared queue.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from loaders.mongo import Database
from resolvers.clock import now

MAX_OPERATION_NAMES = 200
MAX_OPERATION_NAME_LENGTH = 64
OTHER = "other"

REQUEST_SECONDS = Histogram(
    "contactgraph_request_duration_seconds",
    "HTTP requests by route, GraphQL operation name (`batch` for several) and outcome "
    "(ok, client_error, throttled, server_error).",
    ["route", "operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REQUESTS_IN_FLIGHT = Gauge(
    "contactgraph_requests_in_flight",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
)
ERRORS = Counter(
    "contactgraph_errors_total",
    "Errors answered to clients, by extensions.code (GraphQL errors and HTTP refusals alike).",
    ["code"],
)
QUERY_COST = Counter(
    "contactgraph_query_cost_points_total",
    "Query cost points spent from the keys' budgets, by GraphQL operation name.",
    ["operation"],
)
THROTTLED = Counter(
    "contactgraph_throttled_operations_total",
    "GraphQL operations refused because their key's budget was spent (THROTTLED).",
    ["operation"],
)
SUBSCRIPTIONS_OPEN = Gauge(
    "contactgraph_subscriptions_open",
    "GraphQL subscriptions running now.",
    multiprocess_mode="livesum",
)
# The codes an error label may take beyond those seen: an unknown code is `other`.
MAX_ERROR_CODES = 100


class BoundedNames:
    """The first `limit` distinct names seen keep their own label; the rest are `other`."""

    def __init__(self, limit: int, max_length: int | None = None) -> None:
        self.limit = limit
        self.max_length = max_length
        self._seen: set[str] = set()

    def label(self, name: str) -> str:
        if name in self._seen:
            return name
        if (self.max_length is not None and len(name) > self.max_length) or len(
            self._seen
        ) >= self.limit:
            return OTHER
        self._seen.add(name)
        return name


OPERATION_NAMES = BoundedNames(MAX_OPERATION_NAMES, MAX_OPERATION_NAME_LENGTH)
ERROR_CODES = BoundedNames(MAX_ERROR_CODES, MAX_OPERATION_NAME_LENGTH)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def worker_stopped() -> None:
    """This process's live gauges (requests in flight, subscriptions) leave the sum of all workers."""
    if multiprocess_dir():
        mark_process_dead(os.getpid())


async def outbox_state(database: Database) -> tuple[int, float]:
    """Queued messages, and the age in seconds of the oldest (0 when none is queued)."""
    # Both served by the (status, createdAt) index of messages.
    queued = await database.messages.count_documents({"status": "QUEUED"})
    if not queued:
        return 0, 0.0
    oldest = await database.messages.find_one(
        {"status": "QUEUED"}, {"createdAt": 1}, sort=[("createdAt", 1)]
    )
    if oldest is None or oldest.get("createdAt") is None:
        return queued, 0.0
    return queued, max(0.0, (now() - oldest["createdAt"]).total_seconds())


async def events_state(database: Database) -> tuple[int, float]:
    """Webhook deliveries pending, and the age in seconds of the oldest (0 when none is)."""
    # Both served by the (status, createdAt) index of webhook_deliveries.
    pending = await database.webhook_deliveries.count_documents({"status": "PENDING"})
    if not pending:
        return 0, 0.0
    oldest = await database.webhook_deliveries.find_one(
        {"status": "PENDING"}, {"createdAt": 1}, sort=[("createdAt", 1)]
    )
    if oldest is None or oldest.get("createdAt") is None:
        return pending, 0.0
    return pending, max(0.0, (now() - oldest["createdAt"]).total_seconds())


class _Collected:
    """Metrics made for one scrape."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


class _ThisProcess:
    """The process's own registry, as one collector of the scrape's registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(extra: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_Collected(extra))
    return generate_latest(registry)


def authorized(request: Request, token: str) -> bool:
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def not_found() -> Response:
    # The same answer as a path that does not exist: the endpoint is not advertised.
    return PlainTextResponse("Not Found", status_code=404)


async def metrics_endpoint(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if not token or not authorized(request, token):
        return not_found()
    queued, age = await outbox_state(request.app.state.database)
    depth = GaugeMetricFamily(
        "contactgraph_outbox_queued_messages", "E-mail messages waiting in the outbox (QUEUED)."
    )
    depth.add_metric([], queued)
    oldest = GaugeMetricFamily(
        "contactgraph_outbox_oldest_queued_age_seconds",
        "Age of the oldest QUEUED message; 0 when the outbox is empty.",
    )
    oldest.add_metric([], age)
    pending, pending_age = await events_state(request.app.state.database)
    events = GaugeMetricFamily(
        "contactgraph_webhook_pending_deliveries",
        "Outbound events waiting for delivery to a webhook endpoint (PENDING).",
    )
    events.add_metric([], pending)
    events_oldest = GaugeMetricFamily(
        "contactgraph_webhook_oldest_pending_age_seconds",
        "Age of the oldest PENDING webhook delivery; 0 when none is pending.",
    )
    events_oldest.add_metric([], pending_age)
    return Response(
        exposition([depth, oldest, events, events_oldest]), media_type=CONTENT_TYPE_LATEST
    )


def observe_request(
    route: str, operation: str, outcome: str, seconds: float, codes: Iterable[str]
) -> None:
    REQUEST_SECONDS.labels(route, operation, outcome).observe(seconds)
    for code in codes:
        ERRORS.labels(ERROR_CODES.label(code)).inc()


def observe_operation(name: str, cost: int, throttled: bool) -> None:
    label = OPERATION_NAMES.label(name)
    if cost:
        QUERY_COST.labels(label).inc(cost)
    if throttled:
        THROTTLED.labels(label).inc()


def operation_label(name: str | None) -> str:
    return OPERATION_NAMES.label(name or "anonymous")


def subscription_opened() -> None:
    SUBSCRIPTIONS_OPEN.inc()


def subscription_closed() -> None:
    SUBSCRIPTIONS_OPEN.dec()
