"""The `contactgraph` command: serve, keys, shops, seed, export, import.

A command never guesses its database. It uses MONGODB_URI when set, else
the embedded database under the data dir (`--data-dir`, before or after the
command's name, or CONTACTGRAPH_DATA_DIR, or ./.contactgraph): the server
a running `serve` recorded there, or, when serve is not running, one started
for the command. Only `serve` creates a database; every other command stops
with a message naming the folder it looked in.

Nothing but argparse and the settings is loaded before the arguments are
read: the driver, the schema and the database code come with the command
that needs them, so `contactgraph --help` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graph.cli import csv_commands
from graph.settings import Settings, SettingsError

if TYPE_CHECKING:
    from loaders.mongo import Database

T = TypeVar("T")
DEMO_SHOP = "demo"
# The roles of resolvers.shops.Role, named here so that reading the command
# line loads no database code (a test keeps the two the same).
ROLES = ("ADMIN", "STAFF", "READER", "INGEST", "PUBLIC")
KEY_PREFIX = "cg_"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _with_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[T]],
    *,
    indexes: bool = True,
    migrate: bool | None = None,
) -> T:
    """Run `work` against MONGODB_URI, the running embedded server, or one started for it.

    `indexes`: make sure the database is ready for this version first, as a
    command that writes must (a read-only command skips those round trips).
    On the embedded database (or with CONTACTGRAPH_MIGRATE_ON_START, or
    `migrate=True`) that means migrating it; on MONGODB_URI only checking,
    so SchemaNotReady until `contactgraph migrate` ran. NoDatabase (from
    graph.embedded) when the data dir holds no database.
    """
    import asyncio

    from graph.embedded import database_uri
    from loaders.mongo import Database, connect

    if indexes:
        # Heavy (it reads documents through the loaders): only for the commands that need it.
        from resolvers import migrations
    if migrate is None:
        migrate = not settings.mongodb_uri or settings.migrate_on_start

    async def run(uri: str) -> T:
        client = connect(uri, serverSelectionTimeoutMS=10_000)
        try:
            database = Database(client[settings.database])
            if indexes and migrate:
                await migrations.migrate(database)
            elif indexes and (gaps := await migrations.schema_gaps(database)):
                raise migrations.SchemaNotReady(gaps)
            return await work(database)
        finally:
            await client.close()

    with database_uri(settings.mongodb_uri, settings.data_dir, on_wait=_say) as uri:
        return asyncio.run(run(uri))


async def bootstrap(database: Database) -> str | None:
    """The demo shop and its first ADMIN key, on the very first start only."""
    from resolvers.shops import Role, create_key, ensure_shop

    await ensure_shop(database, DEMO_SHOP, name="Demo shop")
    if await database.api_keys.count_documents({"shopId": DEMO_SHOP}, limit=1):
        return None
    _, raw = await create_key(database, DEMO_SHOP, Role.ADMIN, "Demo admin")
    return raw


def serve(settings: Settings, workers: int) -> int:
    import uvicorn

    from graph.embedded import (
        EmbeddedServer,
        forget_running,
        leftover_database,
        record_running,
        running_uri,
    )
    from graph.log_setup import configure_logging, logging_config

    configure_logging(settings.log_format)
    # In JSON mode every line of the output is a log record a log system can read.
    announce = _log_info if settings.log_format == "json" else _print
    server: EmbeddedServer | None = None
    metrics_dir = _metrics_dir(workers)
    if not settings.mongodb_uri:
        if running_uri(settings.data_dir):
            _say(f"contactgraph is already running on {settings.data_dir.absolute()}")
            return 1
        announce(f"Starting the embedded database in {settings.data_dir / 'data'} ...")
        server = EmbeddedServer(
            settings.data_dir / "data",
            on_wait=_say,
            leftover=leftover_database(settings.data_dir),
        ).start()
        settings = replace(settings, mongodb_uri=server.uri)
        assert server.process is not None
        record_running(settings.data_dir, server.uri, server.process.pid)
    # serve migrates the embedded database it runs itself; on MONGODB_URI that
    # is `contactgraph migrate`'s job, once per deploy, and serve only checks.
    migrate = server is not None or settings.migrate_on_start
    try:
        if settings.log_format == "json":
            # Logs a log system keeps must not hold a key: no demo key is made here.
            _with_database(settings, _hint_first_key, migrate=migrate)
        else:
            admin_key = _with_database(settings, bootstrap, migrate=migrate)
            if admin_key:
                print("Created shop 'demo' with an ADMIN key (shown once; keep it):")
                print(f"Admin key: {admin_key}")
        announce(f"Playground: http://{settings.host}:{settings.port}/graphql")
        # Workers build the app from the environment (uvicorn's factory), so
        # hand them the database this process chose, and the address it
        # listens on (the default base of links in e-mail).
        os.environ["MONGODB_URI"] = settings.mongodb_uri or ""
        os.environ["CONTACTGRAPH_DATABASE"] = settings.database
        os.environ["CONTACTGRAPH_HOST"] = settings.host
        os.environ["CONTACTGRAPH_PORT"] = str(settings.port)
        # Done above, once: the workers only check.
        os.environ["CONTACTGRAPH_MIGRATE_ON_START"] = "0"
        config = uvicorn.Config(
            "graph.http.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
            log_config=logging_config(settings.log_format),
            # The request line (graph/http/request_log.py) replaces the access
            # log, which would write query strings and unsubscribe tokens.
            access_log=False,
            # On SIGTERM: stop accepting, let requests in flight finish for this long.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
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
            announce("Stopped the embedded database.")
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _print(message: str) -> None:
    print(message, flush=True)


def _log_info(message: str) -> None:
    import logging

    logging.getLogger("contactgraph").info(message)


def _metrics_dir(workers: int) -> str | None:
    """With several workers, a folder where each writes its metrics, so any one reports them all.

    The folder is made for this run and removed at its end; one given in
    PROMETHEUS_MULTIPROC_DIR is used as it is and kept.
    """
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    import tempfile

    made = tempfile.mkdtemp(prefix="contactgraph-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


async def _hint_first_key(database: Database) -> None:
    import logging

    if not await database.api_keys.count_documents({}, limit=1):
        logging.getLogger("contactgraph").warning(
            "there is no API key yet; make the first with: contactgraph keys create "
            "--shop SHOP --role ADMIN --name NAME --create-shop"
        )


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
        "log_config": config.log_config,
        "access_log": config.access_log,
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


def keys_create(settings: Settings, shop: str, role: str, name: str, create_shop: bool) -> int:
    """Print the key's id, name, role and shop, then the key alone on the last line."""
    from resolvers.shops import ApiKey, Role, create_key, ensure_shop, get_shop

    async def work(database: Database) -> tuple[ApiKey, str, bool] | None:
        created = False
        if create_shop:
            _, created = await ensure_shop(database, shop)
        elif await get_shop(database, shop) is None:
            return None
        key, raw = await create_key(database, shop, Role(role), name)
        return key, raw, created

    made = _with_database(settings, work)
    if made is None:
        _say(f"contactgraph: no shop {shop!r} (add --create-shop to create it)")
        return 2
    key, raw, created = made
    if created:
        print(f"Created shop {shop!r}.")
    print(f"Key id: {key.id}")
    print(f"Name:   {key.name}")
    print(f"Role:   {key.role.value}")
    print(f"Shop:   {key.shop_id}")
    print("The key is shown once; keep it:")
    print(raw)
    return 0


