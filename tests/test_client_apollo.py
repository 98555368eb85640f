"""Node's Apollo Client and graphql-ws against the real `contactgraph serve`.

The clients are the scripts in tests/clients (pinned in its package.json and
lockfile; `npm ci` there installs them). Each prints one JSON line, which the
tests read; the subscription scripts first print `{"ready": true}`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from real_server import RunningServer, missing_client, real_server_fixture  # noqa: F401

CLIENTS = Path(__file__).with_name("clients")
PACKAGES = ("@apollo/client", "graphql", "graphql-ws", "ws")
SCRIPT_SECONDS = 60
EVENT_SECONDS = 30

CREATE = """
mutation($email: String!, $first: String, $last: String) {
  contactCreate(input: {email: $email, firstName: $first, lastName: $last}) {
    contact { id }
    userErrors { code }
  }
}
"""
NOTE = "mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { note { id } userErrors { code } } }"


@pytest.fixture(scope="module")
def node() -> str:
    """The `node` executable, once the scripts' packages are installed."""
    path = shutil.which("node")
    if path is None:
        missing_client("node is not installed; the client tests need Node 20 or newer")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        missing_client(f"node {version.strip()} is too old; the client tests need Node 20 or newer")
    missing = [p for p in PACKAGES if not (CLIENTS / "node_modules" / p / "package.json").exists()]
    if missing:
        missing_client(f"{', '.join(missing)} not installed: run `npm ci` in tests/clients")
    return path


def script_env(server: RunningServer, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "URL": server.url,
        "KEY": server.key,
        "TIMEOUT_SECONDS": str(EVENT_SECONDS),
        **extra,
    }


