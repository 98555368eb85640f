"""GET /healthz (the process answers) and GET /readyz (it can serve: MongoDB, indexes, outbox)."""

from __future__ import annotations

import dataclasses
import time

import httpx
from asgi_lifespan import LifespanManager

from graph.embedded import EmbeddedServer
from graph.http.app import create_app


async def test_healthy_without_a_key(http):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_without_a_key_and_without_smtp(http):
    response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"mongodb": "ok", "indexes": "ok", "outbox": "off"},
    }


async def test_ready_only_while_the_outbox_runs_when_smtp_is_set(settings):
    # Nothing listens on port 9: the outbox runs (and retries) all the same.
    app = create_app(dataclasses.replace(settings, smtp_url="smtp://127.0.0.1:9"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            running = await client.get("/readyz")
            await app.state.outbox.stop()
            stopped = await client.get("/readyz")
    assert running.status_code == 200
    assert running.json()["checks"]["outbox"] == "running"
    assert stopped.status_code == 503
    assert stopped.json() == {
        "status": "unavailable",
        "checks": {"mongodb": "ok", "indexes": "ok", "outbox": "stopped"},
    }


async def test_alive_but_not_ready_when_mongodb_goes_away(settings):
    # A database of its own, so that stopping it touches no other test.
    server = EmbeddedServer(":memory:").start()
    try:
        app = create_app(dataclasses.replace(settings, mongodb_uri=server.uri))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/readyz")).status_code == 200
                server.stop()
                started = time.monotonic()
                ready = await client.get("/readyz")
                elapsed = time.monotonic() - started
                alive = await client.get("/healthz")
    finally:
        server.stop()
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/json"
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"mongodb": "unreachable", "indexes": "ok", "outbox": "off"},
    }
    assert "127.0.0.1" not in ready.text  # the answer names no address
    assert elapsed < 5
