"""db_query / db_exec on the nflow database and on an extra one, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_support import PluginRuntime
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from nflow.jsapi import HostTable, RunContext
from nflow.plugins import _db


def execute(url: str, *statements: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


def rows_of(url: str, sql: str) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def catch(body: str) -> str:
    """A script running ``body`` (which sets ``r``) that writes r, or the error's message."""
    return f"""function main(){{
  try {{ var r; {body}; c.JSON(200, {{ok: true, r: r}}) }}
  catch (e) {{ c.JSON(200, {{ok: false, error: e.message}}) }}
}}"""


PEOPLE = (
    "CREATE TABLE people (id integer, name varchar(50), born date, balance numeric(10,2))",
    "INSERT INTO people VALUES (1, 'Ana', '1990-05-17', 10.50), (2, 'Eva', '1985-01-02', 3),"
    " (3, 'Ió', NULL, -0.25)",
)


@pytest.fixture
def people(db_url: str) -> str:
    execute(db_url, *PEOPLE)
    return db_url


def with_queries(rt: PluginRuntime, **queries: str) -> None:
    store = rt.runtime.store
    for name, sql in queries.items():
        rt.loop.run_until_complete(rt.runtime.store_call(store.put_query(name, sql)))


def test_a_run_keeps_its_queries_through_a_reload(
    plugin_rt: Callable[..., PluginRuntime], people: str
) -> None:
    # Between its two reads the run changes the query and reloads on another thread, as a
    # hot reload would: the run keeps the version it started on, the next run gets the new.
    reloads: list[BaseException | None] = []
    table = HostTable()

    @table.function("change_query_and_reload")
    def change(ctx: RunContext) -> None:
        runtime = rt.runtime
        runtime.io.call(runtime.store.put_query("who", "SELECT name FROM people WHERE id = 2"))

        def reload() -> None:
            try:
                asyncio.run(runtime.reload())
                reloads.append(None)
            except BaseException as exc:
                reloads.append(exc)

        thread = threading.Thread(target=reload)
        thread.start()
        thread.join(30)

    rt = plugin_rt(database_url=people, hosts=[table])
    with_queries(rt, who="SELECT name FROM people WHERE id = 1")
    code = """function main(){
  var before = db_query("who", []);
  change_query_and_reload();
  var after = db_query("who", []);
  c.JSON(200, {before: before[0].name, after: after[0].name});
}"""
    assert rt.run(code) == {"before": "Ana", "after": "Ana"}
    assert reloads == [None]
    assert rt.runtime.catalog.queries["who"].endswith("id = 2")
    assert rt.run(code) == {"before": "Eva", "after": "Eva"}


def test_query_and_exec_on_the_nflow_database(
    plugin_rt: Callable[..., PluginRuntime], people: str
) -> None:
    rt = plugin_rt("[databases.nflow]\nread_only = false\n", database_url=people)
    with_queries(
        rt,
        from_id="SELECT id, name, born, balance FROM people WHERE id >= $1 ORDER BY id",
        add="INSERT INTO people (id, name) VALUES ($1, $2)",
        rename="UPDATE people SET name = $2 WHERE id > $1",
    )
    out = rt.run(
        catch("""r = {rows: db_query("from_id", [2]),
               added: db_exec("add", [9, "Zoe"]),
               renamed: db_exec("rename", [2, "X"], "nflow"),
               after: db_query("from_id", [9])}""")
    )
    assert out["ok"], out
    r = out["r"]
    assert r["rows"] == [
        {"id": 2, "name": "Eva", "born": "1985-01-02", "balance": 3},
        {"id": 3, "name": "Ió", "born": None, "balance": -0.25},
    ]
    assert r["added"] == {"rows_affected": 1}
    assert r["renamed"] == {"rows_affected": 2}
    assert r["after"] == [{"id": 9, "name": "X", "born": None, "balance": None}]
    assert rows_of(people, "SELECT count(*) FROM people") == [(4,)]