def run_script(node: str, server: RunningServer, script: str, **env: str) -> dict[str, Any]:
    """Runs a script to its end; its JSON line (it must have exited 0)."""
    done = subprocess.run(
        [node, script],
        cwd=CLIENTS,
        env=script_env(server, **env),
        capture_output=True,
        text=True,
        timeout=SCRIPT_SECONDS,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (
        f"{script} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return json.loads(lines[-1])


def run_failing_script(node: str, server: RunningServer, script: str, **env: str) -> Any:
    """Runs a script that must fail; the error it printed."""
    done = subprocess.run(
        [node, script],
        cwd=CLIENTS,
        env=script_env(server, **env),
        capture_output=True,
        text=True,
        timeout=SCRIPT_SECONDS,
    )
    assert done.returncode == 1, f"{script} exited with {done.returncode}:\n{done.stdout}"
    return json.loads(done.stdout.strip().splitlines()[-1])["error"]


def create_contact(server: RunningServer, email: str, first: str, last: str) -> str:
    answer = server.graphql(CREATE, {"email": email, "first": first, "last": last})
    assert answer["data"]["contactCreate"]["userErrors"] == [], answer
    return answer["data"]["contactCreate"]["contact"]["id"]


def first_event(
    node: str, server: RunningServer, script: str, contact_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Starts a subscription script, adds notes over HTTP until it reports an event.

    graphql-transport-ws has no "subscribed" answer, so one note could be
    written before the server listens: a note a second, until one arrives.
    Returns the script's result and the notes written, by id.
    """
    process = subprocess.Popen(
        [node, script],
        cwd=CLIENTS,
        env=script_env(server, CONTACT_ID=contact_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    notes: dict[str, str] = {}
    try:
        try:
            first = json.loads(lines.get(timeout=EVENT_SECONDS))
        except queue.Empty:
            pytest.fail(f"{script} did not connect within {EVENT_SECONDS} s")
        assert first == {"ready": True}, first
        deadline = time.monotonic() + EVENT_SECONDS
        while time.monotonic() < deadline:
            text = f"Called back ({len(notes) + 1})"
            answer = server.graphql(NOTE, {"id": contact_id, "text": text})
            assert answer["data"]["noteAdd"]["userErrors"] == [], answer
            notes[answer["data"]["noteAdd"]["note"]["id"]] = text
            try:
                result = json.loads(lines.get(timeout=1.0))
                break
            except queue.Empty:
                continue
        else:
            pytest.fail(f"{script} received no event within {EVENT_SECONDS} s")
        code = process.wait(timeout=SCRIPT_SECONDS)
        stderr = process.stderr.read() if process.stderr else ""
        assert code == 0, f"{script} exited with {code}: {result}\n{stderr}"
        return result, notes
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_apollo_pages_with_fetch_more_in_order_without_duplicates(node, real_server):
    emails = [f"pager{n}@example.com" for n in range(1, 6)]
    for n, email in enumerate(emails, 1):
        create_contact(real_server, email, f"Page{n}", "Pagewright")

    result = run_script(node, real_server, "apollo_page.mjs", TEXT="Pagewright")

    # relayStylePagination appends each page to the cached list.
    assert result == {
        "pages": [emails[:2], emails[:4], emails],
        "hasNextPage": False,
        "requests": 3,
    }


def test_apollo_persisted_query_link_registers_then_sends_the_hash_only(node, real_server):
    create_contact(real_server, "persisted@example.com", "Per", "Sistedly")

    result = run_script(node, real_server, "apollo_persisted.mjs", TEXT="Sistedly")

    first_run, second_run = result["runs"]
    hash_only, with_query = first_run["requests"]
    [again] = second_run["requests"]
    sent = [hash_only, with_query, again]
    hashes = {request["operations"][0]["hash"] for request in sent}
    assert len(hashes) == 1 and re.fullmatch(r"[0-9a-f]{64}", hashes.pop() or ""), sent
    assert [request["operations"][0]["hasQuery"] for request in sent] == [False, True, False]
    assert hash_only["errorCodes"] == [["PERSISTED_QUERY_NOT_FOUND"]]
    assert (with_query["status"], with_query["errorCodes"]) == (200, [[]])
    assert (again["status"], again["errorCodes"]) == (200, [[]])
    count = {"contacts": {"totalCount": 1, "__typename": "ContactConnection"}}
    assert first_run["data"] == count
    assert second_run["data"] == count


def test_apollo_batch_http_link_sends_three_queries_in_one_request(node, real_server):
    create_contact(real_server, "bea.batch@example.com", "Bea", "Batchley")

    result = run_script(
        node, real_server, "apollo_batch.mjs", EMAIL="bea.batch@example.com", TEXT="Batchley"
    )

    [request] = result["requests"]
    assert request["method"] == "POST" and request["batch"] is True
    assert [operation["hasQuery"] for operation in request["operations"]] == [True, True, True]
    assert (request["status"], request["errorCodes"]) == (200, [[], [], []])
    results = result["results"]
    contact = results["byEmail"]["contactByEmail"]
    assert (contact["email"], contact["firstName"], contact["lastName"]) == (
        "bea.batch@example.com",
        "Bea",
        "Batchley",
    )
    assert [s["name"] for s in results["segments"]["segments"]] == [
        "First-time customers",
        "Repeat customers",
        "Subscribers",
        "Members",
    ]
    assert results["search"]["contacts"]["totalCount"] == 1


@pytest.mark.parametrize("script", ["apollo_ws.mjs", "graphql_ws.mjs"])
def test_a_subscription_receives_a_note_added_over_http(node, real_server, script):
    contact_id = create_contact(real_server, f"watched.{script}@example.com", "Wat", "Ched")

    result, notes = first_event(node, real_server, script, contact_id)

    event = result["event"]
    assert event["id"] in notes, result
    assert event["text"] == notes[event["id"]]
    assert (event["kind"], event["author"]) == ("NOTE", "Demo admin")
    if script == "apollo_ws.mjs":
        assert event["__typename"] == "ActivityEntry"


def test_graphql_ws_with_a_bad_key_is_closed_forbidden(node, real_server):
    error = run_failing_script(
        node, real_server, "graphql_ws.mjs", KEY="cg_admin_bad", CONTACT_ID="x"
    )

    assert error == {"closeCode": 4403, "closeReason": "Forbidden"}


def test_apollo_http_link_with_a_bad_key_gets_401(node, real_server):
    error = run_failing_script(node, real_server, "apollo_page.mjs", KEY="cg_admin_bad", TEXT="x")

    assert error["networkError"]["statusCode"] == 401
    assert error["networkError"]["result"] == {
        "errors": [
            {
                "message": "A valid API key is required: Authorization: Bearer <key>.",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ]
    }
