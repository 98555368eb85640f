"""`GET|POST /unsubscribe/{token}`: the link in marketing e-mail; needs no API key."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse

from loaders.mongo import Database
from resolvers.messages import Unsubscribed, unsubscribe

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>
"""


def _page(title: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), text=html.escape(text)), status_code=status
    )


async def unsubscribe_endpoint(request: Request) -> HTMLResponse:
    """GET for the link in the body, POST for one-click unsubscribe (RFC 8058); both record it."""
    database: Database = request.app.state.database
    outcome = await unsubscribe(database, request.path_params["token"])
    if outcome is Unsubscribed.INVALID:
        return _page("Link not valid", "This unsubscribe link is not valid or has expired.", 404)
    if outcome is Unsubscribed.BUSY:
        return _page(
            "Please try again", "We could not record this just now; please try again.", 503
        )
    return _page("Unsubscribed", "You will not receive marketing e-mail from us any more.", 200)