def test_the_nflow_database_is_read_only_by_default(
    plugin_rt: Callable[..., PluginRuntime], people: str
) -> None:
    rt = plugin_rt(database_url=people)
    with_queries(
        rt,
        add="INSERT INTO people (id, name) VALUES ($1, $2)",
        sneaky="DELETE FROM people",  # a writing statement run through db_query
    )
    out = rt.run(catch('r = db_exec("add", [9, "Zoe"])'))
    assert out == {
        "ok": False,
        "error": "db_exec add on database nflow: the database is read-only "
        "(set databases.nflow.read_only = false to allow db_exec)",
    }
    out = rt.run(catch('r = db_query("sneaky", [])'))
    assert not out["ok"]
    assert out["error"].startswith("db_query sneaky on database nflow: ")
    assert "read-only" in out["error"] or "readonly" in out["error"]
    assert rows_of(people, "SELECT count(*) FROM people") == [(3,)]


def test_bad_calls_are_catchable_errors_naming_the_problem(
    plugin_rt: Callable[..., PluginRuntime], people: str
) -> None:
    rt = plugin_rt(database_url=people)
    with_queries(
        rt,
        one="SELECT name FROM people WHERE id = $1",
        QueryGetUser="SELECT id, username, password FROM users WHERE username = $1",
    )
    calls = {
        'db_query("nope", [])': "db_query: no query named 'nope' in the queries table",
        'db_query("one", [1], "elsewhere")': "db_query: unknown database 'elsewhere' "
        "(configured: nflow)",
        'db_query("one", [])': "db_query one on database nflow: the query takes 1 "
        "parameter(s), 0 given",
        'db_query("one", [1, 2])': "db_query one on database nflow: the query takes 1 "
        "parameter(s), 2 given",
        'db_query("one", [{id: 1}])': "db_query one on database nflow: parameter $1 is an "
        "object; parameters must be strings, numbers, booleans or null",
        'db_query("one", [[1]])': "db_query one on database nflow: parameter $1 is an "
        "array; parameters must be strings, numbers, booleans or null",
        'db_query("one", 1)': "db_query one on database nflow: the parameters must be an "
        'array, e.g. [5, "UY"]',
        'db_query("SELECT 1", [])': "db_query: no query named 'SELECT 1' in the queries table",
        'db_query("QueryGetUser", ["admin"])': "db_query: QueryGetUser is one of nflow's own "
        "queries (users, tokens, apps, modules) and is not available to scripts",
    }
    for call, message in calls.items():
        assert rt.run(catch(f"r = {call}")) == {"ok": False, "error": message}, call
    # A parameter is bound, never spliced into the SQL.
    with_queries(rt, by_name="SELECT id FROM people WHERE name = $1")
    out = rt.run(catch("r = db_query(\"by_name\", [\"x' OR '1'='1\"])"))
    assert out == {"ok": True, "r": []}
    assert rt.run(catch('r = db_query("by_name", ["Ió"])')) == {"ok": True, "r": [{"id": 3}]}


