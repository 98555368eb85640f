"""Indexes and data migrations are one deploy step, `contactgraph migrate`; on MONGODB_URI the
server and the other commands only check, and refuse a database that is not ready."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from serve_process import cli_env, run_cli

from graph.http.app import create_app
from graph.settings import Settings
from loaders.mongo import INDEXES, Database, connect
from resolvers.migrations import MIGRATIONS, SchemaNotReady, schema_gaps


@pytest.fixture
async def fresh(settings: Settings) -> AsyncIterator[Database]:
    """A database of its own that no version of contactgraph has touched."""
    client = connect(settings.mongodb_uri or "")
    database = Database(client[f"contactgraph_fresh_{uuid.uuid4().hex[:12]}"])
    try:
        yield database
    finally:
        await client.drop_database(database.db.name)
        await client.close()


def on(settings: Settings, database: Database) -> dict[str, str]:
    return cli_env(MONGODB_URI=settings.mongodb_uri or "", CONTACTGRAPH_DATABASE=database.db.name)


async def test_a_new_database_lacks_every_migration_and_index(fresh):
    gaps = await schema_gaps(fresh)
    assert [g for g in gaps if g.startswith("migration ")] == [
        f"migration {name}" for name, _ in MIGRATIONS
    ]
    assert "index contacts.shopId_1_emailKey_1" in gaps
    assert len([g for g in gaps if g.startswith("index ")]) == sum(map(len, INDEXES.values()))


async def test_migrate_brings_the_database_up_to_date_once(settings, fresh):
    # A database from before the migrations: it holds data.
    await fresh.contacts.insert_one({"shopId": "s", "emailKey": "a@example.com"})
    env = on(settings, fresh)
    first = await asyncio.to_thread(run_cli, ["migrate"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"Data migrations run: {', '.join(name for name, _ in MIGRATIONS)}.",
        "Indexes: all present.",
    ]
    assert await schema_gaps(fresh) == []
    unique = (await fresh.contacts.index_information())["shopId_1_emailKey_1"]
    assert unique["unique"] is True

    again = await asyncio.to_thread(run_cli, ["migrate"], env)
    assert again.returncode == 0
    assert again.stdout.splitlines()[0] == "Data migrations run: none needed."


async def test_a_new_database_starts_at_this_version(settings, fresh):
    made = await asyncio.to_thread(run_cli, ["migrate"], on(settings, fresh))
    assert made.stdout.splitlines()[0] == "Data migrations run: none needed."
    recorded = await fresh.migrations.find({}).to_list()
    assert sorted(doc["_id"] for doc in recorded) == sorted(name for name, _ in MIGRATIONS)
    assert {doc["result"] for doc in recorded} == {"new database"}
    assert await schema_gaps(fresh) == []


async def test_commands_refuse_a_database_that_was_not_migrated(settings, fresh):
    made = await asyncio.to_thread(
        run_cli,
        ["keys", "create", "--shop", "s", "--role", "ADMIN", "--name", "n", "--create-shop"],
        on(settings, fresh),
    )
    assert made.returncode == 2
    assert made.stderr.startswith("contactgraph: The database is not ready for this version (")
    assert made.stderr.rstrip().endswith("run `contactgraph migrate`.")
    assert "Traceback" not in made.stderr
    # Nothing was written, nor any index built behind the operator's back.
    assert await fresh.db.list_collection_names() == []


async def test_the_server_refuses_to_start_on_a_database_that_was_not_migrated(settings, fresh):
    app = create_app(dataclasses.replace(settings, database=fresh.db.name, migrate_on_start=False))
    with pytest.raises(SchemaNotReady) as refused:
        async with LifespanManager(app):
            pass
    assert "migration order-dates-never-null" in refused.value.gaps
    assert await fresh.db.list_collection_names() == []


async def test_a_missing_or_changed_index_is_named(settings, fresh):
    assert (await asyncio.to_thread(run_cli, ["migrate"], on(settings, fresh))).returncode == 0
    await fresh.contacts.drop_index("shopId_1_emailKey_1__id_1")

    assert await schema_gaps(fresh) == ["index contacts.shopId_1_emailKey_1__id_1"]
    app = create_app(dataclasses.replace(settings, database=fresh.db.name, migrate_on_start=False))
    with pytest.raises(SchemaNotReady, match=r"index contacts\.shopId_1_emailKey_1__id_1"):
        async with LifespanManager(app):
            pass


async def test_a_server_with_migrate_on_start_does_the_step_itself(settings, fresh):
    app = create_app(dataclasses.replace(settings, database=fresh.db.name, migrate_on_start=True))
    async with LifespanManager(app):
        assert await schema_gaps(fresh) == []


def test_migrate_on_start_is_read_from_the_environment():
    assert Settings.from_env({}).migrate_on_start is False
    assert Settings.from_env({"CONTACTGRAPH_MIGRATE_ON_START": "1"}).migrate_on_start is True
    with pytest.raises(Exception, match="CONTACTGRAPH_MIGRATE_ON_START must be 1 or 0"):
        Settings.from_env({"CONTACTGRAPH_MIGRATE_ON_START": "yes please"})