def keys_list(settings: Settings, shop: str) -> int:
    from resolvers.shops import get_shop, list_keys

    async def work(database: Database) -> list[dict[str, Any]] | None:
        if await get_shop(database, shop) is None:
            return None
        return await list_keys(database, shop)

    rows = _with_database(settings, work, indexes=False)
    if rows is None:
        _say(f"contactgraph: no shop {shop!r}")
        return 2
    if not rows:
        print(f"No keys in shop {shop!r}.")
    for row in rows:
        state = f"revoked {row['revokedAt']:%Y-%m-%d %H:%M}" if row.get("revokedAt") else "active"
        print(f"{row['_id']}  {row['role']:<7} {row['prefix']}…  {state:<22} {row['name']}")
    return 0


def keys_revoke(settings: Settings, key_or_id: str) -> int:
    """Revoke a key named by its id (as `keys list` and `keys create` show it) or by the key itself."""
    from bson import ObjectId
    from bson.errors import InvalidId

    from resolvers.shops import hash_key, revoke_key

    given = key_or_id.strip()
    if given.startswith(KEY_PREFIX):
        where: dict[str, Any] = {"hash": hash_key(given)}
        named = "such key"
    else:
        try:
            where = {"_id": ObjectId(given)}
        except (InvalidId, TypeError):
            _say(f"contactgraph: {given!r} is neither a key id nor a key")
            return 2
        named = f"key {given}"

    async def work(database: Database) -> tuple[dict[str, Any] | None, bool]:
        doc = await database.api_keys.find_one(where, {"hash": 0})
        if doc is None or doc.get("revokedAt") is not None:
            return doc, False
        return doc, await revoke_key(database, str(doc["_id"]))

    doc, revoked = _with_database(settings, work)
    if doc is None:
        _say(f"contactgraph: there is no {named}")
        return 1
    about = f"key {doc['_id']} ({doc['name']}, {doc['role']}, shop {doc['shopId']})"
    if not revoked:
        print(f"The {about} was already revoked.")
        return 0
    print(f"Revoked {about}. It stops working within {settings.key_cache_seconds} s.")
    return 0