@pytest.fixture
def reports(db_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An extra database (URL, table name) holding 5 rows; its table is dropped afterwards."""
    if db_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'reports.sqlite'}"
    else:
        url = db_url
    table = f"sales_{secrets.token_hex(4)}"
    execute(
        url,
        f"CREATE TABLE {table} (region varchar(10), amount integer)",
        f"INSERT INTO {table} VALUES ('UY', 5), ('UY', 7), ('AR', 1), ('BR', 9), ('UY', 2)",
    )
    yield url, table
    execute(url, f"DROP TABLE {table}")


def reports_toml(url: str, table: str, **extra: object) -> str:
    settings = "".join(f"{k} = {str(v).lower()}\n" for k, v in extra.items())
    if url.startswith("sqlite"):
        sleepy = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        )
    else:
        sleepy = "SELECT pg_sleep(3)"
    return (
        f'[databases.reports]\nurl = "{url}"\n{settings}'
        "[databases.reports.queries]\n"
        f'by_region = "SELECT region, amount FROM {table} WHERE region = $1 AND amount >= $2 '
        'ORDER BY amount"\n'
        f'swapped = "SELECT amount FROM {table} WHERE amount > $2 AND region = $1 ORDER BY amount"\n'
        f'all = "SELECT * FROM {table} ORDER BY amount"\n'
        f'raise = "UPDATE {table} SET amount = amount + $1 WHERE region = $2"\n'
        f'sleepy = "{sleepy}"\n'
    )


def test_extra_database_with_configured_queries(
    plugin_rt: Callable[..., PluginRuntime], reports: tuple[str, str]
) -> None:
    url, table = reports
    rt = plugin_rt(reports_toml(url, table, read_only=False))
    out = rt.run(
        catch("""r = {uy: db_query("by_region", ["UY", 3], "reports"),
               swapped: db_query("swapped", ["UY", 4], "reports"),
               raised: db_exec("raise", [100, "AR"], "reports"),
               ar: db_query("by_region", ["AR", 0], "reports")}""")
    )
    assert out["ok"], out
    assert out["r"] == {
        "uy": [{"region": "UY", "amount": 5}, {"region": "UY", "amount": 7}],
        "swapped": [{"amount": 5}, {"amount": 7}],
        "raised": {"rows_affected": 1},
        "ar": [{"region": "AR", "amount": 101}],
    }
    # The extra database's queries are its own: the nflow database does not have them.
    out = rt.run(catch('r = db_query("by_region", ["UY", 0])'))
    assert out["error"] == "db_query: no query named 'by_region' in the queries table"


def test_row_cap_is_an_error_naming_the_limit(
    plugin_rt: Callable[..., PluginRuntime], reports: tuple[str, str]
) -> None:
    url, table = reports
    rt = plugin_rt(reports_toml(url, table, max_rows=4))
    out = rt.run(catch('r = db_query("all", [], "reports")'))
    assert out == {
        "ok": False,
        "error": "db_query all on database reports: more than 4 rows "
        "(databases.reports.max_rows); narrow the query or raise the limit",
    }
    out = rt.run(catch('r = db_query("by_region", ["UY", 0], "reports").length'))
    assert out == {"ok": True, "r": 3}
    out = rt.run(catch('r = db_exec("raise", [1, "UY"], "reports")'))
    assert "read-only (set databases.reports.read_only = false" in out["error"]


def test_statement_time_cap_names_query_and_limit(
    plugin_rt: Callable[..., PluginRuntime], reports: tuple[str, str]
) -> None:
    url, table = reports
    rt = plugin_rt(reports_toml(url, table, timeout_seconds=0.3))
    out = rt.run(catch('r = db_query("sleepy", [], "reports")'))
    assert out == {
        "ok": False,
        "error": "db_query sleepy on database reports: cancelled after 0.3 s "
        "(databases.reports.timeout_seconds)",
    }
    # The pool is still usable after a cancelled statement.
    out = rt.run(catch('r = db_query("by_region", ["BR", 0], "reports")'))
    assert out == {"ok": True, "r": [{"region": "BR", "amount": 9}]}


def test_pools_are_per_worker_and_closed_with_the_plugins(
    plugin_rt: Callable[..., PluginRuntime], reports: tuple[str, str]
) -> None:
    url, table = reports
    rt = plugin_rt(reports_toml(url, table))
    rt.run(catch('r = db_query("all", [], "reports")'))
    loop = rt.runtime.services.io.loop
    [engine] = _db._engines[loop].values()
    rt.run(catch('r = db_query("by_region", ["UY", 0], "reports")'))
    assert list(_db._engines[loop].values()) == [engine]
    rt.close()
    assert loop not in _db._engines
