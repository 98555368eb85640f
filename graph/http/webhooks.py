"""POST /webhooks/orders and /webhooks/subscriptions: the shop pushes orders and subscription
contracts, signed per Standard Webhooks.

    POST /webhooks/orders?shop=<shop id>
    webhook-id: <the delivery's id; the same on every retry of it>
    webhook-timestamp: <Unix seconds when this attempt was signed>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">
    Content-Type: application/json

    { ...an OrderInput as JSON: "externalId", "email", "currencyCode", "lineItems", "updatedAt", ... }

The HMAC key is the shop's secret `whsec_<base64>` with the prefix taken
off and the rest base64-decoded (`contactgraph shops webhook-secret`). The
signature header may hold several space-separated signatures; one valid
one suffices (a sender signs with old and new secret while switching).
After `--rotate` the previous secret verifies for another 24 hours.

The shop is named in the URL because that is the one thing every webhook
sender lets one configure. Unknown shop, missing headers, a timestamp more
than 5 minutes from our clock, or no valid signature: 401, and nothing is
written. A delivery whose webhook-id was applied already: 200 and nothing
is applied again (see resolvers.webhook_receipts). Otherwise the body runs
the very `orderRecord` mutation an INGEST key would, so the two paths
cannot drift apart (a subscription contract's body runs
`subscriptionContractRecord` the same way): 200 with the order, 422 with `userErrors` for refused
input, 400 when the body is not an OrderInput at all, 503 with Retry-After
while another delivery of the same webhook-id is being applied. The order
itself needs no such wait: it is recorded in one transaction, all or
nothing, so a delivery of the same order under another id simply applies.

The check is the spec's, written out here rather than taken from the
`standardwebhooks` package (whose signer the tests use to prove senders
are understood): its verifier reads the wall clock itself, so the
tolerance could not follow the clock the secret overlap is judged by;
a malformed signature entry escapes it as ValueError instead of a
verification failure; and it signs `floor(float(timestamp))` rather than
the timestamp header as sent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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
from resolvers import clock
from resolvers.shops import SHOP_ID, ApiKey, Role, Shop, get_shop, webhook_secret_key
from resolvers.webhook_receipts import CLAIM_LEASE, WEBHOOK_ID_MAX, Claim, Seen, claim_delivery

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"
# Standard Webhooks' recommended tolerance, both ways: older is a replay, newer a bad clock.
TIMESTAMP_TOLERANCE = dt.timedelta(minutes=5)
_WEBHOOK_ID = re.compile(rf"[\x21-\x7e]{{1,{WEBHOOK_ID_MAX}}}")
_TIMESTAMP = re.compile(r"\d{1,12}")
# The webhook acts as an INGEST key of the shop; it has no stored key, so a fixed id names it.
WEBHOOK_KEY_ID = ObjectId(b"orderwebhook")
WEBHOOK_KEY_NAME = "Order webhook"
SUBSCRIPTION_WEBHOOK_KEY_ID = ObjectId(b"subscrhookid")
SUBSCRIPTION_WEBHOOK_KEY_NAME = "Subscription webhook"

# What any role that may record orders may read back: the webhook answers no more.
RECORD = """
mutation Record($input: OrderInput!) {
  orderRecord(input: $input) {
    order { id externalId status }
    contact { id }
    userErrors { field message code }
  }
}
"""
RECORD_SUBSCRIPTION = """
mutation Record($input: SubscriptionContractInput!) {
  subscriptionContractRecord(input: $input) {
    subscriptionContract { id externalId status contact { id } }
    userErrors { field message code }
  }
}
"""


@dataclass(frozen=True)
class SignedWebhook:
    """What one signed webhook runs: the mutation its body is the input of, as which key."""

    mutation: str
    field: str
    input_type: str
    key_id: ObjectId
    key_name: str


ORDERS = SignedWebhook(RECORD, "orderRecord", "OrderInput", WEBHOOK_KEY_ID, WEBHOOK_KEY_NAME)
SUBSCRIPTIONS = SignedWebhook(
    RECORD_SUBSCRIPTION,
    "subscriptionContractRecord",
    "SubscriptionContractInput",
    SUBSCRIPTION_WEBHOOK_KEY_ID,
    SUBSCRIPTION_WEBHOOK_KEY_NAME,
)


class WebhookRefused(Exception):
    """A delivery that cannot be trusted: answered 401 with this message."""


def _digest(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _given_signatures(header: str) -> list[bytes]:
    """The v1 signatures of a webhook-signature header; other versions and garbage are skipped."""
    found = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(secrets: list[str], headers: Mapping[str, str], body: bytes, at: dt.datetime) -> str:
    """The delivery's webhook-id once its headers and signature hold; WebhookRefused otherwise."""
    webhook_id = headers.get(ID_HEADER) or ""
    timestamp = headers.get(TIMESTAMP_HEADER) or ""
    header = headers.get(SIGNATURE_HEADER) or ""
    if not (webhook_id and timestamp and header):
        raise WebhookRefused(
            "Sign the delivery: webhook-id, webhook-timestamp and webhook-signature are required."
        )
    if not _WEBHOOK_ID.fullmatch(webhook_id) or not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookRefused(
            f"webhook-id must be 1-{WEBHOOK_ID_MAX} visible ASCII characters and "
            "webhook-timestamp whole Unix seconds."
        )
    sent = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    if abs(at - sent) > TIMESTAMP_TOLERANCE:
        raise WebhookRefused(
            "webhook-timestamp is more than 5 minutes away from the server's clock: "
            "sign every attempt with the current time."
        )
    given = _given_signatures(header)
    for secret in secrets:
        key = webhook_secret_key(secret)
        if key is None:
            continue
        expected = _digest(key, webhook_id, timestamp, body)
        if any(hmac.compare_digest(expected, signature) for signature in given):
            return webhook_id
    raise WebhookRefused("Unknown shop or bad signature.")


