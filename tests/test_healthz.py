"""GET /healthz: 200 while MongoDB answers, 503 with a JSON reason when it does not."""

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


async def test_unhealthy_when_mongodb_goes_away(settings):
    # A database of its own, so that stopping it touches no other test.
    server = EmbeddedServer(":memory:").start()
    try:
        app = create_app(dataclasses.replace(settings, mongodb_uri=server.uri))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/healthz")).status_code == 200
                server.stop()
                started = time.monotonic()
                response = await client.get("/healthz")
                elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "unavailable", "reason": "MongoDB is not reachable."}
    assert "127.0.0.1" not in response.text  # the reason names no address
    assert elapsed < 5
