"""graphql-http's GraphQL-over-HTTP audit (npm `graphql-http`, `serverAudits`) against the real server.

The audit is the GraphQL over HTTP working group's own conformance check. It
runs on Node (tests/clients/audit.mjs) against `contactgraph serve`, every
request carrying an ADMIN key, and must pass every audit: MUST, SHOULD and MAY.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from real_server import RunningServer, missing_client, real_server_fixture  # noqa: F401

CLIENTS = Path(__file__).with_name("clients")
AUDIT_SCRIPT = CLIENTS / "audit.mjs"
EXPECTED_AUDITS = {"MUST": 13, "SHOULD": 23, "MAY": 25}


@pytest.fixture(scope="module")
def node() -> str:
    """Node with graphql-http installed; asked for before the server starts."""
    node = shutil.which("node")
    if node is None:
        missing_client("node is not installed (the audit is graphql-http, on Node)")
    if not (CLIENTS / "node_modules" / "graphql-http").is_dir():
        missing_client("graphql-http is not installed: run (cd tests/clients && npm ci)")
    return node


def run_audit(node: str, server: RunningServer) -> list[dict]:
    finished = subprocess.run(
        [node, str(AUDIT_SCRIPT)],
        cwd=CLIENTS,
        env={**os.environ, "URL": server.url, "KEY": server.key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_every_must_should_and_may_audit_passes(node: str, real_server: RunningServer) -> None:
    results = run_audit(node, real_server)

    requirement = Counter(result["name"].split(" ", 1)[0] for result in results)
    passed = Counter(
        result["name"].split(" ", 1)[0] for result in results if result["status"] == "ok"
    )
    failures = [
        f"{result['id']} {result['name']}: {result.get('reason')}"
        for result in results
        if result["status"] != "ok"
    ]
    assert not failures, "audits not passed:\n" + "\n".join(failures)
    assert dict(requirement) == EXPECTED_AUDITS, "the audit changed; review the new checks"
    assert dict(passed) == EXPECTED_AUDITS
