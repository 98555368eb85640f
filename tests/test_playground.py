"""The playground page at GET /graphql and its files under /playground/, through the app."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath

import graphql
import pytest

from graph.http.playground import ASSET_DIR, DEFAULT_QUERY, SCRIPTS, STYLES, assets

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SCHEMA = Path(__file__).resolve().parent.parent / "graph" / "schema.graphql"
# Where pages usually load code, styles or fonts from the internet.
CDN_URL = re.compile(
    r"(?:https?:)?//[^\s\"')]*(?:unpkg\.com|jsdelivr\.net|esm\.sh|cdnjs|googleapis|gstatic)"
)


def linked(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


async def test_a_browser_gets_the_playground_without_a_key(http, database):
    response = await http.get("/graphql", headers=BROWSER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert 'id="cg-key"' in response.text
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["vary"] == "Accept"


async def test_the_page_is_the_same_with_a_good_or_a_bad_key_and_reads_nothing(
    http, keys, commands
):
    bare = await http.get("/graphql", headers=BROWSER)
    commands.reset()
    for key in (keys["ADMIN"], keys["PUBLIC"], "cg_admin_not-a-key"):
        response = await http.get("/graphql", headers={**BROWSER, "Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert response.text == bare.text
    # Not even the key look-up: the page path never touches request auth.
    assert commands.names == []


async def test_data_still_needs_a_key_and_other_clients_get_no_page(http, keys):
    query = await http.get(
        "/graphql", params={"query": "{ contacts { totalCount } }"}, headers=BROWSER
    )
    assert query.status_code == 401
    assert query.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # A client that does not ask for HTML gets GraphQL answers, never the page.
    plain = await http.get(
        "/graphql",
        headers={"Accept": "application/json", "Authorization": f"Bearer {keys['ADMIN']}"},
    )
    assert plain.status_code == 400
    assert plain.headers["content-type"].startswith("application/json")


async def test_the_page_loads_nothing_from_elsewhere(http, database):
    page = (await http.get("/graphql", headers=BROWSER)).text
    # Every linked file is one of ours, by relative URL.
    assert [url.split("?v=")[0] for url in linked(page)] == ["playground/favicon.svg"] + [
        f"playground/{name}" for name in (*STYLES, *SCRIPTS)
    ]
    assert "//" not in page, "an absolute or protocol-relative URL"


async def test_the_page_lets_the_browser_reach_only_this_server(http, database):
    response = await http.get("/graphql", headers=BROWSER)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["font-src"] == "'self' data:"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_every_linked_file_is_served_with_its_type_and_a_long_cache(http, database):
    page = (await http.get("/graphql", headers=BROWSER)).text
    for url in linked(page):
        name = url.removeprefix("playground/").split("?")[0]
        response = await http.get(f"/{url}", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, url
        expected = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
        assert response.headers["content-type"] == expected.get(
            name.rsplit(".", 1)[1], "image/svg+xml"
        )
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-encoding" not in response.headers
        assert response.content == (ASSET_DIR / name).read_bytes()
        text = response.text
        assert CDN_URL.search(text) is None, name
        if name.endswith(".css"):
            assert "@import" not in text
            # Fonts and images are inlined: every url(...) is a data: URL.
            assert re.findall(r"url\((?!data:)", text) == [], name


async def test_files_are_gzipped_for_browsers_that_accept_it(http, database):
    name = "graphiql-3.9.0/graphiql.min.js"
    response = await http.get(
        f"/playground/{name}", headers={"Accept-Encoding": "gzip, deflate, br"}
    )
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    raw = (ASSET_DIR / name).read_bytes()
    assert int(response.headers["content-length"]) < len(raw) / 2
    assert response.content == raw  # httpx undid the gzip
    refused = await http.get(f"/playground/{name}", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    assert refused.content == raw


async def test_a_file_changes_url_when_its_content_changes(http, database):
    page = (await http.get("/graphql", headers=BROWSER)).text
    versions = dict(url.split("?v=") for url in linked(page) if url.startswith("playground/"))
    assert all(re.fullmatch(r"[0-9a-f]{16}", v) for v in versions.values())
    assert len(set(versions.values())) == len(versions)


@pytest.mark.parametrize(
    "path",
    [
        "/playground/nope.js",
        "/playground/vendor.sh",
        "/playground/../app.py",
        "/playground/%2e%2e/app.py",
        "/playground/graphiql-3.9.0/",
        "/playground/",
    ],
)
async def test_anything_else_under_playground_is_not_found(http, database, path):
    response = await http.get(path)
    assert response.status_code == 404
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_licenses_and_versions_are_served_as_text(http, database):
    for name in ("VERSIONS", "graphiql-3.9.0/LICENSE", "react-18.3.1/LICENSE"):
        response = await http.get(f"/playground/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
    license_text = (await http.get("/playground/graphiql-3.9.0/LICENSE")).text
    assert license_text.startswith("MIT License")


def test_every_vendored_folder_keeps_its_license_and_is_listed_in_versions():
    versions = (ASSET_DIR / "VERSIONS").read_text()
    folders = sorted(p for p in ASSET_DIR.iterdir() if p.is_dir())
    assert [p.name for p in folders] == [
        "graphiql-3.9.0",
        "graphiql-plugin-explorer-3.2.6",
        "react-18.3.1",
        "react-dom-18.3.1",
    ]
    for folder in folders:
        assert (folder / "LICENSE").read_text().startswith("MIT License"), folder.name
        for file in folder.iterdir():
            assert f"{folder.name}/{file.name}" in versions, file
    for name in (*SCRIPTS, *STYLES):
        assert (ASSET_DIR / name).is_file(), name


def test_the_default_query_and_its_subscription_example_are_valid():
    schema = graphql.build_schema(SCHEMA.read_text())
    assert graphql.validate(schema, graphql.parse(DEFAULT_QUERY)) == []
    [example] = [
        line.strip().removeprefix("#").strip()
        for line in DEFAULT_QUERY.splitlines()
        if line.strip().startswith("#   subscription")
    ]
    example = example.replace("<a contact id>", "Q29udGFjdDox")
    assert graphql.validate(schema, graphql.parse(example)) == []
    assert "Authorization: Bearer <key>" in DEFAULT_QUERY


def test_a_built_package_ships_every_file_the_page_serves():
    pyproject = tomllib.loads((SCHEMA.parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["graph.http"]
    for name in assets():
        path = PurePosixPath("playground", name)
        assert any(path.match(pattern) for pattern in patterns), name
    assert "README.md" in assets() and "VERSIONS" in assets()
    assert "vendor.sh" not in assets()
