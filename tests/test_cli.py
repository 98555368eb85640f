"""`contactgraph serve`, `keys` and the other commands as a newcomer runs them: real processes."""

from __future__ import annotations

import signal
import subprocess
import sys

from serve_process import Serve, assert_gone, cli_env, gql, run_cli

from graph.cli.csv_commands import SORT_KEYS
from graph.cli.main import ROLES
from graph.embedded import free_port
from loaders.contacts import SORT_FIELDS
from resolvers.shops import Role, ensure_shop, find_key

CREATE = (
    'mutation { contactCreate(input: {email: "first@example.com"}) '
    "{ contact { id } userErrors { code } } }"
)
COUNT = "{ contacts { totalCount nodes { email } } }"


def test_serve_embedded_then_restart_and_manage_keys(tmp_path):
    data_dir = tmp_path / "cg"
    env = cli_env()
    port = free_port()

    # First start: a fresh data dir gets the demo shop and one ADMIN key.
    first = Serve(["--data-dir", str(data_dir)], env, port)
    try:
        first.wait_ready()
        [admin_key] = first.admin_keys()
        assert f"Playground: http://127.0.0.1:{port}/graphql" in first.lines
        assert (data_dir / "data").is_dir()
        children = first.descendants()
        assert any("secantusd" in " ".join(p.cmdline()) for p in children), children

        created = gql(first.url, admin_key, CREATE).json()
        assert created["data"]["contactCreate"]["userErrors"] == []

        # `keys` commands run from another folder talk to the running server
        # through the data dir, named after the command this time.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        at = ["--data-dir", str(data_dir)]
        made = run_cli(
            ["keys", "create", "--shop", "demo", "--role", "reader", "--name", "Reporting", *at],
            env,
            cwd=elsewhere,
        )
        assert made.returncode == 0, made.stderr
        *about, reader_key = made.stdout.strip().splitlines()
        assert reader_key.startswith("cg_reader_")
        key_id = about[0].removeprefix("Key id: ")
        assert about == [
            f"Key id: {key_id}",
            "Name:   Reporting",
            "Role:   READER",
            "Shop:   demo",
            "The key is shown once; keep it:",
        ]
        assert gql(first.url, reader_key, COUNT).json()["data"]["contacts"]["totalCount"] == 1
        refused = gql(first.url, reader_key, CREATE).json()
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

        listed = run_cli(["keys", "list", "--shop", "demo", *at], env, cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if "Reporting" in line]
        assert len(rows) == 1 and "READER" in rows[0] and "active" in rows[0]
        assert rows[0].split()[0] == key_id
        assert reader_key not in listed.stdout and admin_key not in listed.stdout  # only prefixes

        # Revoked by the key itself (as a leaked key is at hand); by id is tested below.
        revoked = run_cli([*at, "keys", "revoke", reader_key], env, cwd=elsewhere)
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.startswith(f"Revoked key {key_id} (Reporting, READER, shop demo).")
        assert gql(first.url, reader_key, COUNT).status_code == 401
        relisted = run_cli(["keys", "list", *at, "--shop", "demo"], env, cwd=elsewhere)
        assert "revoked" in next(
            line for line in relisted.stdout.splitlines() if "Reporting" in line
        )
        assert list(elsewhere.iterdir()) == []  # no database of its own
    finally:
        code = first.stop(signal.SIGTERM)
    assert code == 0, first.output
    assert_gone(children)
    assert not (data_dir / "server.json").exists()

    # serve is not running: a command starts the database for its own duration.
    listed = run_cli(["keys", "list", "--shop", "demo", "--data-dir", str(data_dir)], env)
    assert listed.returncode == 0, listed.stderr
    assert "Demo admin" in listed.stdout and "Reporting" in listed.stdout

    # Second start on the same data (named by the environment this time): no
    # new key, the data survived; Ctrl-C stops it.
    second = Serve(
        [], {**env, "CONTACTGRAPH_DATA_DIR": str(data_dir)}, free_port(), port_from_env=True
    )
    try:
        second.wait_ready()
        assert second.admin_keys() == []
        children = second.descendants()
        body = gql(second.url, admin_key, COUNT).json()
        assert body["data"]["contacts"] == {
            "totalCount": 1,
            "nodes": [{"email": "first@example.com"}],
        }
    finally:
        code = second.stop(signal.SIGINT)
    assert code == 0, second.output
    assert_gone(children)


