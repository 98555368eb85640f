"""What request ids, the request line, metrics and command timing cost per request.

    .venv/bin/python bench/observability_cost.py --contacts 1000 --iterations 200

Two copies of the app on one seeded database, in this process (httpx on the
ASGI transport): as shipped (request line at INFO written as JSON to
/dev/null, Prometheus metrics, the MongoDB command listener, the operation
observer), and with all of that taken out. The contact list page (50
contacts, every scalar field) runs on both in turn, round by round; the
answer is the median wall and CPU time of each and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, SideBySide, log, ratio, summary  # noqa: E402
from pymongo import monitoring  # noqa: E402

PAGE = """
query Page {
  contacts(first: 50, sortKey: NAME) {
    nodes { id email firstName lastName displayName phone company kind labels
            hasAccount detailsLocked orderCount firstOrderAt lastOrderAt createdAt updatedAt }
  }
}
"""


class _Silent(monitoring.CommandListener):
    """A listener that does nothing (the driver's own cost of having one stays in both)."""

    def __init__(self, *args: Any) -> None:
        pass

    def started(self, event: Any) -> None:
        pass

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def _bare(app: Any) -> Any:
    """The app without the request log, its metrics and the operation observer."""
    from starlette.routing import Route

    from graph.http.graphql_http import GraphQLOverHTTP
    from graph.http.request_log import OperationObserver, RequestLog

    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestLog]
    for route in app.routes:
        if isinstance(route, Route) and route.path == "/graphql":
            view = route.endpoint.view
            view.schema.extensions = [
                e for e in view.schema.extensions if e is not OperationObserver
            ]
            view.http = GraphQLOverHTTP(view.schema, view.get_context, view.settings.max_batch)
    return app


async def main(args: argparse.Namespace) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    import graph.http.app as app_module
    from graph.log_setup import configure_logging
    from graph.settings import Settings

    configure_logging("json")
    for handler in logging.getLogger().handlers:
        handler.setStream(args.sink)  # type: ignore[attr-defined]
    with harness.database_server() as server:
        async with harness.open_database(server) as database:
            log(f"seeding {args.contacts} contacts ...")
            await harness.seed_contacts(database, SHOP, args.contacts)
            key = await harness.admin_key(database)
        settings = Settings(
            mongodb_uri=server.uri, database=server.name, cost_limit=10_000, throttle_bucket=10**9
        )
        shipped = app_module.create_app(settings)
        # The bare app's client is made (in its lifespan) without the command listener.
        real_monitor = app_module.CommandMonitor
        app_module.CommandMonitor = _Silent  # type: ignore[assignment,misc]
        try:
            bare_life = LifespanManager(_bare(app_module.create_app(settings)))
            await bare_life.__aenter__()
        finally:
            app_module.CommandMonitor = real_monitor  # type: ignore[misc]
        async with LifespanManager(shipped) as with_life:
            headers = {"Authorization": f"Bearer {key}"}
            clients = {
                "with": httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=with_life.app), base_url="http://b"
                ),
                "without": httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=bare_life.app), base_url="http://b"
                ),
            }

            def page(client: httpx.AsyncClient) -> Any:
                async def call() -> None:
                    response = await client.post("/graphql", json={"query": PAGE}, headers=headers)
                    assert response.status_code == 200 and "errors" not in response.json()

                return call

            runs = SideBySide()
            await runs.run(
                {name: page(c) for name, c in clients.items()}, args.iterations, warmup=10
            )
            for client in clients.values():
                await client.aclose()
        await bare_life.__aexit__(None, None, None)
    wall = {name: summary(samples) for name, samples in runs.timings.items()}
    cpu = {name: summary(samples) for name, samples in runs.cpu.items()}
    harness.emit(
        {
            "machine": harness.machine(),
            "contacts": args.contacts,
            "iterations": args.iterations,
            "wall_ms": wall,
            "cpu_ms": cpu,
            "wall_ratio": ratio(wall["with"]["median_ms"], wall["without"]["median_ms"]),
            "cpu_ratio": ratio(cpu["with"]["median_ms"], cpu["without"]["median_ms"]),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=200)
    arguments = parser.parse_args()
    with open(os.devnull, "w") as arguments.sink:  # the request lines, written and thrown away
        harness.run(main(arguments))
