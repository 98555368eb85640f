"""Liveness and readiness, for load balancers and orchestrators.

`GET /healthz`: the process answers (liveness: restart it when this fails).
The app only answers once its startup (migrations, indexes) is done, so a
200 here also means the app has started.

`GET /readyz`: this instance can serve (readiness: send it traffic):
MongoDB answers a ping within 2 s, the indexes were ensured at start, and
the outbox runs when SMTP_URL is set. 503 with the failing checks
otherwise; the answer names no address or error text.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loaders.mongo import Database

log = logging.getLogger("contactgraph")
PING_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _mongodb(database: Database) -> str:
    try:
        await asyncio.wait_for(database.db.command("ping"), timeout=PING_SECONDS)
    except Exception as err:  # any failure to answer in time means "not reachable"
        log.warning("readiness: MongoDB did not answer: %s", type(err).__name__)
        return "unreachable"
    return "ok"


async def readyz(request: Request) -> Response:
    state = request.app.state
    outbox = state.outbox
    checks = {
        "mongodb": await _mongodb(state.database),
        "indexes": "ok" if getattr(state, "indexes_ensured", False) else "missing",
        # Without SMTP_URL nothing is sent, by design: not a fault.
        "outbox": "off" if outbox is None else ("running" if outbox.running else "stopped"),
    }
    ready = (
        checks["mongodb"] == "ok" and checks["indexes"] == "ok" and checks["outbox"] != "stopped"
    )
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