async def test_with_mongodb_uri_no_embedded_server_starts(tmp_path, settings, database):
    env = cli_env(MONGODB_URI=settings.mongodb_uri or "", CONTACTGRAPH_DATABASE=settings.database)
    unused_dir = tmp_path / "never"

    made = run_cli(
        [
            "--data-dir",
            str(unused_dir),
            "keys",
            "create",
            "--shop",
            "cli-shop",
            "--role",
            "STAFF",
            "--name",
            "Clerk",
            "--create-shop",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Created shop 'cli-shop'.\nKey id: ")
    raw = made.stdout.strip().splitlines()[-1]
    found = await find_key(database, raw)
    assert found is not None
    key, shop = found
    assert (key.role.value, key.name, shop.id) == ("STAFF", "Clerk", "cli-shop")

    server = Serve(["--data-dir", str(unused_dir)], env, free_port())
    try:
        server.wait_ready()
        assert server.descendants() == []
        assert "embedded database" not in server.output
        assert gql(server.url, raw, COUNT).json()["data"]["contacts"]["totalCount"] == 0
    finally:
        code = server.stop()
    assert code == 0, server.output
    assert not unused_dir.exists()


def test_bad_arguments_and_settings_stop_at_once(tmp_path):
    result = run_cli(
        [
            "--data-dir",
            str(tmp_path),
            "keys",
            "create",
            "--shop",
            "demo",
            "--role",
            "ROOT",
            "--name",
            "x",
        ],
        cli_env(),
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    result = run_cli(["--data-dir", str(tmp_path), "serve"], cli_env(CONTACTGRAPH_PORT="eighty"))
    assert result.returncode == 2
    assert "CONTACTGRAPH_PORT must be a whole number" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started or written


def test_a_command_without_a_database_stops_and_creates_nothing(tmp_path):
    """Run where no `serve` keeps its data, a command says where it looked and starts nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    leads = tmp_path / "leads.csv"
    leads.write_text("email\nann@example.com\n")
    typo = tmp_path / "typo"
    here = empty.resolve() / ".contactgraph"
    env = cli_env()
    cases = [
        (["keys", "list", "--shop", "demo"], env, here),
        (
            ["keys", "create", "--shop", "demo", "--role", "STAFF", "--name", "Jo"],
            {**env, "CONTACTGRAPH_DATA_DIR": str(typo)},
            typo,
        ),
        (
            ["keys", "revoke", "cg_admin_x", "--data-dir", "relative/dir"],
            env,
            empty.resolve() / "relative/dir",
        ),
        (["shops", "webhook-secret", "--shop", "demo", "--data-dir", str(typo)], env, typo),
        (["seed", "--contacts", "5"], env, here),
        (["export", "--out", "contacts.csv"], env, here),
        (["--data-dir", str(typo), "import", str(leads), "--dry-run"], env, typo),
    ]
    for args, command_env, looked_in in cases:
        result = run_cli(args, command_env, cwd=empty)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"contactgraph: no database in {looked_in}: "), line
        assert "--data-dir" in line and result.stdout == ""
    assert list(empty.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "leads.csv"]


def cli_on(settings) -> dict[str, str]:
    """The command's environment for the test run's own database (no embedded server)."""
    return cli_env(MONGODB_URI=settings.mongodb_uri or "", CONTACTGRAPH_DATABASE=settings.database)


async def test_keys_create_needs_an_existing_shop_unless_told_to_create_it(
    tmp_path, settings, database
):
    env = cli_on(settings)
    create = ["keys", "create", "--shop", "demoo", "--role", "staff", "--name", "Jo"]

    refused = run_cli(create, env, cwd=tmp_path)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == "contactgraph: no shop 'demoo' (add --create-shop to create it)\n"
    assert await database.shops.count_documents({}) == 0
    assert await database.api_keys.count_documents({}) == 0

    made = run_cli([*create, "--create-shop"], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == "Created shop 'demoo'."
    [stored] = await database.api_keys.find({}).to_list()
    assert lines[1:] == [
        f"Key id: {stored['_id']}",
        "Name:   Jo",
        "Role:   STAFF",
        "Shop:   demoo",
        "The key is shown once; keep it:",
        lines[-1],
    ]
    found = await find_key(database, lines[-1])
    assert found is not None and str(found[0].id) == str(stored["_id"])

    # The shop exists now: --create-shop changes nothing about it and says nothing.
    second = run_cli([*create, "--create-shop"], env, cwd=tmp_path)
    assert second.returncode == 0 and not second.stdout.startswith("Created shop")
    assert await database.shops.count_documents({}) == 1


async def test_keys_revoke_takes_the_id_or_the_key(tmp_path, settings, database):
    env = cli_on(settings)
    made = [
        run_cli(
            ["keys", "create", "--shop", "s1", "--role", "READER", "--name", n, "--create-shop"],
            env,
            cwd=tmp_path,
        )
        for n in ("By id", "By key")
    ]
    (id_key, by_id), (_, by_key) = [
        (m.stdout.splitlines()[-1], m.stdout.split("Key id: ")[1].split()[0]) for m in made
    ]
    revoked = run_cli(["keys", "revoke", by_id], env, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == (
        f"Revoked key {by_id} (By id, READER, shop s1). It stops working within 0 s.\n"
    )
    raw = made[1].stdout.splitlines()[-1]
    revoked = run_cli(["keys", "revoke", raw], env, cwd=tmp_path)
    assert revoked.stdout.startswith(f"Revoked key {by_key} (By key, READER, shop s1).")
    assert await find_key(database, id_key) is None and await find_key(database, raw) is None

    again = run_cli(["keys", "revoke", by_id], env, cwd=tmp_path)
    assert (again.returncode, again.stdout) == (
        0,
        f"The key {by_id} (By id, READER, shop s1) was already revoked.\n",
    )
    unknown = run_cli(["keys", "revoke", "6600000000000000000000aa"], env, cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "contactgraph: there is no key 6600000000000000000000aa\n",
    )
    unknown = run_cli(["keys", "revoke", "cg_reader_unknown"], env, cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr) == (1, "contactgraph: there is no such key\n")
    nonsense = run_cli(["keys", "revoke", "Reporting"], env, cwd=tmp_path)
    assert (nonsense.returncode, nonsense.stderr) == (
        2,
        "contactgraph: 'Reporting' is neither a key id nor a key\n",
    )
    assert await database.api_keys.count_documents({"revokedAt": None}) == 0
    listed = run_cli(["keys", "list", "--shop", "nope"], env, cwd=tmp_path)
    assert (listed.returncode, listed.stderr) == (2, "contactgraph: no shop 'nope'\n")


async def test_file_errors_are_one_line_and_write_nothing(tmp_path, settings, database):
    await ensure_shop(database, "demo")
    env = cli_on(settings)
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    cases = [
        (
            ["export", "--out", str(tmp_path / "missing" / "x.csv")],
            f"there is no folder {tmp_path / 'missing'} to write x.csv into",
        ),
        (
            ["export", "--out", str(a_file / "x.csv")],
            f"there is no folder {a_file} to write x.csv into",
        ),
        (["export", "--out", str(folder)], f"{folder} is a folder: name the CSV file to write"),
        (["import", str(tmp_path / "nope.csv")], f"there is no file {tmp_path / 'nope.csv'}"),
        (["import", str(folder)], f"{folder} is a folder, not a CSV file"),
    ]
    for args, message in cases:
        result = run_cli(args, env, cwd=tmp_path)
        assert (result.returncode, result.stderr, result.stdout) == (
            2,
            f"contactgraph: {message}\n",
            "",
        ), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file.txt", "folder"]
    assert list(folder.iterdir()) == []
    assert await database.contacts.count_documents({}) == 0


def test_reading_the_command_line_loads_no_database_code():
    """`contactgraph --help` (and every argument error) answers without loading the driver or the schema."""
    code = (
        "import sys, graph.cli.main as m; m.parser().format_help(); "
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'pymongo', 'bson', "
        "'strawberry', 'graphql', 'starlette', 'uvicorn', 'tqdm', 'loaders', 'resolvers'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout == "[]\n"
    helped = run_cli(["keys", "create", "--help"], cli_env())
    assert helped.returncode == 0 and "--create-shop" in helped.stdout
    assert "--data-dir" in helped.stdout


def test_the_command_line_names_every_role_and_sort_key():
    assert ROLES == tuple(role.value for role in Role)
    assert sorted(SORT_KEYS) == sorted(SORT_FIELDS)