def shops_webhook_secret(settings: Settings, shop: str, rotate: bool) -> int:
    """Print the shop's order webhook secret (`whsec_…`, alone on stdout); `rotate` makes a new one."""
    from resolvers.shops import rotate_webhook_secret, webhook_secret

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
    """Fill the shop with fake contacts and orders; one summary line at the end."""
    from graph.cli.seed import MAX_ORDERS_PER_CONTACT, Seeded, SeedError, seed_shop

    if orders_per_contact > MAX_ORDERS_PER_CONTACT:
        _say(f"contactgraph: --orders-per-contact is at most {MAX_ORDERS_PER_CONTACT}")
        return 2

    async def work(database: Database) -> Seeded:
        return await seed_shop(database, shop, contacts, orders_per_contact)

    try:
        seeded = _with_database(settings, work)
    except SeedError as err:
        _say(f"contactgraph: {err}")
        return 2
    print(seeded.summary(shop), flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    # --data-dir is read wherever it stands: every (sub)command takes it, and
    # SUPPRESS keeps a command that was not given it from overwriting another's.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="the folder where `serve` keeps the embedded database "
        "(CONTACTGRAPH_DATA_DIR, default ./.contactgraph)",
    )
    top = argparse.ArgumentParser(
        prog="contactgraph",
        description="A GraphQL API for a web shop's contacts.",
        parents=[common],
    )
    commands = top.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser(
        "serve",
        parents=[common],
        help="run the API (and the embedded database unless MONGODB_URI is set)",
    )
    serve_cmd.add_argument("--host", help="address to bind (CONTACTGRAPH_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (CONTACTGRAPH_PORT, default 8000)")
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default 1)"
    )

    keys = commands.add_parser("keys", parents=[common], help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser(
        "create",
        parents=[common],
        help="create a key; prints its id, name, role and shop, then the key on the last line",
    )
    create.add_argument("--shop", required=True)
    create.add_argument("--role", required=True, choices=ROLES, type=str.upper)
    create.add_argument(
        "--name", required=True, help="shown as the author of notes and consent changes"
    )
    create.add_argument(
        "--create-shop", action="store_true", help="create the shop if it does not exist yet"
    )
    listing = keys.add_parser("list", parents=[common], help="list a shop's keys")
    listing.add_argument("--shop", required=True)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("key", metavar="KEY_ID_OR_KEY", help="the key's id, or the key itself")

    shops = commands.add_parser("shops", parents=[common], help="shops").add_subparsers(
        dest="shops_command", required=True
    )
    secret = shops.add_parser(
        "webhook-secret",
        parents=[common],
        help="print (or --rotate) the shop's order webhook secret",
    )
    secret.add_argument("--shop", required=True)
    secret.add_argument("--rotate", action="store_true")

    commands.add_parser(
        "migrate",
        parents=[common],
        help="bring the database up to this version: data migrations, then indexes",
    )

    seed_cmd = commands.add_parser(
        "seed", parents=[common], help="fill a shop with realistic fake contacts"
    )
    seed_cmd.add_argument("--shop", default=DEMO_SHOP)
    seed_cmd.add_argument("--contacts", type=int, required=True)
    seed_cmd.add_argument(
        "--orders-per-contact", type=int, default=0, help="orders each (default 0, at most 50)"
    )
    csv_commands.add_parsers(commands, DEMO_SHOP, [common])
    return top


def migrate_database(settings: Settings) -> int:
    from resolvers.migrations import migrate

    async def work(database: Database) -> list[str]:
        return await migrate(database)

    ran = _with_database(settings, work, indexes=False)
    print(f"Data migrations run: {', '.join(ran) if ran else 'none needed'}.")
    print("Indexes: all present.")
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        if not data_dir.strip():
            raise SettingsError("--data-dir names no folder")
        overrides["data_dir"] = Path(data_dir)
    if args.command == "serve":
        overrides.update(host=args.host, port=args.port)
    return Settings.from_env(**overrides)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        if not 1 <= args.workers <= 64:
            _say("contactgraph: --workers must be between 1 and 64")
            return 2
        return serve(settings, args.workers)
    if args.command == "keys":
        if args.keys_command == "create":
            return keys_create(settings, args.shop, args.role, args.name, args.create_shop)
        if args.keys_command == "list":
            return keys_list(settings, args.shop)
        return keys_revoke(settings, args.key)
    if args.command == "shops":
        return shops_webhook_secret(settings, args.shop, args.rotate)
    if args.command == "migrate":
        return migrate_database(settings)
    if args.command in ("export", "import"):
        return csv_commands.run(settings, args, _with_database)
    if args.command == "seed":
        if args.contacts < 0 or args.orders_per_contact < 0:
            _say("contactgraph: counts must not be negative")
            return 2
        return seed(settings, args.shop, args.contacts, args.orders_per_contact)
    return 2


def _file_problem(err: OSError) -> str:
    if err.filename is None:
        return str(err)
    reason = err.strerror or type(err).__name__
    return f"{reason}: {Path(os.fsdecode(err.filename)).absolute()}"


def _schema_not_ready(err: BaseException) -> bool:
    # resolvers.migrations is heavy to import, and loaded by every command that can raise this.
    migrations = sys.modules.get("resolvers.migrations")
    return migrations is not None and isinstance(err, migrations.SchemaNotReady)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as err:
        _say(f"contactgraph: {err}")
        return 2
    from graph.embedded import EmbeddedServerError, NoDatabase
    from resolvers.shops import ShopError

    try:
        return _run(args, settings)
    except NoDatabase as err:
        _say(f"contactgraph: {err}")
        return 2
    except EmbeddedServerError as err:
        _say(f"contactgraph: {err}")
        return 1
    except RuntimeError as err:
        if not _schema_not_ready(err):
            raise
        _say(f"contactgraph: {err}")
        return 2
    except ShopError as err:
        _say(f"contactgraph: {err}")
        return 2
    except OSError as err:
        # A file that cannot be read or written (the CSV commands, the data dir).
        _say(f"contactgraph: {_file_problem(err)}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
