"""The storage layer on SQLite and PostgreSQL (every test taking ``store`` or ``db_url`` runs
on both), fed with the fixture files of ``compat/playbooks``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from nflow.errors import AppNotFound, StoreError
from nflow.store import (
    AppRecord,
    ImportSummary,
    ModuleRecord,
    Store,
    TemplateRecord,
    TrackerRow,
    UserRecord,
)
from nflow.store._support import translate_placeholders
from nflow.store._tables import parse_timestamp

PLAYBOOKS = Path(os.environ.get("NFLOW_PLAYBOOKS", "/work/shared/compat/playbooks"))
SUPPORT = PLAYBOOKS / "support"
FULL_APPS = [
    "app_nflow_sqlite_full.json",
    "app_nflow_runtime_repo_full.json",
    "app_nflow_initsql_postgres_full.json",
]

Run = Callable[..., Any]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tracker_row(order: int, **changes: Any) -> TrackerRow:
    values: dict[str, Any] = {
        "log_id": "6f1c",
        "box_id": "19ad1116",
        "box_name": "Datos Personales",
        "box_type": "js",
        "url": "/pepe11",
        "username": "admin",
        "connection_next": "012715af",
        "duration": "452m",
        "order_box": order,
        "payload": '{"nombre":"Ana"}',
        "ip": "127.0.0.1:51234",
        "real_ip": "127.0.0.1",
        "user_agent": "curl/8.0",
        "query_param": "f=run",
        "hostname": "",
        "host": "localhost:8080",
    }
    values.update(changes)
    return TrackerRow(**values)


async def execute_raw(url: str, statements: list[str]) -> None:
    """Runs DDL/DML verbatim, the way the Go tools would have built the database."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


# --- lifecycle -------------------------------------------------------------------------------


def test_open_creates_schema_and_reports(store: Store, run: Run) -> None:
    run(store.ping())
    assert store.dialect in ("sqlite", "postgresql")
    stats = run(store.pool_stats())
    assert {"open", "in_use", "idle"} <= stats.keys()
    assert stats["in_use"] == 0
    assert run(store.list_apps()) == []
    assert run(store.count_tracker()) == 0
    assert run(store.list_queries()) == {}
    run(store.open())  # already open: nothing happens
    run(store.close())
    run(store.close())
    with pytest.raises(StoreError, match="not open"):
        run(store.ping())
    run(store.open())  # reopening finds the tables made the first time
    run(store.put_app("app", "{}"))
    assert run(store.list_apps()) == ["app"]


def test_url_is_normalised_and_hides_password() -> None:
    pg = Store("postgresql://nflow:s3cret@db.example:6543/prod")
    assert pg.dialect == "postgresql"
    assert pg.url.startswith("postgresql+asyncpg://nflow:")
    assert "s3cret" not in pg.url
    lite = Store("sqlite:///relative/app.sqlite")
    assert lite.dialect == "sqlite"
    assert lite.url == "sqlite+aiosqlite:///relative/app.sqlite"
    with pytest.raises(StoreError, match="unsupported database URL scheme 'mysql'"):
        Store("mysql://root@localhost/nflow")
    with pytest.raises(StoreError, match="invalid database URL"):
        Store("not a url")


def test_in_memory_sqlite_keeps_its_data(run: Run) -> None:
    async def scenario() -> AppRecord | None:
        async with Store("sqlite+aiosqlite://") as memory:
            await memory.put_app("app", "{}")
            return await memory.get_app("app")

    assert run(scenario()) == AppRecord("app", "{}", "", None)


def test_sqlite_file_in_missing_directory(tmp_path: Path, run: Run) -> None:
    missing = tmp_path / "nowhere" / "app.sqlite"
    with pytest.raises(StoreError, match=r"directory .*nowhere does not exist"):
        run(Store(f"sqlite+aiosqlite:///{missing}").open())


def test_unreachable_postgres_names_host_and_port(run: Run) -> None:
    with pytest.raises(StoreError, match=r"cannot connect to postgresql at 127\.0\.0\.1:1: "):
        run(Store("postgresql+asyncpg://postgres@127.0.0.1:1/test").open())


