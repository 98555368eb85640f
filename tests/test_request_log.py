"""Request ids, the request line, and no personal data in any log line."""

from __future__ import annotations

import json
import logging
import re
import signal
from pathlib import Path

import httpx
import pytest
from serve_process import Serve, cli_env, run_cli

from graph.embedded import free_port
from graph.log_setup import JsonFormatter, PlainFormatter, RequestIdFilter, logging_config
from graph.settings import Settings, SettingsError
from resolvers.shops import hash_key

GENERATED_ID = re.compile(r"[0-9a-f]{32}")

# Recognizable personal data: none of it may reach a log line.
EMAIL = "zelda.quixote@pii-probe.example"
FIRST = "Zeldaprobe"
LAST = "Quixoteprobe"
PHONE = "+49 30 5550 1788"
PHONE_DIGITS = "49305550178"
COMPANY = "Probecorp"
STREET = "Probestrasse 17"
CITY = "Probeville"
POSTAL = "39517"
NOTE = "Notetextprobe about the knee surgery"
MESSAGE = "Formmessageprobe please call back"
EVIDENCE = "Evidenceprobe checkbox wording"
SUBJECT = "Subjectprobe"
BODY = "Bodyprobe hello"
PERSONAL = [
    EMAIL,
    "zelda.quixote",
    "pii-probe",
    FIRST,
    LAST,
    PHONE,
    PHONE_DIGITS,
    COMPANY,
    STREET,
    CITY,
    POSTAL,
    "Notetextprobe",
    "Formmessageprobe",
    "Evidenceprobe",
    "Subjectprobe",
    "Bodyprobe",
]

