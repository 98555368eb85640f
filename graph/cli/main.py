"""The `contactgraph` command: serve, keys, shops, seed, export, import."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from graph.cli import csv_commands
from graph.embedded import EmbeddedServer, database_uri, forget_running, record_running
from graph.settings import Settings, SettingsError
from loaders.mongo import Database, connect, ensure_indexes
from resolvers.shops import (
    Role,
    ShopError,
    create_key,
    ensure_shop,
    list_keys,
    revoke_key,
    rotate_webhook_secret,
    webhook_secret,
)

T = TypeVar("T")
DEMO_SHOP = "demo"


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` against MONGODB_URI, the running embedded server, or one started for it."""

    async def run(uri: str) -> T:
        client = connect(uri, serverSelectionTimeoutMS=10_000)
        try:
            database = Database(client[settings.database])
            await ensure_indexes(database)
            return await work(database)
        finally:
            await client.close()

    with database_uri(settings.mongodb_uri, settings.data_dir) as uri:
        return asyncio.run(run(uri))


async def bootstrap(database: Database) -> str | None:
    """The demo shop and its first ADMIN key, on the very first start only."""
    await ensure_shop(database, DEMO_SHOP, name="Demo shop")
    if await database.api_keys.count_documents({"shopId": DEMO_SHOP}, limit=1):
        return None
    _, raw = await create_key(database, DEMO_SHOP, Role.ADMIN, "Demo admin")
    return raw


def serve(settings: Settings, workers: int) -> int:
    import uvicorn

    server: EmbeddedServer | None = None
    if not settings.mongodb_uri:
        if (settings.data_dir / "server.json").exists():
            from graph.embedded import running_uri

            if running_uri(settings.data_dir):
                print(f"contactgraph is already running on {settings.data_dir}", file=sys.stderr)
                return 1
        print(f"Starting the embedded database in {settings.data_dir / 'data'} ...", flush=True)
        server = EmbeddedServer(settings.data_dir / "data").start()
        settings = replace(settings, mongodb_uri=server.uri)
        record_running(settings.data_dir, server.uri)
    try:
        admin_key = _with_database(settings, bootstrap)
        if admin_key:
            print("Created shop 'demo' with an ADMIN key (shown once; keep it):")
            print(f"Admin key: {admin_key}")
        print(f"Playground: http://{settings.host}:{settings.port}/graphql", flush=True)
        # Workers build the app from the environment (uvicorn's factory), so
        # hand them the database this process chose.
        os.environ["MONGODB_URI"] = settings.mongodb_uri or ""
        os.environ["CONTACTGRAPH_DATABASE"] = settings.database
        config = uvicorn.Config(
            "graph.http.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
            timeout_graceful_shutdown=10,
        )
        if workers > 1:
            uvicorn.Server(config)  # validates the config as uvicorn.run would
            uvicorn.run(**_run_options(config))
        else:
            _serve_one(config)
    finally:
        if server is not None:
            forget_running(settings.data_dir)
            server.stop()
            print("Stopped the embedded database.", flush=True)
    return 0


def _run_options(config: Any) -> dict[str, Any]:
    return {
        "app": config.app,
        "factory": True,
        "host": config.host,
        "port": config.port,
        "workers": config.workers,
        "loop": config.loop,
        "http": config.http,
        "log_level": "info",
        "timeout_graceful_shutdown": config.timeout_graceful_shutdown,
    }