# --- apps ------------------------------------------------------------------------------------


def test_app_upsert_get_list_delete(store: Store, run: Run) -> None:
    assert run(store.get_app("app")) is None
    run(store.put_app("app", '{"drawflow":{}}'))
    assert run(store.get_app("app")) == AppRecord("app", '{"drawflow":{}}', "", None)

    run(store.put_app("app", '{"drawflow":{"Home":{}}}', default_js="function auth(){}", tag="v2"))
    assert run(store.get_app("app")) == AppRecord(
        "app", '{"drawflow":{"Home":{}}}', "function auth(){}", "v2"
    )
    count = run(store.run_sql("SELECT count(*) AS n FROM nflow WHERE name = $1", ["app"]))
    assert count == [{"n": 1}]  # updated in place, not a second row

    run(store.put_app("Another app", "{}"))
    assert run(store.list_apps()) == ["Another app", "app"]
    assert run(store.delete_app("app")) is True
    assert run(store.delete_app("app")) is False
    assert run(store.get_app("app")) is None
    assert run(store.list_apps()) == ["Another app"]


def test_concurrent_upserts_leave_one_row(store: Store, run: Run) -> None:
    async def race() -> list[int]:
        await asyncio.gather(*(store.put_app("app", f'{{"n":{i}}}') for i in range(12)))
        return await asyncio.gather(*(store.put_user("u", f"h{i}") for i in range(12)))

    user_ids = run(race())
    assert len(set(user_ids)) == 1
    count = "SELECT (SELECT count(*) FROM nflow) AS apps, (SELECT count(*) FROM users) AS users"
    assert run(store.run_sql(count)) == [{"apps": 1, "users": 1}]


# --- import ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "count"),
    [
        ("modules_app_sqlite.json", 17),
        ("modules_initsql.json", 19),
        ("modules_runtime_csv.json", 17),
    ],
)
def test_import_modules(store: Store, run: Run, file_name: str, count: int) -> None:
    source = load(SUPPORT / file_name)["modules"]
    assert run(store.import_file(SUPPORT / file_name)) == ImportSummary(modules=count)
    stored = run(store.list_modules())
    assert len(stored) == count
    assert [m.name for m in stored] == sorted(m["name"] for m in source)
    for entry in source:
        module = run(store.get_module(entry["name"]))
        assert module is not None
        assert json.loads(module.mod) == entry["manifest"]
        assert module.form == entry["form_html"]
        assert module.code == entry["code"]  # null code stays null
    # Importing again updates the rows instead of adding duplicates.
    assert run(store.import_file(SUPPORT / file_name)).modules == count
    assert len(run(store.run_sql("SELECT name FROM modules"))) == count


def test_put_module_upserts(store: Store, run: Run) -> None:
    first = ModuleRecord("json", "<hr>", '{"title":"JSON"}', None)
    run(store.put_module(first))
    assert run(store.get_module("json")) == first
    second = ModuleRecord("json", "<hr/>", '{"title":"JSON 2"}', "function main(){}")
    run(store.put_module(second))
    assert run(store.list_modules()) == [second]
    assert run(store.get_module("missing")) is None


@pytest.mark.parametrize("file_name", ["templates_app_sqlite.json", "templates_initsql.json"])
def test_import_templates(store: Store, run: Run, file_name: str) -> None:
    source = load(SUPPORT / file_name)["templates"]
    assert run(store.import_file(SUPPORT / file_name)) == ImportSummary(templates=5)
    expected = sorted((TemplateRecord(t["name"], t["content"]) for t in source), key=str)
    assert sorted(run(store.list_templates()), key=str) == expected
    first = source[0]
    assert run(store.get_template(first["name"])) == TemplateRecord(first["name"], first["content"])
    run(store.put_template(first["name"], "changed"))
    assert run(store.get_template(first["name"])) == TemplateRecord(first["name"], "changed")
    assert run(store.get_template("missing")) is None


