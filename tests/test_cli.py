"""The nflow command as a user runs it: check, import, export, run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import COMPAT, SUPPORT, app_doc, js, node, starter
from nflow.cli import main


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
    assert "not imported" in err and "ghost" in err
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