PAGE = "query Page { contacts(first: 2) { totalCount nodes { id } } }"


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture):
    """Every record the app logged during the test, formatted as the server writes it (both formats)."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())

    def formatted() -> list[str]:
        out = []
        for record in caplog.records:
            if record.name.startswith(("httpx", "httpcore")):
                continue  # the test's own HTTP client, not the server
            out.append(JsonFormatter().format(record))
            out.append(PlainFormatter().format(record))
        return out

    return formatted


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        {"requestId": r.request_id, **r.fields}
        for r in caplog.records
        if r.name == "contactgraph.request"
    ]


async def test_a_sane_request_id_is_echoed_and_carried_in_the_line(api, caplog, lines):
    response = await api.client.post(
        "/graphql", json={"query": PAGE}, headers={**api.headers(), "X-Request-Id": "lb:7f3a.9_Z-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "lb:7f3a.9_Z-1"
    [line] = request_lines(caplog)
    assert line["requestId"] == "lb:7f3a.9_Z-1"


@pytest.mark.parametrize(
    "given", ["x" * 129, "has space", "<script>", "caf\u00e9", "a\tb", "", "zelda@example.com"]
)
async def test_an_odd_request_id_is_replaced_by_a_new_one(api, caplog, lines, given):
    headers = {**api.headers(), "X-Request-Id": given.encode("utf-8")}
    response = await api.client.post("/graphql", json={"query": PAGE}, headers=headers)
    assert response.status_code == 200
    made = response.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(made)
    assert [line["requestId"] for line in request_lines(caplog)] == [made]


async def test_without_a_request_id_each_request_gets_its_own(http, caplog, lines):
    first = await http.get("/healthz")
    second = await http.get("/healthz")
    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_every_line_written_during_a_request_carries_its_id(api, monkeypatch, caplog, lines):
    import graph.types.contact

    async def broken(database, match):
        raise RuntimeError("the count failed")

    monkeypatch.setattr(graph.types.contact, "count_contacts", broken)
    await api.client.post(
        "/graphql", json={"query": PAGE}, headers={**api.headers(), "X-Request-Id": "req-42"}
    )
    failure = [r for r in caplog.records if r.exc_info]
    assert failure, "the failure is logged"
    during = [r for r in caplog.records if r.name.startswith("contactgraph")]
    assert len(during) >= 2
    assert {r.request_id for r in during} == {"req-42"}
    assert any('"requestId":"req-42"' in line and "the count failed" in line for line in lines())
    # Outside a request, no id.
    logging.getLogger("contactgraph").warning("between requests")
    assert caplog.records[-1].request_id == "-"


async def test_the_request_line_names_shop_key_operation_cost_and_commands(
    api, database, keys, commands, caplog, lines
):
    commands.reset()
    response = await api.client.post("/graphql", json={"query": PAGE}, headers=api.headers())
    sent = commands.count
    body = response.json()
    [line] = request_lines(caplog)
    key = await database.api_keys.find_one({"hash": hash_key(keys["ADMIN"])})
    assert line["event"] == "request"
    assert line["method"] == "POST"
    assert line["route"] == "/graphql"
    assert line["status"] == 200
    assert line["shop"] == "test-shop"
    assert line["keyId"] == str(key["_id"])
    assert line["operations"] == ["Page"]
    assert line["cost"] == body["extensions"]["cost"]["actualQueryCost"] > 0
    assert "errors" not in line
    assert line["mongoCommands"] == sent > 0
    assert line["mongoMs"] > 0
    assert 0 < line["durationMs"] < 10_000
    for text in lines():
        assert keys["ADMIN"] not in text
        assert keys["ADMIN"][:16] not in text


async def test_a_batch_lists_each_operation_with_the_sum_of_their_costs(api, caplog, lines):
    batch = [
        {"query": PAGE},
        {"query": "query Labels { labels { name } }"},
        {"query": "query Broken { contacts(first: 0) { totalCount } }"},
    ]
    response = await api.client.post("/graphql", json=batch, headers=api.headers())
    costs = [entry["extensions"]["cost"]["actualQueryCost"] for entry in response.json()]
    [line] = request_lines(caplog)
    assert line["operations"] == ["Page", "Labels", "Broken"]
    assert line["cost"] == sum(costs)
    assert line["errors"] == ["BAD_USER_INPUT"]


async def test_refusals_are_logged_with_their_codes_and_no_shop(http, caplog, lines):
    response = await http.post("/graphql", json={"query": PAGE})
    assert response.status_code == 401
    [line] = request_lines(caplog)
    assert line["status"] == 401
    assert line["errors"] == ["UNAUTHENTICATED"]
    assert "shop" not in line and "keyId" not in line and "operations" not in line


async def test_a_request_that_is_not_graphql_logs_its_code_and_no_operation(api, caplog, lines):
    response = await api.client.post(
        "/graphql",
        content=b"{not json",
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    [line] = request_lines(caplog)
    assert line["errors"] == ["BAD_REQUEST"]
    assert line["shop"] == "test-shop"


async def test_lines_in_both_formats(api, caplog, lines):
    await api.client.post(
        "/graphql", json={"query": PAGE}, headers={**api.headers(), "X-Request-Id": "fmt-1"}
    )
    [record] = [r for r in caplog.records if r.name == "contactgraph.request"]
    as_json = json.loads(JsonFormatter().format(record))
    assert as_json["requestId"] == "fmt-1"
    assert as_json["level"] == "INFO"
    assert as_json["logger"] == "contactgraph.request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", as_json["time"])
    assert as_json["operations"] == ["Page"]
    assert as_json["message"].startswith("POST /graphql 200 ")
    plain = PlainFormatter().format(record)
    assert "[fmt-1]" in plain
    assert re.search(r"POST /graphql 200 [\d.]+ms op=Page cost=\d+ shop=test-shop key=\w+", plain)


async def test_health_checks_and_scrapes_are_not_logged_at_info(http, caplog, lines):
    assert (await http.get("/healthz")).status_code == 200
    assert request_lines(caplog) == []


async def test_an_unhandled_error_is_answered_500_with_the_request_id(
    served, keys, monkeypatch, caplog, lines
):
    async def broken(database, raw_key):
        raise RuntimeError(f"lookup failed for {EMAIL}")

    monkeypatch.setattr("graph.http.auth.find_key", broken)
    transport = httpx.ASGITransport(app=served.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/graphql",
            json={"query": PAGE},
            headers={"Authorization": f"Bearer {keys['ADMIN']}", "X-Request-Id": "boom-1"},
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    [line] = request_lines(caplog)
    assert line["status"] == 500 and line["errors"] == ["INTERNAL_SERVER_ERROR"]
    logged = "\n".join(lines())
    assert "lookup failed for <email>" in logged  # the operator sees the failure ...
    assert EMAIL not in logged  # ... without the address in it


def test_log_format_is_plain_or_json():
    assert Settings.from_env({}).log_format == "plain"
    assert Settings.from_env({"CONTACTGRAPH_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="CONTACTGRAPH_LOG_FORMAT must be plain or json"):
        Settings.from_env({"CONTACTGRAPH_LOG_FORMAT": "xml"})


def test_uvicorn_access_log_is_off_and_the_driver_debug_log_too():
    config = logging_config("json")
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["pymongo"]["level"] == "WARNING"


# The API surface, with personal data in inputs, in variables, and in the query text itself.
CREATE = """
mutation Create($input: ContactInput!) {
  contactCreate(input: $input) { contact { id email phone } userErrors { field message code } }
}"""
ADDRESS = {
    "name": f"{FIRST} {LAST}",
    "company": COMPANY,
    "line1": STREET,
    "postalCode": POSTAL,
    "city": CITY,
    "countryCode": "DE",
    "phone": PHONE,
}


async def run_the_api_surface(api, as_role, http) -> None:  # noqa: PLR0915
    made = await api.data(
        CREATE,
        {
            "input": {
                "email": EMAIL,
                "firstName": FIRST,
                "lastName": LAST,
                "phone": PHONE,
                "company": COMPANY,
                "shippingAddress": ADDRESS,
                "billingAddress": ADDRESS,
                "labels": ["VIP"],
            }
        },
    )
    contact_id = made["contactCreate"]["contact"]["id"]
    await api.data(
        "mutation Update($id: ID!, $input: ContactInput!) { contactUpdate(id: $id, input: $input) "
        "{ contact { id } userErrors { code } } }",
        {"id": contact_id, "input": {"firstName": FIRST + "x", "lastName": LAST}},
    )
    order = {
        "externalId": "probe-1",
        "email": EMAIL.upper(),
        "currencyCode": "EUR",
        "firstName": FIRST,
        "lastName": LAST,
        "phone": PHONE,
        "shippingAddress": ADDRESS,
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "12.50"}],
    }
    await as_role("INGEST").data(
        "mutation Order($input: OrderInput!) { orderRecord(input: $input) { order { id } userErrors { code } } }",
        {"input": order},
    )
    note = await api.data(
        "mutation Note($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) "
        "{ note { id } userErrors { code } } }",
        {"id": contact_id, "text": NOTE},
    )
    note_id = note["noteAdd"]["note"]["id"]
    await api.data(
        "mutation NoteEdit($id: ID!, $note: ID!, $text: String!) { noteUpdate(contactId: $id, "
        "noteId: $note, text: $text) { note { id } userErrors { code } } }",
        {"id": contact_id, "note": note_id, "text": NOTE + " (edited)"},
    )
    await api.data(
        f'mutation {{ labelsAdd(contactIds: ["{contact_id}"], labels: ["{LAST}"]) '
        "{ userErrors { code } } }"
    )
    await api.data(
        "mutation Consent($id: ID!, $evidence: String) { consentUpdate(contactId: $id, "
        "state: SUBSCRIBED, evidence: $evidence) { userErrors { code } } }",
        {"id": contact_id, "evidence": EVIDENCE},
    )
    await api.data(
        "mutation Send($id: ID!, $subject: String!, $body: String!) { messageSend(contactId: $id, "
        "subject: $subject, body: $body) { message { id } userErrors { code } } }",
        {"id": contact_id, "subject": SUBJECT, "body": BODY},
    )
    await as_role("PUBLIC").data(
        "mutation Form($input: ContactFormInput!) { contactFormSubmit(input: $input) "
        "{ ok userErrors { code } } }",
        {"input": {"email": EMAIL, "name": f"{FIRST} {LAST}", "phone": PHONE, "message": MESSAGE}},
    )
    # Reads, the personal data in the query text and in the URL.
    await api.data(f'{{ contactByEmail(email: "{EMAIL}") {{ id firstName }} }}')
    await api.data(f'{{ contacts(query: "{FIRST}") {{ nodes {{ id email }} }} }}')
    got = await api.client.get(
        "/graphql",
        params={"query": f'{{ contactByEmail(email: "{EMAIL}") {{ id }} }}'},
        headers=api.headers(),
    )
    assert got.status_code == 200
    exported = await api.client.get(
        "/exports/contacts.csv", params={"query": LAST}, headers=api.headers()
    )
    assert EMAIL in exported.text
    await api.data(f'{{ contactDataExport(id: "{contact_id}") }}')
    # Bad input: GraphQL errors echo it to the client, never to the log.
    echoed = await api.gql(f'{{ contactByEmail(email: {{ wrong: "{EMAIL}" }}) {{ id }} }}')
    assert EMAIL in json.dumps(echoed)
    echoed = await api.gql(
        "query Q($email: String!) { contactByEmail(email: $email) { id } }",
        {"email": {"address": EMAIL, "name": LAST}},
    )
    assert EMAIL in json.dumps(echoed)
    await api.gql(f'{{ contactByEmail(email: "{EMAIL}") {{ id ')  # a syntax error
    await api.gql(f'{{ contactByEmail(email: "{EMAIL}") {{ {FIRST} }} }}')  # no such field
    refused = await api.gql(CREATE, {"input": {"email": f"{FIRST}@@{COMPANY}", "phone": "+0 12"}})
    assert refused["data"]["contactCreate"]["userErrors"]
    await http.post(
        "/graphql", json={"query": CREATE, "variables": {"input": {"email": EMAIL}}}
    )  # no key
    await as_role("READER").gql(CREATE, {"input": {"email": EMAIL, "firstName": FIRST}})
    await http.get(f"/unsubscribe/{EMAIL}")
    await http.get(f"/{EMAIL}")
    await api.data(
        "mutation Erase($id: ID!) { contactErase(id: $id) { userErrors { code } } }",
        {"id": contact_id},
    )


async def test_no_personal_data_in_any_log_line(api, as_role, http, caplog, lines):
    await run_the_api_surface(api, as_role, http)
    logged = lines()
    assert len(request_lines(caplog)) == 24  # one line per request sent
    text = "\n".join(logged).lower()
    for value in PERSONAL:
        assert value.lower() not in text, f"{value!r} was logged"


def test_the_real_server_writes_json_lines_without_personal_data(tmp_path: Path):
    """The real `contactgraph serve`: every line of its output is JSON, and none holds personal data."""
    port = free_port()
    env = cli_env(CONTACTGRAPH_LOG_FORMAT="json")
    server = Serve(["--data-dir", str(tmp_path)], env, port)
    try:
        server.wait_ready()
        made = run_cli(
            [
                "--data-dir",
                str(tmp_path),
                "keys",
                "create",
                "--shop",
                "probe",
                "--role",
                "ADMIN",
                "--name",
                "Probe",
                "--create-shop",
            ],
            env,
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "real-1"}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            created = client.post(
                "/graphql",
                headers=headers,
                json={
                    "query": CREATE,
                    "variables": {"input": {"email": EMAIL, "firstName": FIRST, "phone": PHONE}},
                },
            )
            assert created.json()["data"]["contactCreate"]["contact"]["email"] == EMAIL
            query = f'{{ contactByEmail(email: "{EMAIL}") {{ id firstName }} }}'
            assert (
                client.get("/graphql", params={"query": query}, headers=headers).status_code == 200
            )
            client.get("/graphql", params={"query": query})  # no key: 401
            client.post("/graphql", headers=headers, json={"query": query + " {"})
            client.post(
                "/graphql",
                headers=headers,
                json={
                    "query": "query Q($e: String!) { contactByEmail(email: $e) { id } }",
                    "variables": {"e": {"x": EMAIL}},
                },
            )
            client.get(f"/unsubscribe/{EMAIL}")
            client.get("/exports/contacts.csv", params={"query": FIRST}, headers=headers)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output
    output = server.lines
    assert output
    records = [json.loads(line) for line in output]  # every line is one JSON object
    # Logs a log system keeps get no key: serve makes none and says how to.
    assert any(r["message"].startswith("there is no API key yet") for r in records)
    assert not any("cg_admin_" in line for line in output)
    mine = [r for r in records if r.get("requestId") == "real-1"]
    assert {r["route"] for r in mine if r.get("event") == "request"} == {
        "/graphql",
        "/exports/contacts.csv",
    }
    assert not any(
        "GET /graphql?" in line for line in output
    )  # no access log with the query string
    text = "\n".join(output).lower()
    for value in (EMAIL, "zelda.quixote", FIRST, PHONE, "5550 1788"):
        assert value.lower() not in text, f"{value!r} was logged"
    assert key not in text
