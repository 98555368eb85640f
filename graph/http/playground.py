"""The playground: GraphiQL with the explorer, served by contactgraph itself.

A browser's `GET /graphql` gets `playground_page()`; the page loads only the
files in `graph/http/playground/` (React, GraphiQL, the explorer plugin and
our own script, at pinned versions; see its README and VERSIONS), through
`/playground/...`. Nothing on this path looks at the request's key: the page
holds no data, and the key the user types stays in the browser tab.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from graph.http.responses import problem

ASSET_DIR = Path(__file__).with_name("playground")
URL_PREFIX = "playground/"  # relative, so the page also works behind a path-prefixing proxy

# In load order: each script uses the globals of those before it.
SCRIPTS = (
    "react-18.3.1/react.production.min.js",
    "react-dom-18.3.1/react-dom.production.min.js",
    "graphiql-3.9.0/graphiql.min.js",
    "graphiql-plugin-explorer-3.2.6/index.umd.js",
    "playground.js",
)
STYLES = (
    "graphiql-3.9.0/graphiql.min.css",
    "graphiql-plugin-explorer-3.2.6/style.css",
    "playground.css",
)

_TEXT = "text/plain; charset=utf-8"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": _TEXT,
    ".svg": "image/svg+xml",
}
# Licenses and the version list are served too, so what the page runs can be checked from it.
_TEXT_NAMES = ("LICENSE", "VERSIONS")

# Asset URLs carry their content's hash, so a changed file is a new URL and
# browsers may keep every file for a year without asking again.
ASSET_CACHE = "public, max-age=31536000, immutable"

# The browser itself refuses any request that would leave this server: the
# page runs only our scripts and talks only to its own origin (fetch and WebSocket).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # GraphiQL's components set inline styles
        "img-src 'self' data:",
        "font-src 'self' data:",  # GraphiQL's fonts are inlined in its CSS
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

DEFAULT_QUERY = """\
# Welcome to the contactgraph playground.
#
# 1. Paste an API key into the "API key" box above and press Enter.
#    `contactgraph serve` prints an admin key on its first start; make more with
#    contactgraph keys create --shop demo --role STAFF --name "Your name"
#    The key stays in this browser tab only. It is sent as
#    "Authorization: Bearer <key>", and in the connection_init of subscriptions.
# 2. Run the query with Ctrl-Enter or the run button. The Explorer builds
#    queries by clicking; the Docs describe every type and field.
#
# Watch one contact's activity live (then add a note to it elsewhere):
#   subscription { contactActivity(contactId: "<a contact id>") { kind at author text } }

query FirstPage {
  contacts(first: 10, sortKey: NAME) {
    totalCount
    nodes {
      id
      displayName
      email
      kind
      labels
      orderCount
      totalSpent { amount currencyCode }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str

    @functools.cached_property
    def version(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:16]

    @functools.cached_property
    def gzipped(self) -> bytes:
        # mtime=0: the same bytes on every start.
        return gzip.compress(self.body, compresslevel=6, mtime=0)


def _content_type(path: Path) -> str | None:
    if path.name.startswith(_TEXT_NAMES):
        return _TEXT
    return _CONTENT_TYPES.get(path.suffix)


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file the playground serves, by its path under /playground/ (read once)."""
    found: dict[str, Asset] = {}
    for path in sorted(ASSET_DIR.rglob("*")):
        content_type = _content_type(path)
        if path.is_file() and content_type is not None:
            name = path.relative_to(ASSET_DIR).as_posix()
            found[name] = Asset(path.read_bytes(), content_type)
    return found


def asset_url(name: str) -> str:
    return f"{URL_PREFIX}{name}?v={assets()[name].version}"


@functools.cache
def page_html() -> str:
    # JSON inside a <script> element: "<" escaped so no text can close the element.
    config = json.dumps({"defaultQuery": DEFAULT_QUERY}).replace("<", "\\u003c")
    styles = "\n".join(
        f'<link rel="stylesheet" href="{html.escape(asset_url(name))}">' for name in STYLES
    )
    scripts = "\n".join(
        f'<script src="{html.escape(asset_url(name))}"></script>' for name in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>contactgraph playground</title>
<link rel="icon" href="{html.escape(asset_url("favicon.svg"))}">
{styles}
</head>
<body>
<header class="cg-bar">
  <span class="cg-name">contactgraph</span>
  <label for="cg-key">API key</label>
  <input id="cg-key" type="password" autocomplete="off" spellcheck="false"
         placeholder="cg_… (kept in this tab only)">
  <button type="button" id="cg-key-use">Use key</button>
  <button type="button" id="cg-key-forget">Forget key</button>
  <span id="cg-key-status" role="status">No key yet.</span>
</header>
<main id="graphiql">Loading the playground…</main>
<noscript>The playground needs JavaScript.</noscript>
<script id="cg-config" type="application/json">{config}</script>
{scripts}
</body>
</html>
"""


def playground_page() -> Response:
    """The page a browser gets at GET /graphql: no key needed, no data in it."""
    return Response(
        page_html(),
        media_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # /graphql answers JSON or this page depending on Accept.
            "Vary": "Accept",
        },
    )


def _accepts_gzip(request: Request) -> bool:
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().lower().removeprefix("q=")
            return quality not in ("0", "0.0", "0.00", "0.000")
    return False


async def playground_asset(request: Request) -> Response:
    """GET /playground/{path}: one of the playground's own files, or 404."""
    asset = assets().get(request.path_params["path"])
    if asset is None:
        return problem(404, "No such playground file.", "NOT_FOUND")
    headers = {
        "Cache-Control": ASSET_CACHE,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    body = asset.body
    if _accepts_gzip(request):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.content_type, headers=headers)
