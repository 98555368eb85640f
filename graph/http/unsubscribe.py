"""`/unsubscribe/{token}`: the link in marketing e-mail; needs no API key.

Only a person unsubscribes. `GET` (and `HEAD`) show a page with a button and
change nothing: mail scanners and link previews fetch every link they see.
The button POSTs the same body a mail client's one-click unsubscribe sends
(RFC 8058, `List-Unsubscribe=One-Click`), and any POST records UNSUBSCRIBED.

The page is self-contained (no script, no outside resource, its one style
block allowed by hash), never cached, never indexed, and shows no personal
data: only the shop's name, escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html

from starlette.requests import Request
from starlette.responses import HTMLResponse

from loaders.mongo import Database
from resolvers.messages import LinkState, LinkTarget, Unsubscribed, read_link, unsubscribe

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title><style>{style}</style></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>
"""
# No action: the form posts to the page's own address, whatever proxy or prefix it came through.
_FORM = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit">Unsubscribe</button></form>'
)
_GONE = "You will receive no further e-mail from {shop}."


def _page(title: str, text: str, status: int, *, form: bool = False) -> HTMLResponse:
    body = _PAGE.format(
        title=html.escape(title), text=html.escape(text), style=_STYLE, form=_FORM if form else ""
    )
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _shop(target: LinkTarget) -> str:
    return target.shop_name or "this shop"


def _invalid() -> HTMLResponse:
    return _page("Link not valid", "This unsubscribe link is not valid or has expired.", 404)


async def unsubscribe_page(request: Request) -> HTMLResponse:
    """GET and HEAD: what the link would do, with a button; changes nothing."""
    database: Database = request.app.state.database
    target = await read_link(database, request.path_params["token"])
    if target.state is LinkState.INVALID:
        return _invalid()
    if target.state is LinkState.GONE:
        return _page("Unsubscribed", _GONE.format(shop=_shop(target)), 200)
    if target.state is LinkState.UNSUBSCRIBED:
        return _page(
            "Unsubscribed", f"You no longer receive marketing e-mail from {_shop(target)}.", 200
        )
    return _page(
        "Unsubscribe",
        f"Stop receiving marketing e-mail from {_shop(target)}? Press the button to confirm.",
        200,
        form=True,
    )


async def unsubscribe_post(request: Request) -> HTMLResponse:
    """POST: the button on the page, or a mail client's one-click unsubscribe; records it."""
    database: Database = request.app.state.database
    outcome, target = await unsubscribe(database, request.path_params["token"])
    if outcome is Unsubscribed.INVALID:
        return _invalid()
    if outcome is Unsubscribed.GONE:
        return _page("Unsubscribed", _GONE.format(shop=_shop(target)), 200)
    if outcome is Unsubscribed.BUSY:
        return _page(
            "Please try again", "We could not record this just now; please try again.", 503
        )
    return _page(
        "Unsubscribed", f"You will not receive marketing e-mail from {_shop(target)} any more.", 200
    )


async def unsubscribe_endpoint(request: Request) -> HTMLResponse:
    if request.method == "POST":
        return await unsubscribe_post(request)
    return await unsubscribe_page(request)