def test_import_queries(store: Store, run: Run) -> None:
    source = load(SUPPORT / "queries_app_sqlite.json")["queries"]
    assert run(store.import_file(SUPPORT / "queries_app_sqlite.json")) == ImportSummary(queries=19)
    assert run(store.list_queries()) == {q["name"]: q["query"] for q in source}
    run(store.put_query("QueryGetApp", "SELECT json, default_js FROM nflow WHERE name = $1"))
    assert run(store.list_queries())["QueryGetApp"].startswith("SELECT json, default_js")
    assert len(run(store.list_queries())) == 19


@pytest.mark.parametrize("file_name", FULL_APPS)
def test_import_full_app(store: Store, run: Run, file_name: str) -> None:
    path = PLAYBOOKS / file_name
    assert run(store.import_file(path)) == ImportSummary(apps=1)
    app = run(store.get_app("app"))
    assert app is not None
    assert json.loads(app.json) == load(path)
    assert app.json == json.dumps(load(path), ensure_ascii=False, separators=(",", ":"))
    assert app.default_js == ""
    assert run(store.import_file(path, app_name="copy")).apps == 1
    assert run(store.list_apps()) == ["app", "copy"]


def test_import_row_meta(store: Store, run: Run) -> None:
    meta_path = SUPPORT / "nflow_row_app_meta_sqlite.json"
    meta = load(meta_path)
    # The app is not there yet: nothing is created.
    assert run(store.import_file(meta_path)) == ImportSummary(apps=0)
    assert run(store.list_apps()) == []
    run(store.import_file(PLAYBOOKS / "app_nflow_sqlite_full.json"))
    assert run(store.import_file(meta_path)) == ImportSummary(apps=1)
    app = run(store.get_app("app"))
    assert app is not None
    assert app.default_js == meta["default_js"]
    assert app.tag is None
    # Re-importing the document replaces the json only.
    run(store.import_file(PLAYBOOKS / "app_nflow_runtime_repo_full.json"))
    again = run(store.get_app("app"))
    assert again is not None
    assert again.default_js == meta["default_js"]
    assert json.loads(again.json) == load(PLAYBOOKS / "app_nflow_runtime_repo_full.json")


def test_export_import_round_trip(store: Store, run: Run, tmp_path: Path) -> None:
    run(store.import_file(PLAYBOOKS / "app_nflow_sqlite_full.json"))
    run(store.import_file(SUPPORT / "nflow_row_app_meta_sqlite.json"))
    run(store.import_file(PLAYBOOKS / "app_nflow_initsql_postgres_full.json", app_name="año/2"))
    run(store.put_app("tagged", '{"drawflow":{"":{"data":{}}}}', tag="v1"))
    for name in ("modules_initsql.json", "templates_initsql.json", "queries_app_sqlite.json"):
        run(store.import_file(SUPPORT / name))
    run(store.put_module(ModuleRecord("raw", "", "not json", None)))

    first = run(store.export_all(tmp_path / "one"))
    assert [p.name for p in first] == [
        "app_app.json",
        "app_a%C3%B1o%2F2.json",
        "app_tagged.json",
        "nflow_row_app.json",
        "nflow_row_a%C3%B1o%2F2.json",
        "nflow_row_tagged.json",
        "modules.json",
        "templates.json",
        "queries.json",
    ]
    assert load(tmp_path / "one" / "app_app.json") == load(PLAYBOOKS / "app_nflow_sqlite_full.json")

    # Into a second, SQLite, database: a PostgreSQL export must load into SQLite too.
    copy = Store(f"sqlite+aiosqlite:///{tmp_path / 'copy.sqlite'}")
    run(copy.open())
    try:
        for path in first:
            name = unquote(path.stem.removeprefix("app_"))
            run(copy.import_file(path, app_name=name))
        for method in ("list_apps", "list_modules", "list_templates", "list_queries"):
            assert run(getattr(copy, method)()) == run(getattr(store, method)()), method
        for name in run(store.list_apps()):
            assert run(copy.get_app(name)) == run(store.get_app(name))
        second = run(copy.export_all(tmp_path / "two"))
    finally:
        run(copy.close())
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name

    only = run(store.export_all(tmp_path / "three", app_name="tagged"))
    assert [p.name for p in only][:2] == ["app_tagged.json", "nflow_row_tagged.json"]
    with pytest.raises(AppNotFound, match="'nope'"):
        run(store.export_all(tmp_path / "four", app_name="nope"))


