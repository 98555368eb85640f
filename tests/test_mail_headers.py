"""The unsubscribe headers as mail clients read them: the raw bytes an SMTP server receives.

RFC 2369 and RFC 8058 want `List-Unsubscribe: <URL>` in plain ASCII, folded
only at whitespace, never RFC 2047 encoded-words (Gmail and Outlook do not
decode them there), and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
Python's email parser would decode encoded-words and hide the fault, so
these tests read the bytes.
"""

from __future__ import annotations

import asyncio
import email.policy
import re
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import Api
from serve_process import Serve, cli_env, gql
from smtp_inbox import SmtpServer

from graph.embedded import free_port
from graph.http.app import create_app
from graph.settings import Settings, SettingsError
from resolvers.outbox import VerbatimHeader

# Long enough that the header line passes 78 characters, where the email
# package would otherwise switch to encoded-words.
PUBLIC_URL = "https://newsletters.a-rather-long-shop-domain.example/mail/links"
CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
SUBSCRIBE = """
mutation($id: ID!) { consentUpdate(contactId: $id, state: SUBSCRIBED) { userErrors { code } } }
"""
SEND = """
mutation($id: ID!) {
  messageSend(contactId: $id, subject: "Spring sale", body: "20% off.", marketing: true) {
    message { id } userErrors { code }
  }
}
"""
STATE = "query($id: ID!) { contact(id: $id) { consent { state source } } }"
HEADER = re.compile(rb"^List-Unsubscribe: <(http[^>\r\n]+)>\r\n", re.M)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def unsubscribe_url(raw: bytes) -> str:
    """The URL of the one raw, unfolded `List-Unsubscribe:` line; asserts the headers are readable."""
    headers = header_block(raw)
    assert b"=?" not in headers, headers.decode()  # no encoded-word anywhere in the headers
    assert headers.isascii()
    [url] = HEADER.findall(headers)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers
    return url.decode()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def mail_api(
    settings: Settings, smtp: SmtpServer, keys: dict[str, str]
) -> AsyncIterator[Api]:
    app = create_app(
        Settings(
            mongodb_uri=settings.mongodb_uri,
            database=settings.database,
            key_cache_seconds=0,
            migrate_on_start=True,
            smtp_url=f"smtp://127.0.0.1:{smtp.port}",
            public_url=PUBLIC_URL,
            outbox_poll_seconds=0.2,
        )
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, keys["ADMIN"])


async def test_the_raw_list_unsubscribe_header_is_plain_ascii(mail_api, smtp, database):
    gid = (await mail_api.data(CREATE, {"email": "fan@example.com"}))["contactCreate"]["contact"][
        "id"
    ]
    assert (await mail_api.data(SUBSCRIBE, {"id": gid}))["consentUpdate"]["userErrors"] == []
    assert (await mail_api.data(SEND, {"id": gid}))["messageSend"]["userErrors"] == []
    for _ in range(300):
        if smtp.inbox.received:
            break
        await asyncio.sleep(0.05)
    [raw] = smtp.inbox.raw()
    stored = await database.messages.find_one({})

    url = unsubscribe_url(raw)

    assert url == stored["unsubscribeUrl"]
    assert url.startswith(f"{PUBLIC_URL}/unsubscribe/")
    assert len(f"List-Unsubscribe: <{url}>") > 78  # the case the email package encodes


def test_serve_sends_links_to_the_port_it_listens_on(tmp_path, smtp):
    """The real `contactgraph serve --port P` with no public URL set: the link says port P."""
    port = free_port()
    server = Serve(
        [],
        cli_env(SMTP_URL=f"smtp://127.0.0.1:{smtp.port}"),
        port,
        serve_args=["--data-dir", str(tmp_path / "cg")],
    )
    try:
        server.wait_ready()
        [key] = server.admin_keys()
        gid = gql(server.url, key, CREATE, {"email": "reader@example.com"}).json()["data"][
            "contactCreate"
        ]["contact"]["id"]
        subscribed = gql(server.url, key, SUBSCRIBE, {"id": gid}).json()
        assert subscribed["data"]["consentUpdate"]["userErrors"] == [], subscribed
        sent = gql(server.url, key, SEND, {"id": gid}).json()
        assert sent["data"]["messageSend"]["userErrors"] == [], sent
        deadline = time.monotonic() + 30
        while not smtp.inbox.received and time.monotonic() < deadline:
            time.sleep(0.05)
        [raw] = smtp.inbox.raw()

        url = unsubscribe_url(raw)

        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", port)
        assert parts.path.startswith("/unsubscribe/")
        # And the link works against that very server: the page asks, the one-click POST records.
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and '<form method="post">' in page.text
        one_click = httpx.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert one_click.status_code == 200
        state = gql(server.url, key, STATE, {"id": gid}).json()["data"]["contact"]["consent"]
        assert state == {"state": "UNSUBSCRIBED", "source": "UNSUBSCRIBE_LINK"}
    finally:
        code = server.stop()
    assert code == 0, server.output


@pytest.mark.parametrize(
    "value",
    [
        "https://bücher.example",  # would need encoding in the header
        "https://shop.example/a b",
        "ftp://shop.example",
        "shop.example",
        "https://shop.example/?x=1",
        "https://shop.example/<x>",
    ],
)
def test_a_public_url_that_cannot_go_into_a_mail_header_stops_the_start(value):
    with pytest.raises(SettingsError, match="CONTACTGRAPH_PUBLIC_URL must be an http"):
        Settings.from_env({"CONTACTGRAPH_PUBLIC_URL": value})


def test_the_default_link_base_is_where_serve_listens():
    assert Settings.from_env({"CONTACTGRAPH_PORT": "18123"}).base_url == "http://127.0.0.1:18123"
    assert Settings(host="::1", port=9000).base_url == "http://[::1]:9000"
    configured = Settings.from_env({"CONTACTGRAPH_PUBLIC_URL": "https://shop.example/"})
    assert configured.base_url == "https://shop.example"


def test_a_long_header_folds_only_at_its_spaces():
    urls = "<https://shop.example/unsubscribe/" + "a" * 60 + ">, <mailto:out@shop.example>"
    folded = VerbatimHeader("List-Unsubscribe", urls).fold(policy=email.policy.SMTP)
    assert folded == (
        "List-Unsubscribe: <https://shop.example/unsubscribe/" + "a" * 60 + ">,\r\n"
        " <mailto:out@shop.example>\r\n"
    )
    with pytest.raises(ValueError, match="printable ASCII"):
        VerbatimHeader("List-Unsubscribe", "<https://bücher.example/u>")
    with pytest.raises(ValueError, match="printable ASCII"):
        VerbatimHeader("List-Unsubscribe", "<https://shop.example/u>\r\nBcc: x@evil.example")
