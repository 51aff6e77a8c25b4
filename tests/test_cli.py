"""The nflow command as a user runs it: check, import, export, run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import COMPAT, SUPPORT, app_doc, js, node, starter
from nflow.cli import main
from test_server import Server


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database_nflow]\ndriver = "sqlite3"\ndsn = "{tmp_path / "cli.db"}"\n')
    monkeypatch.chdir(tmp_path)
    return path


def write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_check_whole_apps_reports_orphans_as_warnings(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for app, modules in (
        ("app_nflow_sqlite_full.json", "modules_app_sqlite.json"),
        ("app_nflow_initsql_postgres_full.json", "modules_initsql.json"),
    ):
        code = main(["check", "--config", str(cfg), str(COMPAT / app), str(SUPPORT / modules)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert " 0 error(s)" in out
        assert "warning: " in out and "orphan node" in out


def test_check_lists_every_problem_with_node_and_field(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = app_doc(
        s1=starter("s1", "/ok", "a"),
        s2=starter("s2", "", "a"),
        s3={**starter("s3", "/x", "a"), "data": {"type": "starter", "urlpattern": "/x"}},
        a=js("a", "function main(){\n  var x = ;\n}", output_1="ghost", output_2="b"),
        b=js("b", script="no_such_module", output_1="c"),
        c=node("c", "websocket"),
        nodata={"id": "nodata", "outputs": {}},
    )
    path = write(tmp_path, "bad.json", doc)
    code = main(["check", "--no-db", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "node s2, field 'urlpattern'" in out
    assert "node s3, field 'method'" in out
    assert "node a, field 'outputs.output_1': connects to node 'ghost', which does not exist" in out
    assert "node a, field 'code', line 2: SyntaxError" in out
    assert "node b, field 'script': module 'no_such_module' is not in the modules table" in out
    assert "node c, field 'type': unknown node type 'websocket'" in out
    assert "node nodata, field 'data'" in out


def test_check_truncated_json_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (COMPAT / "examples_login_flow21_static_json.json").read_text()
    path = write(tmp_path, "cut.json", text[: len(text) // 2])
    assert main(["check", "--no-db", str(path)]) == 1
    out = capsys.readouterr().out
    assert "not valid JSON at line" in out and "column" in out


def test_import_export_round_trip(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        SUPPORT / "modules_app_sqlite.json",
        SUPPORT / "templates_app_sqlite.json",
        SUPPORT / "queries_app_sqlite.json",
        COMPAT / "app_nflow_sqlite_full.json",
    ]
    assert main(["import", "--config", str(cfg), "--name", "app", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "17 module(s)" in out and "5 template(s)" in out and "19 quer" in out
    assert "1 app(s)" in out and "as app 'app'" in out
    target = tmp_path / "export"
    assert main(["export", "--config", str(cfg), str(target)]) == 0
    exported = sorted(p.name for p in target.iterdir())
    assert "modules.json" in exported and "templates.json" in exported
    app_file = target / "app_app.json"
    assert json.loads(app_file.read_text()) == json.loads(files[-1].read_text())
    modules = json.loads((target / "modules.json").read_text())["modules"]
    assert len(modules) == 17


def test_import_refuses_app_with_errors_unless_forced(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = app_doc(s=starter("s", "/x", "a"), a=js("a", "function main(){}", output_1="ghost"))
    path = write(tmp_path, "broken.json", doc)
    assert main(["import", "--config", str(cfg), str(path)]) == 1
    err = capsys.readouterr().err
    assert "nothing imported" in err and "ghost" in err
    assert main(["import", "--config", str(cfg), "--force", str(path)]) == 0


def test_run_prints_response(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = COMPAT / "examples_login_flow21_static_json.json"
    assert main(["run", "--config", str(cfg), "-i", str(app), "GET", "/login_flow21"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP 200\n")
    assert out.endswith(
        '{"franco":"cafferata","idp":"nflow2","pepe":{"es":1234567,"jojo":["as"]}}\n'
    )
    assert main(["run", "--config", str(cfg), str(app), "GET", "/missing"]) == 1


def test_run_with_body(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = app_doc(
        s=starter("s", "/echo", "a"), a=js("a", "function main(){ c.JSON(200, post_data) }")
    )
    path = write(tmp_path, "echo.json", doc)
    assert (
        main(["run", "--config", str(cfg), str(path), "POST", "/echo", "-d", '{"k": [1, 2]}']) == 0
    )
    assert json.loads(capsys.readouterr().out) == {"*": "echo", "k": [1, 2]}


def test_run_with_a_response_limit_smaller_than_any_error(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg.write_text(cfg.read_text() + "[limits]\nmax_response_bytes = 10\n")
    doc = app_doc(
        s=starter("s", "/big", "a"),
        a=js("a", "function main(){ c.JSON(200, {text: 'x'.repeat(50)}) }"),
    )
    path = write(tmp_path, "big.json", doc)
    assert main(["run", "--config", str(cfg), "-i", str(path), "GET", "/big"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("HTTP 500\n")
    assert "Traceback" not in captured.err + caplog.text
    assert "response larger than 10 bytes (limits.max_response_bytes)" in caplog.text


def test_bad_config_key_is_reported_with_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[vm_pool]\nmax_sise = 3\n")
    app = COMPAT / "examples_login_flow21_static_json.json"
    assert main(["run", "--config", str(path), str(app), "GET", "/login_flow21"]) == 2
    err = capsys.readouterr().err
    assert "vm_pool.max_sise" in err and "max_size" in err


def test_user_and_token_commands(
    cfg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from nflow.passwords import verify

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["user", "add", "ana", "--password-stdin", "--config", str(cfg)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "passwd", "ana", "--password-stdin", "--config", str(cfg)]) == 1
    assert "shorter than 8" in capsys.readouterr().err

    import asyncio

    from nflow.config import load_config
    from nflow.store import Store

    async def stored_user() -> object:
        async with Store(load_config(cfg, environ={}).database_url) as store:
            return await store.get_user("ana")

    user = asyncio.run(stored_user())
    assert user is not None and user.password.startswith("$argon2id$")  # type: ignore[attr-defined]
    assert verify(user.password, "correct horse")  # type: ignore[attr-defined]

    assert main(["import", "--config", str(cfg), str(SUPPORT / "modules_app_sqlite.json")]) == 0
    capsys.readouterr()
    assert main(["token", "create", "api1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    header_line = out.strip().splitlines()[-1]
    assert header_line.startswith("Authorization: Bearer ")
    app = str(COMPAT / "examples_login_flow1_validate_token.json")
    ok = main(["run", "--config", str(cfg), app, "GET", "/login_flow1", "-H", header_line])
    assert ok == 0 and json.loads(capsys.readouterr().out) == {"idp": "nflow2"}
    bad = [
        "run",
        "--config",
        str(cfg),
        app,
        "GET",
        "/login_flow1",
        "-H",
        "Authorization: Bearer nope",
    ]
    assert main(bad) == 1
    capsys.readouterr()
    token_id = out.split()[1]
    assert main(["token", "revoke", token_id, "--config", str(cfg)]) == 0
    assert main(["run", "--config", str(cfg), app, "GET", "/login_flow1", "-H", header_line]) == 1


def test_check_reports_security_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = app_doc(
        s=starter("s", "/x", "a"),
        a=js("a", "function main(){\n  while (true) {}\n  var f = new Function('return 1')\n}"),
    )
    path = write(tmp_path, "risky.json", doc)
    assert main(["check", "--no-db", str(path)]) == 1
    out = capsys.readouterr().out
    assert "node a" in out and "line 3" in out and "function_constructor" in out
    assert "infinite_loop" in out


def test_logs_never_contain_secrets(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    from nflow.config import SecurityConfig
    from nflow.logs import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(fmt="json", security=SecurityConfig())
        logging.getLogger("nflow.js").warning(
            "console.log: %s", "login password=hunter22secret card 4111 1111 1111 1111"
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capfd.readouterr().err
    assert "console.log" in err
    assert "hunter22secret" not in err and "4111 1111 1111 1111" not in err


def test_serve_refuses_a_port_another_server_listens_on(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """granian's SO_REUSEPORT would let a second server share the port and half the traffic."""
    import socket

    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as granian binds
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code = main(["serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"server.port: 127.0.0.1:{port} is already in use" in err


def _nflow(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The nflow command as a user runs it: its own process, its own output streams."""
    return subprocess.run(
        [sys.executable, "-m", "nflow", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _stored_apps(cfg: Path) -> list[str]:
    import asyncio

    from nflow.config import load_config
    from nflow.store import Store

    async def names() -> list[str]:
        async with Store(load_config(cfg, environ={}).database_url) as store:
            return await store.list_apps()

    return asyncio.run(names())


def _hello(pattern: str) -> dict[str, object]:
    return app_doc(
        s=starter("s", pattern, "a", method="GET"),
        a=js("a", "function main(){ c.JSON(200, {ok: true}) }"),
    )


def test_import_checks_every_file_first_then_stores_all_or_nothing(
    cfg: Path, tmp_path: Path
) -> None:
    write(tmp_path, "good.json", _hello("/one"))
    write(tmp_path, "broken.json", '{"drawflow": {')
    write(tmp_path, "good2.json", _hello("/two"))
    done = _nflow("import", "good.json", "broken.json", "good2.json", "gone.json", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert "error: broken.json: not valid JSON" in lines[0] and "line 1, column 15" in lines[0]
    assert lines[1] == "error: gone.json: no such file"
    assert lines[-1] == "nothing imported: 2 of 4 file(s) have errors"
    assert all(line.count(".json") <= 1 for line in lines)  # each file named once a line
    assert _stored_apps(cfg) == []

    done = _nflow("import", "good.json", "good2.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(_stored_apps(cfg)) == ["good", "good2"]


def test_a_missing_module_is_an_error_in_check_import_run_and_serve(
    cfg: Path, tmp_path: Path
) -> None:
    doc = app_doc(
        s=starter("s", "/m", "a", method="GET"),
        a=js("a", script="no_such_module"),
    )
    write(tmp_path, "app.json", doc)
    message = "node a, field 'script': module 'no_such_module' is not in the modules table"

    checked = _nflow("check", "app.json", cwd=tmp_path)
    assert checked.returncode == 1 and message in checked.stdout

    refused = _nflow("import", "app.json", cwd=tmp_path)
    assert refused.returncode == 1 and message in refused.stderr
    assert "nothing imported" in refused.stderr and "--force" in refused.stderr
    assert _stored_apps(cfg) == []
    # With the module in the same import, the app is fine.
    modules = write(tmp_path, "mods.json", {"modules": [{"name": "no_such_module", "code": ""}]})
    assert _nflow("check", "app.json", str(modules), "--no-db", cwd=tmp_path).returncode == 0

    ran = _nflow("run", "app.json", "GET", "/m", cwd=tmp_path)
    assert ran.returncode == 1
    body = json.loads(ran.stdout)
    assert "error" not in body  # the documented shape of a failing node
    assert body["node"] == "a" and "'no_such_module'" in body["message"]

    srv = Server(tmp_path, "--app", "app.json", "--workers", "1")
    try:
        srv.wait_ready()
        answer = httpx.get(srv.url + "/m")
    finally:
        srv.stop()
    assert answer.status_code == 500 and answer.json().keys() == body.keys()
    start = srv.output().split("nflow serving on")[0]
    assert message in start

    forced = _nflow("import", "--force", "app.json", cwd=tmp_path)
    assert forced.returncode == 0 and _stored_apps(cfg) == ["app"]


def test_export_then_import_keeps_app_names(cfg: Path, tmp_path: Path) -> None:
    write(tmp_path, "hello.json", _hello("/hi"))
    assert _nflow("import", "--name", "my app/1", "hello.json", cwd=tmp_path).returncode == 0
    assert _nflow("export", "out", cwd=tmp_path).returncode == 0
    exported = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "app_my%20app%2F1.json" in exported

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.toml").write_text(cfg.read_text().replace("cli.db", "fresh.db"))
    files = [str(tmp_path / "out" / name) for name in exported]
    done = _nflow("import", *files, cwd=fresh)
    assert done.returncode == 0, done.stderr
    assert "as app 'my app/1'" in done.stdout
    assert _stored_apps(fresh / "config.toml") == ["my app/1"]
    # The app file alone finds its name in the row file exported beside it.
    (tmp_path / "fresh.db").unlink()
    alone = _nflow("import", str(tmp_path / "out" / "app_my%20app%2F1.json"), cwd=fresh)
    assert alone.returncode == 0, alone.stderr
    assert _stored_apps(fresh / "config.toml") == ["my app/1"]


def test_options_may_come_between_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = COMPAT / "app_nflow_sqlite_full.json"
    modules = SUPPORT / "modules_app_sqlite.json"
    assert main(["check", str(app), "--no-db", str(modules), "-q"]) == 0
    assert " 0 error(s)" in capsys.readouterr().out


def test_token_list_shows_ids_for_revoke_and_never_the_token(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "api1", "--config", str(cfg)]) == 0
    assert main(["token", "create", "api2", "--expires-days", "1"]) == 0
    secrets = [
        line.split()[-1] for line in capsys.readouterr().out.splitlines() if "Bearer" in line
    ]
    assert main(["token", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [row.split("\t")[:3] for row in listed] == [
        ["1", "api1", "active"],
        ["2", "api2", "active"],
    ]
    assert "expires never" in listed[0] and "header Authorization" in listed[0]
    assert not any(secret in "\n".join(listed) for secret in secrets)
    assert main(["token", "revoke", "1"]) == 0
    assert main(["token", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split("\t")[2] == "revoked"


def test_user_add_with_nothing_on_stdin_says_no_password(cfg: Path, tmp_path: Path) -> None:
    done = _nflow("user", "add", "ana", "--password-stdin", cwd=tmp_path, stdin="")
    assert done.returncode == 1
    assert "no password given" in done.stderr and "shorter" not in done.stderr


def test_messages_name_a_bad_file_once(tmp_path: Path) -> None:
    write(tmp_path, "cut.json", '{"drawflow": {')
    checked = _nflow("check", "--no-db", "cut.json", cwd=tmp_path)
    ran = _nflow("run", "cut.json", "GET", "/", cwd=tmp_path)
    assert checked.returncode == 1 and checked.stdout.count("cut.json") == 1
    assert ran.returncode == 2 and ran.stderr.count("cut.json") == 1
    assert "invalid JSON" not in checked.stdout + ran.stderr  # said once, not twice


def test_session_secret_warning_only_where_it_matters(cfg: Path, tmp_path: Path) -> None:
    write(tmp_path, "hello.json", _hello("/hi"))
    plain = _nflow("run", "hello.json", "GET", "/hi", cwd=tmp_path)
    assert plain.returncode == 0 and "session" not in plain.stderr
    login = app_doc(
        s=starter("s", "/login", "a", method="GET"),
        a=js(
            "a", "function main(){ set_session('prefs', 'color', 'blue'); c.JSON(200, {ok: true}) }"
        ),
    )
    write(tmp_path, "login.json", login)
    cookie = _nflow("run", "-i", "login.json", "GET", "/login", cwd=tmp_path)
    assert cookie.returncode == 0 and "set-cookie" in cookie.stdout.lower()
    assert cookie.stderr.count("no [session] secret configured") == 1

    srv = Server(tmp_path, "--app", "hello.json", "--workers", "2")
    try:
        srv.wait_ready()
    finally:
        srv.stop()
    assert srv.output().count("no [session] secret configured") == 1


def test_serve_master_process_loads_no_runtime_libraries(tmp_path: Path) -> None:
    """The master only starts and watches workers: the JS engine and the database layer are
    loaded by the workers, not by it; the script analyzer's parser by neither (the start-up
    check hands the workers its verdicts)."""
    write(tmp_path, "hello.json", _hello("/hi"))
    srv = Server(tmp_path, "--app", "hello.json", "--workers", "1")
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/hi").json() == {"ok": True}
        master = Path(f"/proc/{srv.proc.pid}/maps").read_text()
        worker_pid = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text()
        worker = Path(f"/proc/{worker_pid.split()[0]}/maps").read_text()
    finally:
        srv.stop()
    for library in ("jsbox", "sqlalchemy"):
        assert library in worker
        assert library not in master
    assert "tree_sitter" not in master
    assert "tree_sitter" not in worker


def test_a_worker_that_never_calls_redis_does_not_import_it(cfg: Path, tmp_path: Path) -> None:
    write(tmp_path, "hello.json", _hello("/hi"))
    script = """
import sys
from nflow.cli import main
assert main(["run", "hello.json", "GET", "/hi"]) == 0
print(sorted(m for m in ("redis", "opentelemetry") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