def _json(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _problem(status: int, message: str, code: str) -> Response:
    return _json(status, {"errors": [{"message": message, "extensions": {"code": code}}]})


def _try_again(content: Any, seconds: int) -> Response:
    response = _json(503, content)
    response.headers["Retry-After"] = str(seconds)
    return response


def order_webhook(
    schema: strawberry.Schema, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    return signed_webhook(schema, settings, ORDERS)


def subscription_webhook(
    schema: strawberry.Schema, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    """POST /webhooks/subscriptions: a SubscriptionContractInput, signed and replay-safe as orders."""
    return signed_webhook(schema, settings, SUBSCRIPTIONS)


def signed_webhook(
    schema: strawberry.Schema, settings: Settings, hook: SignedWebhook
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one signed webhook; every check above, then the hook's mutation."""

    async def endpoint(request: Request) -> Response:
        database: Database = request.app.state.database
        at = clock.now()
        shop_id = request.query_params.get("shop") or ""
        shop = await get_shop(database, shop_id) if SHOP_ID.fullmatch(shop_id) else None
        body = await request.body()
        try:
            # One answer for an unknown shop and a bad signature: neither tells a prober anything.
            webhook_id = verify(shop.webhook_secrets(at) if shop else [], request.headers, body, at)
        except WebhookRefused as refused:
            return _problem(401, str(refused), "UNAUTHENTICATED")
        assert shop is not None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _problem(400, "The body is not JSON.", "BAD_USER_INPUT")
        if not isinstance(payload, dict):
            return _problem(
                400, f"The body must be a JSON object: an {hook.input_type}.", "BAD_USER_INPUT"
            )
        claim = await claim_delivery(database, shop.id, webhook_id, at)
        if claim is Seen.APPLIED:
            return _json(200, {"webhookId": webhook_id, "alreadyApplied": True})
        if claim is Seen.BUSY:
            return _try_again(
                {
                    "errors": [
                        {
                            "message": "This delivery is being applied right now; "
                            "send it again later.",
                            "extensions": {"code": "TRY_AGAIN"},
                        }
                    ]
                },
                int(CLAIM_LEASE.total_seconds()),
            )
        assert isinstance(claim, Claim)
        try:
            response = await _record(schema, settings, request, database, shop, payload, hook)
        except BaseException:
            await claim.release()
            raise
        if response.status_code == 200:
            await claim.applied()
        else:
            await claim.release()
        return response

    return endpoint


async def _record(
    schema: strawberry.Schema,
    settings: Settings,
    request: Request,
    database: Database,
    shop: Shop,
    payload: dict[str, Any],
    hook: SignedWebhook = ORDERS,
) -> Response:
    context = Context(
        request=request,
        response=None,
        database=database,
        settings=settings,
        key=ApiKey(hook.key_id, shop.id, Role.INGEST, hook.key_name),
        shop=shop,
        loaders=Loaders(database, shop.id),
        throttled=False,
    )
    result = await schema.execute(
        hook.mutation, variable_values={"input": payload}, context_value=context
    )
    if result.errors:
        errors = [format_error(e) for e in result.errors]
        codes = {e["extensions"]["code"] for e in errors}
        return _json(500 if "INTERNAL_SERVER_ERROR" in codes else 400, {"errors": errors})
    recorded = (result.data or {})[hook.field]
    return _json(422 if recorded["userErrors"] else 200, recorded)