def test_bad_json_names_file_line_and_column(store: Store, run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "modules": [\n    {"name": "a",, "code": null}\n  ]\n}\n')
    with pytest.raises(StoreError, match=r"broken\.json: not valid JSON: .* line 3, column 18"):
        run(store.import_file(bad))
    with pytest.raises(StoreError, match=r"missing\.json: no such file"):
        run(store.import_file(tmp_path / "missing.json"))


def test_unknown_document_shape(store: Store, run: Run, tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"rows": [], "version": 2}')
    with pytest.raises(StoreError) as info:
        run(store.import_file(odd))
    message = str(info.value)
    assert "odd.json" in message
    for key in ('"drawflow"', '"modules"', '"templates"', '"queries"', '"default_js"'):
        assert key in message
    assert "found keys: 'rows', 'version'" in message

    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(StoreError, match=r"list\.json: the top level is a JSON list"):
        run(store.import_file(listed))

    # A bad entry is found before anything is written.
    partly = tmp_path / "partly.json"
    partly.write_text(json.dumps({"modules": [{"name": "ok", "manifest": {}}, {"manifest": {}}]}))
    with pytest.raises(StoreError, match=r"partly\.json: modules\[1\]: missing 'name'"):
        run(store.import_file(partly))
    assert run(store.list_modules()) == []


# --- users and tokens ------------------------------------------------------------------------


def test_users(store: Store, run: Run) -> None:
    assert run(store.get_user("admin")) is None
    user_id = run(store.put_user("admin", "ab" * 32, rol="ROL_DEV"))
    assert run(store.get_user("admin")) == UserRecord(user_id, "admin", "ab" * 32, "ROL_DEV", True)
    assert run(store.put_user("admin", "cd" * 32, active=False)) == user_id
    assert run(store.get_user("admin")) == UserRecord(
        user_id, "admin", "cd" * 32, "ROL_USER", False
    )
    other = run(store.put_user("guest", "ef" * 32))
    assert other != user_id
    assert run(store.delete_user("admin")) is True
    assert run(store.delete_user("admin")) is False
    assert run(store.get_user("admin")) is None


def test_tokens_come_back_unpadded(store: Store, run: Run) -> None:
    bearer = run(store.add_token("api1", "t0k3n", expired=1_690_000_000))
    basic = run(store.add_token("api1", "dXNlcjpwYXNz", token_type="Basic"))
    run(store.add_token("api2", "other", header="X-Api-Key", active=False))

    tokens = run(store.get_tokens("api1"))
    assert [t.id for t in tokens] == [bearer, basic]
    first, second = tokens
    assert (first.name, first.header, first.token_type) == ("api1", "Authorization", "Bearer")
    assert (first.expired, first.active) == (1_690_000_000, True)
    assert isinstance(first.start, datetime)
    # What validate_token compares against the request header.
    assert f"{second.token_type} {second.token}" == "Basic dXNlcjpwYXNz"
    assert second.expired is None

    (api2,) = run(store.get_tokens("api2"))
    assert (api2.header, api2.active) == ("X-Api-Key", False)
    assert run(store.get_tokens("nobody")) == []

    if store.dialect == "postgresql":
        # The value is stored padded to char(150); only reading strips it.
        sql = "SELECT octet_length(header) AS n, header FROM api_tokens WHERE id = $1"
        assert run(store.run_sql(sql, [bearer])) == [{"n": 150, "header": "Authorization"}]

    run(store.set_token_active(bearer, False))
    assert [t.active for t in run(store.get_tokens("api1"))] == [False, True]
    with pytest.raises(StoreError, match="no api token with id 999999"):
        run(store.set_token_active(999_999, True))


# --- tracker ---------------------------------------------------------------------------------


