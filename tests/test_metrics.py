"""GET /metrics: behind its bearer token, the series an operator alerts on, bounded labels."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from bson import ObjectId
from prometheus_client.parser import text_string_to_metric_families
from serve_process import Serve, cli_env, run_cli

from graph.embedded import free_port
from graph.http.app import create_app
from graph.http.metrics import OTHER, BoundedNames
from graph.settings import Settings, SettingsError
from loaders.activity_feed import ActivityFeed
from loaders.mongo import ensure_indexes
from resolvers.clock import now
from resolvers.contacts import new_contact

TOKEN = "scrape-token-0123456789abcdef"
PAGE = "query Page { contacts(first: 2) { totalCount nodes { id } } }"


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one series in a scrape (0 when it is not there)."""
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.fixture(scope="module")
async def metered(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a metrics token, as an HTTP client."""
    app = create_app(dataclasses.replace(settings, metrics_token=TOKEN))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


async def test_without_a_token_there_is_no_metrics_endpoint(http):
    response = await http.get("/metrics")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-0123456789abcdef",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
    ],
)
async def test_a_missing_or_wrong_token_is_answered_like_an_unknown_path(
    metered, database, authorization
):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await metered.get("/metrics", headers=headers)
    unknown = await metered.get("/no-such-path")
    assert response.status_code == unknown.status_code == 404
    assert response.text == unknown.text
    assert "contactgraph_" not in response.text


def test_the_token_must_be_long_enough():
    assert Settings.from_env({}).metrics_token is None
    assert Settings.from_env({"CONTACTGRAPH_METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
    for bad in ("short", "sixteen chars !!", "x" * 15):
        with pytest.raises(SettingsError, match="CONTACTGRAPH_METRICS_TOKEN"):
            Settings.from_env({"CONTACTGRAPH_METRICS_TOKEN": bad})


async def test_requests_errors_cost_and_commands_are_counted(metered, keys):
    admin = {"Authorization": f"Bearer {keys['ADMIN']}"}
    before = await scrape(metered)
    costs = []
    for _ in range(2):
        body = (await metered.post("/graphql", json={"query": PAGE}, headers=admin)).json()
        costs.append(body["extensions"]["cost"]["actualQueryCost"])
    bad = "query Bad { contacts(first: 0) { totalCount } }"
    assert (await metered.post("/graphql", json={"query": bad}, headers=admin)).status_code == 200
    assert (await metered.post("/graphql", json={"query": PAGE})).status_code == 401
    after = await scrape(metered)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    duration = "contactgraph_request_duration_seconds_count"
    assert grew(duration, route="/graphql", operation="Page", outcome="ok") == 2
    assert grew(duration, route="/graphql", operation="Bad", outcome="client_error") == 1
    assert grew(duration, route="/graphql", operation="", outcome="client_error") == 1
    assert grew("contactgraph_request_duration_seconds_sum", route="/graphql", operation="Page") > 0
    assert grew("contactgraph_errors_total", code="BAD_USER_INPUT") == 1
    assert grew("contactgraph_errors_total", code="UNAUTHENTICATED") == 1
    assert grew("contactgraph_query_cost_points_total", operation="Page") == sum(costs) > 0
    assert grew("contactgraph_mongodb_command_duration_seconds_count", command="find") >= 2
    assert sample(after, "contactgraph_requests_in_flight") == 1  # the scrape itself


async def test_throttled_operations_are_counted(settings, keys):
    tight = dataclasses.replace(
        settings, metrics_token=TOKEN, cost_limit=40, throttle_bucket=40, throttle_restore=1
    )
    app = create_app(tight)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            before = await scrape(client)
            headers = {"Authorization": f"Bearer {keys['STAFF']}"}
            statuses = [
                (await client.post("/graphql", json={"query": PAGE}, headers=headers)).status_code
                for _ in range(3)
            ]
            after = await scrape(client)
    assert statuses.count(429) == 2  # the first fits the bucket, the next two do not
    name = "contactgraph_throttled_operations_total"
    assert sample(after, name, operation="Page") - sample(before, name, operation="Page") == 2
    code = "contactgraph_errors_total"
    assert sample(after, code, code="THROTTLED") - sample(before, code, code="THROTTLED") == 2
    throttled = "contactgraph_request_duration_seconds_count"
    labels = {"route": "/graphql", "operation": "Page", "outcome": "throttled"}
    assert sample(after, throttled, **labels) - sample(before, throttled, **labels) == 2


async def test_outbox_depth_and_the_age_of_its_oldest_message(metered, database):
    empty = await scrape(metered)
    assert sample(empty, "contactgraph_outbox_queued_messages") == 0
    assert sample(empty, "contactgraph_outbox_oldest_queued_age_seconds") == 0
    at = now()
    docs = [
        {"createdAt": at - dt.timedelta(hours=1), "status": "QUEUED"},
        {"createdAt": at - dt.timedelta(minutes=5), "status": "QUEUED"},
        {"createdAt": at - dt.timedelta(days=2), "status": "SENT"},
        {"createdAt": at - dt.timedelta(days=3), "status": "FAILED"},
    ]
    await database.messages.insert_many(
        [{"_id": ObjectId(), "shopId": "test-shop", "nextAttemptAt": at, **d} for d in docs]
    )
    text = await scrape(metered)
    assert sample(text, "contactgraph_outbox_queued_messages") == 2
    assert 3600 <= sample(text, "contactgraph_outbox_oldest_queued_age_seconds") < 3660


async def test_a_scrape_of_the_outbox_is_one_count_and_one_indexed_find(
    metered, database, commands
):
    await database.messages.insert_one(
        {
            "_id": ObjectId(),
            "shopId": "s",
            "status": "QUEUED",
            "createdAt": now(),
            "nextAttemptAt": now(),
        }
    )
    commands.reset()
    await scrape(metered)
    assert commands.on("messages") == ["aggregate", "find"]
    plan = (
        await database.messages.find({"status": "QUEUED"}).sort("createdAt", 1).limit(1).explain()
    )
    assert "status_1_createdAt_1" in str(plan)


def test_operation_names_are_bounded():
    names = BoundedNames(3, 64)
    assert [names.label(n) for n in ("A", "B", "A", "C", "D", "B")] == [
        "A",
        "B",
        "A",
        "C",
        OTHER,
        "B",
    ]
    assert names.label("x" * 65) == OTHER
    assert BoundedNames(3, 64).label("x" * 64) == "x" * 64


async def test_a_long_operation_name_counts_as_other(metered, keys):
    admin = {"Authorization": f"Bearer {keys['ADMIN']}"}
    long_name = "Q" + "x" * 64
    before = await scrape(metered)
    query = f"query {long_name} {{ contacts(first: 1) {{ nodes {{ id }} }} }}"
    assert (
        "errors"
        not in (await metered.post("/graphql", json={"query": query}, headers=admin)).json()
    )
    after = await scrape(metered)
    assert long_name not in after
    name = "contactgraph_request_duration_seconds_count"
    labels = {"route": "/graphql", "operation": OTHER, "outcome": "ok"}
    assert sample(after, name, **labels) - sample(before, name, **labels) == 1


async def test_change_stream_restarts_are_counted(metered, database):
    # A renamed (or dropped) contacts collection invalidates the stream, which reopens.
    feed = ActivityFeed(database)
    doc = new_contact("test-shop", "watched@example.com", "watched@example.com", "LEAD", {}, now())
    await database.contacts.insert_one(doc)
    before = await scrape(metered)
    try:
        async with feed.listen("test-shop", doc["_id"]) as entries:
            await database.contacts.rename("contacts_restart_probe")
            try:
                assert await asyncio.wait_for(_drain(entries), 10) == []
            finally:
                await database.db["contacts_restart_probe"].rename("contacts")
    finally:
        await feed.close()
        await ensure_indexes(database)
    after = await scrape(metered)
    name = "contactgraph_change_stream_restarts_total"
    assert (
        sample(after, name, reason="invalidated") - sample(before, name, reason="invalidated") == 1
    )


async def _drain(entries: AsyncIterator[dict]) -> list[dict]:
    return [entry async for entry in entries]


async def test_the_metrics_of_several_workers_are_reported_as_one(tmp_path: Path):
    """`serve --workers 2`: any worker's scrape counts the requests of both; the folder goes at the end."""
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = cli_env(CONTACTGRAPH_METRICS_TOKEN=TOKEN, TMPDIR=str(scratch))
    server = Serve(["--data-dir", str(tmp_path / "data")], env, port, serve_args=["--workers", "2"])
    try:
        server.wait_ready()
        assert [p.name for p in scratch.iterdir() if p.name.startswith("contactgraph-metrics-")]
        made = run_cli(
            [
                "--data-dir",
                str(tmp_path / "data"),
                "keys",
                "create",
                "--shop",
                "demo",
                "--role",
                "READER",
                "--name",
                "Scraper test",
            ],
            env,
        )
        key = made.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            # Many connections at once, so that both workers answer some.
            answers = await asyncio.gather(
                *(client.post("/graphql", json={"query": PAGE}, headers=headers) for _ in range(20))
            )
            assert {a.status_code for a in answers} == {200}
            counts = set()
            for _ in range(6):
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as fresh:
                    text = (
                        await fresh.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                    ).text
                counts.add(
                    sample(
                        text,
                        "contactgraph_request_duration_seconds_count",
                        route="/graphql",
                        operation="Page",
                        outcome="ok",
                    )
                )
        assert counts == {20}
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.output
    assert not [p for p in scratch.iterdir() if p.name.startswith("contactgraph-metrics-")]
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None
