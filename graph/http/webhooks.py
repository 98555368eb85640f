"""POST /webhooks/orders: the shop pushes orders, signed with its webhook secret.

    POST /webhooks/orders?shop=<shop id>
    X-Contactgraph-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the shop's secret>
    Content-Type: application/json

    { ...an OrderInput as JSON: "externalId", "email", "currencyCode", "lineItems", ... }

The shop is named in the URL because that is the one thing every webhook
sender lets one configure. Unknown shop, missing or wrong signature: 401,
and nothing is written. A signed body runs the very
`orderRecord` mutation an INGEST key would, so the two paths cannot drift
apart: 200 with the order, 422 with `userErrors` for refused input, 400
when the body is not an OrderInput at all, 503 with Retry-After while a
first delivery of the same order is still being recorded (or died
recording it: the delivery after the Retry-After counts it).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import strawberry
from bson import ObjectId
from starlette.requests import Request
from starlette.responses import Response

from graph.context import Context
from graph.errors import format_error
from graph.settings import Settings
from loaders.container import Loaders
from loaders.mongo import Database
from resolvers.orders import LANDING_GRACE
from resolvers.shops import SHOP_ID, ApiKey, Role, get_shop

SIGNATURE_HEADER = "x-contactgraph-signature"
SIGNATURE_PREFIX = "sha256="
# The webhook acts as an INGEST key of the shop; it has no stored key, so a fixed id names it.
WEBHOOK_KEY_ID = ObjectId(b"orderwebhook")
WEBHOOK_KEY_NAME = "Order webhook"

RECORD = """
mutation Record($input: OrderInput!) {
  orderRecord(input: $input) {
    order { id externalId number status placedAt total { amount currencyCode } }
    contact { id email kind orderCount totalSpent { amount currencyCode } }
    userErrors { field message code }
  }
}
"""


def sign(secret: str, body: bytes) -> str:
    """The header value a sender puts in X-Contactgraph-Signature."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().lower().encode())


def _json(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _problem(status: int, message: str, code: str) -> Response:
    return _json(status, {"errors": [{"message": message, "extensions": {"code": code}}]})


def order_webhook(
    schema: strawberry.Schema, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        database: Database = request.app.state.database
        shop_id = request.query_params.get("shop") or ""
        shop = await get_shop(database, shop_id) if SHOP_ID.fullmatch(shop_id) else None
        body = await request.body()
        # One answer for an unknown shop and a bad signature: neither tells a prober anything.
        if shop is None or not signature_ok(
            shop.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)
        ):
            return _problem(401, "Unknown shop or bad signature.", "UNAUTHENTICATED")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _problem(400, "The body is not JSON.", "BAD_USER_INPUT")
        if not isinstance(payload, dict):
            return _problem(400, "The body must be a JSON object: an OrderInput.", "BAD_USER_INPUT")
        context = Context(
            request=request,
            response=None,
            database=database,
            settings=settings,
            key=ApiKey(WEBHOOK_KEY_ID, shop.id, Role.INGEST, WEBHOOK_KEY_NAME),
            shop=shop,
            loaders=Loaders(database, shop.id),
        )
        result = await schema.execute(
            RECORD, variable_values={"input": payload}, context_value=context
        )
        if result.errors:
            errors = [format_error(e) for e in result.errors]
            codes = {e["extensions"]["code"] for e in errors}
            if "TRY_AGAIN" in codes:
                # The first delivery of this order is still being recorded.
                response = _json(503, {"errors": errors})
                response.headers["Retry-After"] = str(int(LANDING_GRACE.total_seconds()))
                return response
            return _json(500 if "INTERNAL_SERVER_ERROR" in codes else 400, {"errors": errors})
        recorded = (result.data or {})["orderRecord"]
        return _json(422 if recorded["userErrors"] else 200, recorded)

    return endpoint