def test_tracker_batch_insert_and_count(store: Store, run: Run) -> None:
    run(store.insert_tracker([]))
    assert run(store.count_tracker()) == 0
    rows = [tracker_row(i) for i in range(250)]
    rows[7] = tracker_row(7, user_agent="M" * 1000, host="h" * 600)
    run(store.insert_tracker(rows))
    assert run(store.count_tracker()) == 250
    (row,) = run(
        store.run_sql(
            "SELECT user_agent, host, duration, box_name FROM tracker WHERE order_box = $1", [7]
        )
    )
    assert (len(row["user_agent"]), len(row["host"])) == (800, 500)
    assert (row["duration"], row["box_name"]) == ("452m", "Datos Personales")
    (short,) = run(store.run_sql("SELECT ip FROM tracker WHERE order_box = $1", [3]))
    assert short == {"ip": "127.0.0.1:51234"}  # char(128) on PostgreSQL, unpadded


# --- run_sql ---------------------------------------------------------------------------------


def test_run_sql_named_queries(store: Store, run: Run) -> None:
    for name in ("modules_app_sqlite.json", "templates_app_sqlite.json", "queries_app_sqlite.json"):
        run(store.import_file(SUPPORT / name))
    named = run(store.list_queries())
    manifest = next(
        m for m in load(SUPPORT / "modules_app_sqlite.json")["modules"] if m["name"] == "form"
    )

    (module,) = run(store.run_sql(named["QueryGetModuleByName"], ["form"]))
    assert set(module) == {"form", "mod", "code"}
    assert json.loads(str(module["mod"])) == manifest["manifest"]
    assert module["code"] == manifest["code"]
    assert run(store.run_sql(named["QueryGetModuleByName"], ["missing"])) == []

    template = load(SUPPORT / "templates_app_sqlite.json")["templates"][0]
    (row,) = run(store.run_sql(named["QueryGetTemplate"], [template["name"]]))
    assert (row["name"], row["content"]) == (template["name"], template["content"])
    assert isinstance(row["id"], int)

    assert run(store.run_sql(named["QueryCountModulesByName"], ["json"])) == [{"c": 1}]
    assert len(run(store.run_sql(named["QueryGetModules"]))) == 17
    assert len(run(store.run_sql(named["QueryGetModules"], max_rows=5))) == 5

    row = tracker_row(1)
    row_values = [getattr(row, f.name) for f in fields(TrackerRow)]
    assert run(store.run_sql(named["QueryInsertLog"], row_values)) == []
    assert run(store.count_tracker()) == 1


def test_run_sql_binds_values_and_leaves_literals(store: Store, run: Run) -> None:
    hostile = "x'; DROP TABLE nflow; --"
    sql = "SELECT '$1' AS lit, $1 AS v, 'a:b' AS c, $2 AS w, $1 AS again -- $3"
    assert run(store.run_sql(sql, [hostile, 2])) == [
        {"lit": "$1", "v": hostile, "c": "a:b", "w": 2, "again": hostile}
    ]
    run(store.put_app("app", "{}"))
    assert run(store.list_apps()) == ["app"]

    with pytest.raises(StoreError, match=r"uses \$2 but 1 parameter"):
        run(store.run_sql("SELECT $1, $2", ["a"]))
    with pytest.raises(StoreError, match=r"never uses \$2"):
        run(store.run_sql("SELECT $1 AS a", ["a", "b"]))
    with pytest.raises(StoreError, match=r"run_sql .* failed on"):
        run(store.run_sql("SELECT no_such_column FROM nflow"))
    if store.dialect == "postgresql":
        assert run(store.run_sql("SELECT $1::int + 1 AS n", ["41"])) == [{"n": 42}]
        assert run(store.run_sql("SELECT (ARRAY[10,20,30])[2:$1] AS s", [3])) == [{"s": [20, 30]}]