def _serve_one(config: Any) -> None:
    """One uvicorn server whose Ctrl-C / SIGTERM end in a clean return, not a re-raised signal."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            def stop(signum: int, frame: object) -> None:
                if self.should_exit and signum == signal.SIGINT:
                    self.force_exit = True  # a second Ctrl-C stops at once
                self.should_exit = True

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    Server(config).run()


def keys_create(settings: Settings, shop: str, role: str, name: str) -> int:
    async def work(database: Database) -> str:
        _, created = await ensure_shop(database, shop)
        if created:
            print(f"Created shop {shop!r}.")
        _, raw = await create_key(database, shop, Role(role), name)
        return raw

    print(_with_database(settings, work))
    return 0


def keys_list(settings: Settings, shop: str) -> int:
    rows = _with_database(settings, lambda database: list_keys(database, shop))
    if not rows:
        print(f"No keys in shop {shop!r}.")
    for row in rows:
        state = f"revoked {row['revokedAt']:%Y-%m-%d %H:%M}" if row.get("revokedAt") else "active"
        print(f"{row['_id']}  {row['role']:<7} {row['prefix']}…  {state:<22} {row['name']}")
    return 0


def keys_revoke(settings: Settings, key_id: str) -> int:
    if _with_database(settings, lambda database: revoke_key(database, key_id)):
        print(f"Revoked {key_id}. It stops working within {settings.key_cache_seconds} s.")
        return 0
    print(f"No active key {key_id!r}.", file=sys.stderr)
    return 1


def shops_webhook_secret(settings: Settings, shop: str, rotate: bool) -> int:
    """Print the shop's order webhook secret (`whsec_…`, alone on stdout); `rotate` makes a new one."""

    async def work(database: Database) -> str | None:
        if not rotate:
            return await webhook_secret(database, shop)
        secret, until = await rotate_webhook_secret(database, shop)
        print(
            f"New secret for shop {shop!r}. The previous one still verifies until "
            f"{until:%Y-%m-%d %H:%M} UTC: switch the sender over before then.",
            file=sys.stderr,
        )
        return secret

    secret = _with_database(settings, work)
    if secret is None:
        print(f"No shop {shop!r}.", file=sys.stderr)
        return 1
    print(secret)
    return 0


def seed(settings: Settings, shop: str, contacts: int, orders_per_contact: int) -> int:
    from graph.cli.seed import seed_shop

    async def work(database: Database) -> Any:
        return await seed_shop(database, shop, contacts, orders_per_contact)

    _with_database(settings, work)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="contactgraph", description="A GraphQL API for a web shop's contacts."
    )
    top.add_argument(
        "--data-dir", help="where the embedded database keeps its data (CONTACTGRAPH_DATA_DIR)"
    )
    commands = top.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser(
        "serve", help="run the API (and the embedded database unless MONGODB_URI is set)"
    )
    serve_cmd.add_argument("--host", help="address to bind (CONTACTGRAPH_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (CONTACTGRAPH_PORT, default 8000)")
    serve_cmd.add_argument("--data-dir", dest="serve_data_dir", help=argparse.SUPPRESS)
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default 1)"
    )

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; prints it on the last line")
    create.add_argument("--shop", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in Role], type=str.upper)
    create.add_argument(
        "--name", required=True, help="shown as the author of notes and consent changes"
    )
    listing = keys.add_parser("list", help="list a shop's keys")
    listing.add_argument("--shop", required=True)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")

    shops = commands.add_parser("shops", help="shops").add_subparsers(
        dest="shops_command", required=True
    )
    secret = shops.add_parser(
        "webhook-secret", help="print (or --rotate) the shop's order webhook secret"
    )
    secret.add_argument("--shop", required=True)
    secret.add_argument("--rotate", action="store_true")

    seed_cmd = commands.add_parser("seed", help="fill a shop with realistic fake contacts")
    seed_cmd.add_argument("--shop", default=DEMO_SHOP)
    seed_cmd.add_argument("--contacts", type=int, required=True)
    seed_cmd.add_argument("--orders-per-contact", type=int, default=0)
    csv_commands.add_parsers(commands, DEMO_SHOP)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        data_dir = getattr(args, "serve_data_dir", None) or args.data_dir
        if data_dir:
            overrides["data_dir"] = Path(data_dir)
        if args.command == "serve":
            overrides.update(host=args.host, port=args.port)
        settings = Settings.from_env(**overrides)
    except SettingsError as err:
        print(f"contactgraph: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            if not 1 <= args.workers <= 64:
                print("contactgraph: --workers must be between 1 and 64", file=sys.stderr)
                return 2
            return serve(settings, args.workers)
        if args.command == "keys":
            if args.keys_command == "create":
                return keys_create(settings, args.shop, args.role, args.name)
            if args.keys_command == "list":
                return keys_list(settings, args.shop)
            return keys_revoke(settings, args.key_id)
        if args.command == "shops":
            return shops_webhook_secret(settings, args.shop, args.rotate)
        if args.command in ("export", "import"):
            return csv_commands.run(settings, args, _with_database)
        if args.command == "seed":
            if args.contacts < 0 or args.orders_per_contact < 0:
                print("contactgraph: counts must not be negative", file=sys.stderr)
                return 2
            return seed(settings, args.shop, args.contacts, args.orders_per_contact)
    except ShopError as err:
        print(f"contactgraph: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
