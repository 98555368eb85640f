"""Delivers outbound events to the shops' webhook endpoints in the background (Standard Webhooks).

Each delivery record (one per event and subscribed endpoint, written with
the change: resolvers/events.py) is claimed by moving its `nextAttemptAt`
past a lease and stamping a lease token, so any number of workers in any
number of instances share the queue and exactly one sends a given delivery;
a process that dies mid-delivery leaves it due again when the lease ends.
Every write after the claim names the token: a worker whose lease ran out
records nothing.

An attempt is a POST of the stored body with `webhook-id` (the delivery's
id, the same on every retry), `webhook-timestamp` and `webhook-signature`
(one `v1,` signature per secret that signs now). A 2xx answer delivers it;
any other answer, a timeout or a refused connection is retried with an
exponential, jittered backoff until `give_up_after` from the event, then it
is FAILED. An endpoint whose deliveries have failed without a success for
`disable_after` is disabled and says why.

Events of one contact reach an endpoint in the order they happened: a
delivery waits while an earlier one for the same contact and endpoint is
still pending, and is woken when that one is done.

SSRF: the host is resolved at every attempt and every address it resolves
to must be public (no private, loopback, link-local, multicast or reserved
address; loopback only for localhost when insecure webhooks are allowed).
The request then goes to the address that was checked (the name still in
`Host` and TLS's SNI and certificate check), so a second DNS answer cannot
swap it, and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from loaders.mongo import Database, Doc
from resolvers.clock import now
from resolvers.events import KEEP
from resolvers.webhook_endpoints import (
    check_url,
    is_local_host,
    is_public_address,
    sign,
    signing_keys,
)

log = logging.getLogger("contactgraph")
ERROR_MAX = 300  # characters of an error kept on the endpoint


@dataclass(frozen=True)
class DeliveryPolicy:
    first_delay: float = 5.0  # seconds; doubles with every failed attempt
    max_delay: float = 3600.0
    give_up_after: float = 3 * 86_400.0
    disable_after: float = 5 * 86_400.0
    lease: float = 60.0  # longer than one attempt can take
    timeout: float = 10.0

    def delay(self, attempts: int) -> float:
        base = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return base * random.uniform(0.8, 1.0)  # spread the retries of many deliveries


class Refusal(Exception):
    """An attempt that must not be made (an address we never send to): FAILED at once."""


class Retry(Exception):
    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code


def webhook_id(delivery_id: ObjectId) -> str:
    return f"msg_{delivery_id}"


async def vetted_address(
    host: str, port: int, *, allow_insecure: bool
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to connect to, after checking every address `host` resolves to."""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise Retry(f"The host name could not be resolved: {error}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise Retry("The host name resolved to no address.")
    local_ok = allow_insecure and is_local_host(host)
    for address in addresses:
        if local_ok and address.is_loopback:
            continue
        if not is_public_address(address):
            raise Refusal(
                f"Refused: {host} resolves to {address}, a private, loopback, link-local "
                "or reserved address; events are only sent to public addresses."
            )
    return addresses[0]


class EventDelivery:
    def __init__(
        self,
        database: Database,
        policy: DeliveryPolicy | None = None,
        *,
        allow_insecure: bool = False,
        poll_seconds: float = 2.0,
        concurrency: int = 8,
    ) -> None:
        self.database = database
        self.policy = policy or DeliveryPolicy()
        self.allow_insecure = allow_insecure
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._client: httpx.AsyncClient | None = None
        # Deliveries being sent, by lease token: their leases go back if a stop cuts them.
        self._claimed: dict[ObjectId, Doc] = {}

    def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        # Never the environment's proxies: a proxy would connect where we did not check.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=self.policy.timeout,
            headers={"user-agent": "contactgraph-webhooks"},
        )
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.concurrency)]

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Claims nothing more, lets attempts under way finish (up to `grace` s), gives back leases."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        self._stopping = True
        self._wake.set()
        done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for lease, delivery in list(self._claimed.items()):
            with contextlib.suppress(PyMongoError):
                await self.database.webhook_deliveries.update_one(
                    self._mine(delivery, lease), {"$set": {"nextAttemptAt": now(), "lease": None}}
                )
        self._claimed.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if await self.deliver_one():
                    continue
                idle = await self._idle_seconds()
            except PyMongoError:
                log.warning("webhooks: the database is not reachable; trying again", exc_info=True)
                idle = self.poll_seconds
            except Exception:
                log.exception("webhooks: unexpected error; carrying on")
                idle = self.poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            self._wake.clear()

    async def _idle_seconds(self) -> float:
        due = await self.database.webhook_deliveries.find_one(
            {"status": "PENDING"}, {"nextAttemptAt": 1}, sort=[("nextAttemptAt", 1)]
        )
        if due is None or due.get("nextAttemptAt") is None:
            return self.poll_seconds
        wait = (due["nextAttemptAt"] - now()).total_seconds()
        return min(self.poll_seconds, max(0.01, wait))

    async def deliver_one(self) -> bool:
        """Claim one due delivery and attempt it; False when none is due."""
        lease = ObjectId()
        at = now()
        # Serves every shop: like the e-mail outbox, the one claim not by shop.
        delivery = await self.database.webhook_deliveries.find_one_and_update(
            {"status": "PENDING", "nextAttemptAt": {"$lte": at}},
            {
                "$set": {
                    "nextAttemptAt": at + dt.timedelta(seconds=self.policy.lease),
                    "lease": lease,
                }
            },
            sort=[("nextAttemptAt", 1)],
            return_document=ReturnDocument.AFTER,
        )
        if delivery is None:
            return False
        self._claimed[lease] = delivery
        try:
            if not await self._waits_for_earlier(delivery, lease):
                await self._attempt(delivery, lease)
        except Exception:
            self._claimed.pop(lease, None)
            raise
        # Not on cancellation (a BaseException): a stop that cut this attempt gives the claim back.
        self._claimed.pop(lease, None)
        return True

    def _mine(self, delivery: Doc, lease: ObjectId) -> Doc:
        """The delivery as this claim holds it: after another claim, writes miss."""
        return {"_id": delivery["_id"], "status": "PENDING", "lease": lease}

    async def _waits_for_earlier(self, delivery: Doc, lease: ObjectId) -> bool:
        """True (and the claim given back) while an earlier event of the same contact is pending.

        The earlier delivery is marked as waited for, so finishing it wakes this
        one; the mark only lands while it is still PENDING, so a wake-up is never lost.
        """
        if delivery.get("contactId") is None:
            return False
        for _ in range(3):
            earlier = await self.database.webhook_deliveries.find_one(
                {
                    "shopId": delivery["shopId"],
                    "endpointId": delivery["endpointId"],
                    "contactId": delivery["contactId"],
                    "status": "PENDING",
                    "$or": [
                        {"seq": {"$lt": delivery["seq"]}},
                        {"seq": delivery["seq"], "_id": {"$lt": delivery["_id"]}},
                    ],
                },
                {"nextAttemptAt": 1},
                sort=[("seq", 1), ("_id", 1)],
            )
            if earlier is None:
                return False
            marked = await self.database.webhook_deliveries.update_one(
                {"_id": earlier["_id"], "status": "PENDING"}, {"$set": {"waiters": True}}
            )
            if marked.matched_count:
                break
            # Finished meanwhile: look again.
        else:
            return False
        # Due again when the earlier one is next due; finishing it wakes this one sooner.
        at = now()
        due = max(earlier.get("nextAttemptAt") or at, at + dt.timedelta(seconds=self.poll_seconds))
        await self.database.webhook_deliveries.update_one(
            self._mine(delivery, lease), {"$set": {"nextAttemptAt": due, "lease": None}}
        )
        # Finished while this one still held its claim, its wake-up passed this one by:
        # then this one is due now.
        if (
            await self.database.webhook_deliveries.find_one(
                {"_id": earlier["_id"], "status": "PENDING"}, {"_id": 1}
            )
            is None
        ):
            await self.database.webhook_deliveries.update_one(
                {"_id": delivery["_id"], "status": "PENDING", "lease": None},
                {"$set": {"nextAttemptAt": now()}},
            )
            self._wake.set()
        return True

    async def _attempt(self, delivery: Doc, lease: ObjectId) -> None:
        # Read at every attempt: a rotated secret, a new URL or a disabled endpoint apply at once.
        endpoint = await self.database.webhook_endpoints.find_one(
            {"_id": delivery["endpointId"], "shopId": delivery["shopId"]}
        )
        if endpoint is None:
            # Deleted meanwhile (its log went with it): nothing to keep.
            await self.database.webhook_deliveries.delete_one(self._mine(delivery, lease))
            return
        if not endpoint.get("enabled"):
            await self._finish(
                delivery, lease, "FAILED", "The endpoint is disabled.", None, attempted=False
            )
            return
        try:
            status_code = await self._post(endpoint, delivery)
        except Refusal as refusal:
            await self._finish(delivery, lease, "FAILED", str(refusal), None)
            await self._endpoint_failed(endpoint, str(refusal))
        except Retry as retry:
            await self._retry(delivery, lease, endpoint, str(retry), retry.status_code)
        else:
            await self._finish(delivery, lease, "DELIVERED", None, status_code)
            await self._endpoint_delivered(endpoint)

    async def _endpoint_delivered(self, endpoint: Doc) -> None:
        """A success clears the endpoint's failures; `lastDeliveryAt` moves at most once a second.

        Under load every delivery would otherwise write the endpoint document too.
        """
        at = now()
        last = endpoint.get("lastDeliveryAt")
        failing = endpoint.get("failingSince") is not None or endpoint.get("lastError") is not None
        if not failing and last is not None and (at - last).total_seconds() < 1:
            return
        await self.database.webhook_endpoints.update_one(
            {"_id": endpoint["_id"], "shopId": endpoint["shopId"]},
            {"$set": {"lastDeliveryAt": at, "failingSince": None, "lastError": None}},
        )

    async def _post(self, endpoint: Doc, delivery: Doc) -> int:
        url = endpoint["url"]
        if check_url(("url",), url, allow_insecure=self.allow_insecure):
            # Valid when saved, but this server no longer allows it (insecure webhooks off).
            raise Refusal("Refused: the URL is not allowed by this server's settings.")
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        address = await vetted_address(host, port, allow_insecure=self.allow_insecure)
        shown = f"[{address}]" if address.version == 6 else str(address)
        target = urlunsplit((parts.scheme, f"{shown}:{port}", parts.path or "/", parts.query, ""))
        at = now()
        timestamp = int(time.time())
        msg_id = webhook_id(delivery["_id"])
        body = delivery["body"]
        signatures = " ".join(
            sign(key, msg_id, timestamp, body) for key in signing_keys(endpoint, at)
        )
        headers = {
            "content-type": "application/json",
            "host": parts.netloc.rpartition("@")[2],
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
        assert self._client is not None
        try:
            response = await self._client.post(
                target,
                content=body.encode(),
                headers=headers,
                extensions={"sni_hostname": host} if https else {},
            )
        except httpx.TimeoutException:
            raise Retry(f"No answer within {self.policy.timeout:g} s.") from None
        except (httpx.HTTPError, OSError) as error:
            raise Retry(f"{type(error).__name__}: {error}"[:ERROR_MAX]) from None
        if 200 <= response.status_code < 300:
            return response.status_code
        raise Retry(f"HTTP {response.status_code}", response.status_code)

    async def _finish(
        self,
        delivery: Doc,
        lease: ObjectId,
        status: str,
        reason: str | None,
        status_code: int | None,
        *,
        attempted: bool = True,
    ) -> None:
        at = now()
        sets: Doc = {
            "status": status,
            "nextAttemptAt": None,
            "lease": None,
            "lastError": reason,
            "expiresAt": at + KEEP,
        }
        if status == "DELIVERED":
            sets["deliveredAt"] = at
        if status_code is not None or status == "DELIVERED":
            sets["lastStatusCode"] = status_code
        done = await self.database.webhook_deliveries.find_one_and_update(
            self._mine(delivery, lease),
            {"$set": sets, "$inc": {"attempts": int(attempted)}},
            projection={"waiters": 1},
        )
        if status == "FAILED":
            log.warning("webhooks: delivery %s failed: %s", delivery["_id"], reason)
        if done is not None and done.get("waiters"):
            await self._wake_next(delivery)

    async def _wake_next(self, delivery: Doc) -> None:
        """The next pending event of the same contact for this endpoint may go now.

        It is marked as waited for too: later events of the contact may be
        waiting behind it, and its own finish must wake the one after it.
        """
        woken = await self.database.webhook_deliveries.find_one_and_update(
            {
                "shopId": delivery["shopId"],
                "endpointId": delivery["endpointId"],
                "contactId": delivery["contactId"],
                "status": "PENDING",
                "lease": None,
            },
            {"$set": {"nextAttemptAt": now(), "waiters": True}},
            sort=[("seq", 1), ("_id", 1)],
            projection={"_id": 1},
        )
        if woken is not None:
            self._wake.set()

    async def _retry(
        self, delivery: Doc, lease: ObjectId, endpoint: Doc, reason: str, status_code: int | None
    ) -> None:
        at = now()
        attempts = int(delivery.get("attempts") or 0) + 1
        await self._endpoint_failed(endpoint, reason)
        if (at - delivery["createdAt"]).total_seconds() >= self.policy.give_up_after:
            await self._finish(
                delivery,
                lease,
                "FAILED",
                f"Gave up after {attempts} attempts; last error: {reason}",
                status_code,
            )
            return
        delay = self.policy.delay(attempts)
        log.info(
            "webhooks: delivery %s not delivered (%s); again in %.1fs",
            delivery["_id"],
            reason,
            delay,
        )
        await self.database.webhook_deliveries.update_one(
            self._mine(delivery, lease),
            {
                "$set": {
                    "nextAttemptAt": at + dt.timedelta(seconds=delay),
                    "lease": None,
                    "lastError": reason,
                    "lastStatusCode": status_code,
                },
                "$inc": {"attempts": 1},
            },
        )

    async def _endpoint_failed(self, endpoint: Doc, reason: str) -> None:
        """Record the failure on the endpoint; disable it once it has failed for `disable_after`."""
        at = now()
        mine = {"_id": endpoint["_id"], "shopId": endpoint["shopId"]}
        reason = reason[:ERROR_MAX]
        after = await self.database.webhook_endpoints.find_one_and_update(
            {**mine, "failingSince": None}, {"$set": {"failingSince": at, "lastError": reason}}
        )
        if after is not None:
            return  # the first failure after a success
        since = endpoint.get("failingSince") or at
        if (at - since).total_seconds() >= self.policy.disable_after and endpoint.get("enabled"):
            days = self.policy.disable_after / 86_400
            await self.database.webhook_endpoints.update_one(
                {**mine, "enabled": True},
                {
                    "$set": {
                        "enabled": False,
                        "lastError": f"Disabled: no delivery succeeded for {days:g} days; "
                        f"last error: {reason}"[:ERROR_MAX],
                    }
                },
            )
            log.warning(
                "webhooks: endpoint %s disabled after failing since %s", endpoint["_id"], since
            )
        else:
            await self.database.webhook_endpoints.update_one(
                {**mine, "enabled": True}, {"$set": {"lastError": reason}}
            )


def delivery_from_settings(database: Database, settings: Any) -> EventDelivery:
    policy = DeliveryPolicy(
        first_delay=settings.webhook_retry_first_seconds,
        max_delay=settings.webhook_retry_max_seconds,
        give_up_after=settings.webhook_give_up_seconds,
        disable_after=settings.webhook_disable_after_seconds,
        lease=settings.webhook_lease_seconds,
        timeout=settings.webhook_timeout_seconds,
    )
    return EventDelivery(
        database,
        policy,
        allow_insecure=settings.allow_insecure_webhooks,
        poll_seconds=settings.webhook_poll_seconds,
        concurrency=settings.webhook_concurrency,
    )