@pytest.mark.parametrize(
    ("sql", "expected", "used"),
    [
        ("SELECT $1::int", "SELECT :nflow_p1\\:\\:int", {1}),
        ("SELECT a[1:$2]", "SELECT a[1\\: :nflow_p2]", {2}),
        ("SELECT 'it''s $1', E'\\'$1', $2", "SELECT 'it''s $1', E'\\'$1', :nflow_p2", {2}),
        ('SELECT "$1", `$2`, $3', 'SELECT "$1", `$2`, :nflow_p3', {3}),
        (
            "SELECT $1 -- $2\n, /* $3 /* $4 */ $5 */ $6",
            "SELECT :nflow_p1 -- $2\n, /* $3 /* $4 */ $5 */ :nflow_p6",
            {1, 6},
        ),
        (
            "SELECT $$ $1 $$, $q$ $2 $q$, a$1, $3",
            "SELECT $$ $1 $$, $q$ $2 $q$, a$1, :nflow_p3",
            {3},
        ),
        ("SELECT 1", "SELECT 1", set()),
    ],
)
def test_translate_placeholders(sql: str, expected: str, used: set[int]) -> None:
    assert translate_placeholders(sql) == (expected, used)


def test_translate_placeholders_rejects_ambiguous() -> None:
    with pytest.raises(StoreError, match=r"\$1 is followed by 'x'"):
        translate_placeholders("SELECT $1x")
    with pytest.raises(StoreError, match=r"\$0 is not a valid placeholder"):
        translate_placeholders("SELECT $0")


# --- databases made by the Go tools ----------------------------------------------------------

# app.sqlite and init.sql as the Go designer made them.
ORIGINAL_SQLITE = [
    "CREATE TABLE nflow (id integer PRIMARY KEY, name text NOT NULL, json blob NOT NULL,"
    " default_js text, tag varchar(200))",
    "CREATE TABLE modules (id integer PRIMARY KEY, name text NOT NULL, form text NOT NULL,"
    " mod text NOT NULL, code text)",
    "CREATE TABLE template (id integer PRIMARY KEY NOT NULL, name varchar(200),"
    " content text NOT NULL)",
    "CREATE TABLE queries (id integer PRIMARY KEY NOT NULL, name varchar(200),"
    " query text NOT NULL)",
    "CREATE TABLE users (id integer PRIMARY KEY AUTOINCREMENT NOT NULL,"
    " username varchar(200) NOT NULL, password varchar(200) NOT NULL,"
    " rol varchar(200) DEFAULT 'ROL_USER', active blob NOT NULL DEFAULT true)",
    "CREATE TABLE api_tokens (id integer PRIMARY KEY NOT NULL, name char(200) DEFAULT '',"
    " token text NOT NULL, start timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " expired integer, active blob NOT NULL DEFAULT true,"
    " header char(150) NOT NULL DEFAULT 'Authorization',"
    " token_type char(150) NOT NULL DEFAULT 'Bearer')",
    "CREATE TABLE tracker (id integer PRIMARY KEY AUTOINCREMENT, log_id text, box_id text,"
    " box_name text, box_type text, url text, username text, connection_next text,"
    " duration text, created timestamp DEFAULT CURRENT_TIMESTAMP, order_box integer,"
    " payload text, ip char(128), real_ip char(128), user_agent char(800), query_param text,"
    " hostname char(500), host char(500))",
    "INSERT INTO users (username, password, rol, active) VALUES ('off', 'x', 'ROL_USER', 'false')",
    "INSERT INTO api_tokens (name, token, start, active)"
    " VALUES ('api1', 'abc', '2023-08-01 12:00:00.123456789-03:00', true)",
]
ORIGINAL_POSTGRES = [
    "CREATE TABLE nflow (id SERIAL PRIMARY KEY, name text NOT NULL, json text NOT NULL,"
    " default_js text, tag varchar(200))",
    "CREATE TABLE modules (id SERIAL PRIMARY KEY, name text NOT NULL, form text NOT NULL,"
    " mod text NOT NULL, code text)",
    "CREATE TABLE template (id SERIAL PRIMARY KEY, name varchar(200) NOT NULL,"
    " content text NOT NULL)",
    "CREATE TABLE queries (id SERIAL PRIMARY KEY, name varchar(200) NOT NULL, query text NOT NULL)",
    "CREATE TABLE users (id SERIAL PRIMARY KEY, username varchar(200) NOT NULL,"
    " password varchar(200) NOT NULL, rol varchar(200) NOT NULL, active boolean)",
    "CREATE TABLE api_tokens (id SERIAL PRIMARY KEY, name char(200) NOT NULL,"
    " token text NOT NULL, start timestamp DEFAULT now(), expired integer, active boolean,"
    " header char(150), token_type char(150))",
    "CREATE TABLE tracker (id SERIAL PRIMARY KEY, log_id text, box_id text, box_name text,"
    " box_type text, url text, username text, connection_next text, duration text,"
    " created timestamp DEFAULT CURRENT_TIMESTAMP, order_box integer, payload text,"
    " ip char(128), real_ip char(128), user_agent char(800), query_param text,"
    " hostname char(500), host char(500))",
    "INSERT INTO users (username, password, rol, active) VALUES ('off', 'x', 'ROL_USER', NULL)",
    "INSERT INTO api_tokens (name, token, active, header, token_type)"
    " VALUES ('api1', 'abc', true, 'Authorization', 'Bearer')",
]


def test_open_database_of_the_original_runtime(db_url: str, run: Run) -> None:
    ddl = ORIGINAL_SQLITE if db_url.startswith("sqlite") else ORIGINAL_POSTGRES
    # A NULL default_js is what made the Go runtime answer 500.
    run(execute_raw(db_url, [*ddl, "INSERT INTO nflow (name, json) VALUES ('app', '{}')"]))
    store = Store(db_url)
    run(store.open())
    try:
        assert run(store.get_app("app")) == AppRecord("app", "{}", "", None)
        run(store.put_app("app", '{"drawflow":{}}', tag="t"))
        assert run(store.get_app("app")) == AppRecord("app", '{"drawflow":{}}', "", "t")
        user = run(store.get_user("off"))
        assert user is not None and user.active is False
        (token,) = run(store.get_tokens("api1"))
        assert (token.name, token.header, token.token_type, token.active) == (
            "api1",
            "Authorization",
            "Bearer",
            True,
        )
        assert token.start is not None
        assert f"{token.token_type} {token.token}" == "Bearer abc"
        run(store.insert_tracker([tracker_row(1)]))
        assert run(store.count_tracker()) == 1
        run(store.import_file(SUPPORT / "modules_initsql.json"))
        assert len(run(store.list_modules())) == 19
    finally:
        run(store.close())


def test_missing_tables_and_columns_are_added(db_url: str, run: Run) -> None:
    key = "integer PRIMARY KEY" if db_url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    run(
        execute_raw(
            db_url,
            [
                f"CREATE TABLE nflow (id {key}, name text NOT NULL, json text NOT NULL)",
                "INSERT INTO nflow (name, json) VALUES ('app', '{}')",
            ],
        )
    )
    store = Store(db_url)
    run(store.open())
    try:
        assert run(store.get_app("app")) == AppRecord("app", "{}", "", None)
        run(store.put_app("app", "{}", default_js="f()", tag="x"))
        assert run(store.get_app("app")) == AppRecord("app", "{}", "f()", "x")
        assert run(store.list_templates()) == []
    finally:
        run(store.close())


def test_foreign_table_of_the_same_name_is_refused(db_url: str, run: Run) -> None:
    run(execute_raw(db_url, ["CREATE TABLE nflow (id integer PRIMARY KEY, title text)"]))
    with pytest.raises(StoreError, match="table nflow has no column name"):
        run(Store(db_url).open())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-08-01 12:00:00", datetime(2023, 8, 1, 12, 0, 0)),
        ("2023-08-01 12:00:00.5", datetime(2023, 8, 1, 12, 0, 0, 500000)),
        ("2023-08-01T12:00:00Z", datetime.fromisoformat("2023-08-01T12:00:00+00:00")),
        (
            "2023-08-01 12:00:00.123456789-03:00",
            datetime.fromisoformat("2023-08-01 12:00:00.123456-03:00"),
        ),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_timestamp_formats(raw: str | None, expected: datetime | None) -> None:
    assert parse_timestamp(raw) == expected
