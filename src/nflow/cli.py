"""The ``nflow`` command: serve, import, export, check, run."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from nflow.errors import ConfigError, NflowError, PlaybookError

__all__ = ["main"]

# Every command imports what it uses inside its function: `nflow serve`'s master process
# and small commands like `nflow user` stay free of the runtime, the database layer and
# the JS engine (tens of MB and most of a second) unless they need them.


def _config(path: str | None) -> tuple[object, str | None]:
    from nflow.config import find_config

    return find_config(path)


def _print(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# serve --------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    # The master process only starts and watches the workers. The configuration (and the
    # models that validate it), the runtime and all they import are loaded in a short-lived
    # child, which checks everything and hands the master the few plain values it needs.
    code, answer = _in_child(lambda: _serve_preflight(args))
    if code:
        return code
    plan = orjson.loads(answer)
    from types import SimpleNamespace

    from nflow.logs import configure_logging
    from nflow.server import MasterSettings, serve

    configure_logging(
        level=plan["log_level"],
        fmt=plan["log_format"],
        verbose=args.verbose,
        # What the log sanitizer reads of [security], as plain values.
        security=SimpleNamespace(**plan["sanitizer"]),
    )
    serve(
        config_path=plan["config_path"],
        app_files=args.app,
        example_if_empty=not args.app,
        host=plan["host"],
        port=plan["port"],
        workers=plan["workers"],
        verbose=args.verbose,
        session_secret=plan["session_secret"],
        settings=MasterSettings(
            max_header_bytes=plan["max_header_bytes"],
            shutdown_timeout_seconds=plan["shutdown_timeout_seconds"],
            metrics_port=plan["metrics_port"],
            metrics_path=plan["metrics_path"],
            config=bytes.fromhex(plan["config"]),
            verdicts=plan["verdicts"].encode(),
        ),
    )
    return 0


def _serve_preflight(args: argparse.Namespace) -> bytes:
    """Load and check the configuration and the apps, print the routes; the master's plan."""
    import pickle

    from nflow.config import Config
    from nflow.logs import configure_logging
    from nflow.runtime import RANDOM_SESSION_SECRET, Runtime
    from nflow.server import ensure_port_free

    config, path = _config(args.config)
    assert isinstance(config, Config)
    configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        verbose=args.verbose,
        security=config.security,
    )
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers or config.server.effective_workers
    ensure_port_free(host, port)  # before the start-up work, not after it
    if config.monitor.enabled and config.monitor.metrics_port:
        ensure_port_free(host, config.monitor.metrics_port, key="monitor.metrics_port")
    example = not args.app
    secret = ""
    if not config.session.secret and config.session.backend == "cookie":
        import secrets

        # One random secret for every worker, or a cookie sealed by one would not open in
        # another.
        secret = secrets.token_urlsafe(32)
        _err(f"warning: {RANDOM_SESSION_SECRET}")
    # What the analyzer finds in the apps' scripts goes to the workers with the plan: they
    # load the same scripts under the same rules, and need not parse them again.
    from nflow.security._findings import recorded, start_recording

    start_recording()
    # The preflight runtime only validates and lists routes: it must not register as a
    # metrics-writing worker of the server it precedes.
    runtime = Runtime(
        config,
        app_files=args.app,
        example_if_empty=example,
        session_secret=secret or None,
        observe=False,
        durable_worker=False,
    )

    async def show() -> None:
        await runtime.open()
        try:
            _print(f"nflow serving on http://{host}:{port}  ({workers} worker(s))")
            _print(f"database: {runtime.store.url}")
            _print_custom_steps()
            apps = runtime.router.playbooks
            if not apps:
                _print("no apps to serve: import one with `nflow import app.json` or pass --app")
            for playbook in apps:
                _print(f"app {playbook.name!r}:")
                for starter in playbook.starters:
                    _print(f"  {starter.method:<6} {starter.pattern}   ({starter.node.tab})")
        finally:
            await runtime.close()

    asyncio.run(show())
    security = config.security
    return orjson.dumps(
        {
            "config_path": os.path.abspath(path) if path else None,
            "host": host,
            "port": port,
            "workers": workers,
            "session_secret": secret,
            "log_level": config.logging.level,
            "log_format": config.logging.format,
            "sanitizer": {
                "enable_log_sanitization": security.enable_log_sanitization,
                "log_masking_char": security.log_masking_char,
                "log_preserve_length": security.log_preserve_length,
                "log_show_type": security.log_show_type,
                "log_custom_patterns": dict(security.log_custom_patterns),
                "always_encrypt_fields": list(security.always_encrypt_fields),
            },
            "max_header_bytes": config.server.max_header_bytes,
            "shutdown_timeout_seconds": config.server.shutdown_timeout_seconds,
            # Metrics on a port of their own are answered by the master.
            "metrics_port": config.monitor.metrics_port if config.monitor.enabled else 0,
            "verdicts": recorded().decode(),
            "metrics_path": config.monitor.metrics_path,
            # The running configuration, for the master's check of a SIGHUP reload.
            "config": pickle.dumps(config).hex(),
        }
    )


def _in_child(work: Callable[[], bytes]) -> tuple[int, bytes]:
    """Run ``work`` in a forked child process: the exit code, and the bytes it returned.

    The child's imports and memory go away with it. nflow's own errors are reported by this
    process, with the exit codes :func:`main` gives them.
    """
    if not hasattr(os, "fork"):
        answer: list[bytes] = []

        def run() -> int:
            answer.append(work())
            return 0

        code = _guarded(run)
        return code, answer[0] if answer else b""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 70
        try:
            try:
                reply, code = b"0" + work(), 0
            except NflowError as exc:
                reply, code = b"1nflow: " + str(exc).encode(), _exit_code(exc)
            except KeyboardInterrupt:
                reply, code = b"1", 130
            view = memoryview(reply)
            while view:
                view = view[os.write(write_end, view) :]
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(write_end)
    # Read to the end before waiting: an answer larger than the pipe's buffer would
    # otherwise block the child, which this process would be waiting for.
    with os.fdopen(read_end, "rb") as pipe:
        reply = pipe.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return 128 - code, b""  # killed by a signal: 128 + its number
    if reply[:1] == b"1":
        if len(reply) > 1:
            _err(reply[1:].decode(errors="replace"))
        return code or 1, b""
    return code, reply[1:]


# import / export ----------------------------------------------------------------------------
def _store_from(args: argparse.Namespace) -> object:
    from nflow.config import Config
    from nflow.store import Store

    config, _ = _config(args.config)
    assert isinstance(config, Config)
    return Store(config.database_url)


def cmd_import(args: argparse.Namespace) -> int:
    from nflow.applimits import app_limit_problems
    from nflow.check import module_problems
    from nflow.config import Config
    from nflow.errors import Problem, StoreError
    from nflow.playbook import load_playbook
    from nflow.store import Document, Store, exported_meta_file, read_document

    config, _ = _config(args.config)
    assert isinstance(config, Config)
    # Every file is read and checked before anything is written; then all are written in
    # one transaction, so a bad file leaves the database as it was.
    read: list[tuple[str, Document]] = []
    failed = 0
    for file in args.files:
        try:
            read.append((file, read_document(Path(file))))
        except StoreError as exc:
            _err(f"error: {exc}")
            failed += 1
    app_files = [file for file, doc in read if doc.app_json is not None]
    if args.name and len(app_files) > 1:
        _err(f"nflow import: --name names one app, and {len(app_files)} app documents are given")
        return 2
    metas = {Path(file).resolve(): doc.meta.name for file, doc in read if doc.meta is not None}

    def app_name(file: str) -> str:
        if args.name:
            return str(args.name)
        # An app exported by `nflow export` (app_<name>.json) takes its real name from the
        # row file written beside it, imported with it or left in its directory.
        meta_file = exported_meta_file(Path(file))
        if meta_file is None:
            return Path(file).stem
        name = metas.get(meta_file.resolve())
        if name is None and meta_file.is_file():
            try:
                meta = read_document(meta_file).meta
            except StoreError:
                meta = None
            name = meta.name if meta is not None else None
        return name or Path(file).stem

    store = Store(config.database_url)

    async def run() -> int:
        await store.open()
        try:
            modules = {m.name: m.code for m in await store.list_modules()}
            for _, doc in read:
                modules.update((m.name, m.code) for m in doc.modules)
            named: list[tuple[Document, str]] = []
            refused = 0
            for file, doc in read:
                name = app_name(file)
                named.append((doc, name))
                if doc.app_json is None:
                    continue
                try:
                    playbook = load_playbook(doc.app_json, name=name, source=file)
                except PlaybookError as exc:
                    _err(f"error: {exc}")
                    refused += 1
                    continue
                missing = module_problems(playbook, modules)
                errors: list[Problem] = playbook.errors + [
                    p for p in missing if p.severity == "error"
                ]
                errors += app_limit_problems(playbook, config)
                if errors and not args.force:
                    _err(f"{file}: {len(errors)} error(s):")
                    for problem in errors:
                        _err(f"  {problem}")
                    refused += 1
            if failed or refused:
                hint = " (--force imports apps with errors)" if refused and not failed else ""
                _err(
                    f"nothing imported: {failed + refused} of {len(args.files)} file(s) "
                    f"have errors{hint}"
                )
                return 1
            from nflow._cli_versions import release_imported, stage_import

            keep = config.releases.keep_versions
            if args.stage:
                for line in await stage_import(store, named, message=args.message, keep=keep):
                    _print(line)
                return 0
            summaries = await store.import_documents(named)
            released = await release_imported(store, named, message=args.message, keep=keep)
        finally:
            await store.close()
        for (file, doc), (_, name), summary in zip(read, named, summaries, strict=True):
            _print(
                f"{file}: {summary.apps} app(s), {summary.modules} module(s), "
                f"{summary.templates} template(s), {summary.queries} quer(y/ies)"
                + (f" as app {name!r}" if doc.app_json is not None else "")
            )
        for line in released:
            _print(line)
        return 0

    return asyncio.run(run())


def cmd_export(args: argparse.Namespace) -> int:
    from nflow.store import Store

    if args.version:
        from nflow._cli_versions import export_version

        return export_version(args)

    store = _store_from(args)
    assert isinstance(store, Store)

    async def run() -> None:
        await store.open()
        try:
            for path in await store.export_all(args.directory, app_name=args.name):
                _print(str(path))
        finally:
            await store.close()

    asyncio.run(run())
    return 0


# users and tokens -------------------------------------------------------------------------
def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise NflowError("the passwords differ")
    if not password:
        raise NflowError("no password given (type it, or pipe it with --password-stdin)")
    if len(password) < 8 and not args.allow_short:
        raise NflowError("password shorter than 8 characters (use --allow-short for legacy flows)")
    return password


def _with_store(args: argparse.Namespace, work: Any) -> Any:
    from nflow.store import Store

    store = _store_from(args)
    assert isinstance(store, Store)

    async def run() -> Any:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_user(args: argparse.Namespace) -> int:
    from nflow.passwords import hash_password

    if args.action in ("add", "passwd"):
        password = _read_password(args)

        async def put(store: Any) -> str:
            exists = await store.get_user(args.username) is not None
            if args.action == "add" and exists:
                raise NflowError(f"user {args.username!r} exists; use `nflow user passwd`")
            if args.action == "passwd" and not exists:
                raise NflowError(f"no user {args.username!r}")
            current = await store.get_user(args.username)
            rol = args.rol or (current.rol if current else "ROL_USER")
            await store.put_user(args.username, hash_password(password), rol=rol, active=True)
            return "added" if args.action == "add" else "password changed"

        _print(f"user {args.username!r} {_with_store(args, put)}")
        return 0

    async def delete(store: Any) -> bool:
        result: bool = await store.delete_user(args.username)
        return result

    if not _with_store(args, delete):
        _err(f"no user {args.username!r}")
        return 1
    _print(f"user {args.username!r} deleted")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    import time as _time

    from nflow.passwords import hash_token, new_token

    if args.action == "create":
        token = new_token()
        expired = int(_time.time() + args.expires_days * 86400) if args.expires_days else None

        async def add(store: Any) -> int:
            result: int = await store.add_token(
                args.name,
                hash_token(token),
                header=args.header,
                token_type=args.type,
                expired=expired,
            )
            return result

        token_id = _with_store(args, add)
        _print(f"token {token_id} for {args.name!r}; send it as:")
        prefix = f"{args.type} " if args.type else ""
        _print(f"{args.header}: {prefix}{token}")
        _err("(the token is stored hashed: this is the only time it is shown)")
        return 0

    if args.action == "list":

        async def listed(store: Any) -> Any:
            return await store.list_tokens()

        rows = _with_store(args, listed)
        if not rows:
            _err("no API tokens (create one with `nflow token create NAME`)")
        now = _time.time()
        for row in rows:
            # The stored value is a hash and shown to nobody: id, name and state only.
            state = "active" if row.active else "revoked"
            if row.active and row.expired and row.expired <= now:
                state = "expired"
            expires = (
                _time.strftime("%Y-%m-%d %H:%M", _time.localtime(row.expired))
                if row.expired
                else "never"
            )
            _print(f"{row.id}\t{row.name}\t{state}\texpires {expires}\theader {row.header}")
        return 0

    async def revoke(store: Any) -> None:
        await store.set_token_active(args.id, False)

    _with_store(args, revoke)
    _print(f"token {args.id} revoked")
    return 0


# keys -------------------------------------------------------------------------------------
def cmd_keys(args: argparse.Namespace) -> int:
    from nflow.config import Config
    from nflow.security import KeyRing, generate_key, rotate_database

    if args.action == "generate":
        _print(generate_key())
        _err("add it in front of NFLOW_ENCRYPTION_KEYS as <id>:<key>, then run `nflow keys rotate`")
        return 0
    config, _ = _config(args.config)
    assert isinstance(config, Config)
    keys = KeyRing.load(config=config.security)

    async def rotate(store: Any) -> Any:
        return await rotate_database(store, keys)

    report = _with_store(args, rotate)
    _print(
        f"re-encrypted under key {keys.current_id!r}: {report.tracker_payload} tracker "
        f"payload(s), {report.queries} quer(y/ies), {report.default_js} default_js, "
        f"{report.secrets} secret(s); {report.already_current} already current"
    )
    return 0


def _print_custom_steps() -> None:
    from nflow.steps import registered_steps

    steps = registered_steps()
    if steps:
        listed = ", ".join(f"{name} ({d.origin})" for name, d in sorted(steps.items()))
        _print(f"custom steps: {listed}")


# secrets ----------------------------------------------------------------------------------
def _secret_value(args: argparse.Namespace) -> str:
    if args.value is not None:
        return str(args.value)
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"value of {args.name}: ")
    # Piped: the whole input, minus the newline `echo` adds (values may span lines).
    return sys.stdin.read().removesuffix("\n").removesuffix("\r")


def cmd_secrets(args: argparse.Namespace) -> int:
    from nflow.config import Config
    from nflow.security import KeyConfigError, KeyRing, delete_secret, list_secrets, set_secret

    if args.action == "list":

        async def listed(store: Any) -> Any:
            return await list_secrets(store)

        rows = _with_store(args, listed)
        if not rows:
            _err("no secrets stored (add one with `nflow secrets set NAME`)")
        for row in rows:
            updated = row.updated.isoformat(sep=" ", timespec="seconds") if row.updated else ""
            _print(f"{row.name}\tkey {row.key_id}\t{updated}")
        return 0
    if not args.name:
        _err(f"nflow secrets {args.action}: give the secret's NAME")
        return 2
    if args.action == "delete":

        async def deleted(store: Any) -> bool:
            result: bool = await delete_secret(store, args.name)
            return result

        if not _with_store(args, deleted):
            _err(f"no secret {args.name!r}")
            return 1
        _print(f"secret {args.name!r} deleted")
        return 0
    config, _ = _config(args.config)
    assert isinstance(config, Config)
    try:
        keys = KeyRing.load(config=config.security)
    except KeyConfigError as exc:
        raise KeyConfigError(f"secrets are always stored encrypted, and {exc}") from None
    value = _secret_value(args)

    async def put(store: Any) -> None:
        await set_secret(store, keys, args.name, value)

    _with_store(args, put)
    _print(f'secret {args.name!r} stored (key {keys.current_id}); use it as "secret:{args.name}"')
    return 0


# check ------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from nflow.applimits import app_limit_problems
    from nflow.check import check_playbook
    from nflow.config import Config
    from nflow.playbook import load_playbook
    from nflow.steps import discover_steps
    from nflow.store import Store

    # Node types of installed step packages are known types, not errors.
    try:
        discover_steps()
    except NflowError as exc:
        _err(f"error: {exc}")
        return 1
    modules: dict[str, str | None] = {}
    apps: list[str] = []
    for file in args.files:
        try:
            doc = orjson.loads(Path(file).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            apps.append(file)  # load_playbook reports it with line and column
            continue
        if isinstance(doc, dict) and isinstance(doc.get("modules"), list):
            for row in doc["modules"]:
                if isinstance(row, dict) and isinstance(row.get("name"), str):
                    code = row.get("code")
                    modules[row["name"]] = code if isinstance(code, str) else None
        else:
            apps.append(file)
    loaded, _ = _config(args.config)
    assert isinstance(loaded, Config)
    if not args.no_db:
        store = _store_from(args)
        assert isinstance(store, Store)

        async def stored() -> None:
            await store.open()
            try:
                for module in await store.list_modules():
                    modules.setdefault(module.name, module.code)
            finally:
                await store.close()

        try:
            asyncio.run(stored())
        except NflowError as exc:
            _err(f"note: modules table not read ({exc})")
    errors = 0
    for file in apps:
        try:
            playbook = load_playbook(Path(file).read_bytes(), name=Path(file).stem, source=file)
        except OSError as exc:
            _err(f"{file}: cannot read: {exc.strerror}")
            errors += 1
            continue
        except PlaybookError as exc:
            _print(str(exc))  # it names the file
            errors += 1
            continue
        problems = check_playbook(playbook, modules=modules, security=loaded.security)
        problems += app_limit_problems(playbook, loaded)
        n_err = sum(1 for p in problems if p.severity == "error")
        n_warn = len(problems) - n_err
        _print(
            f"{file}: {len(playbook.starters)} starter(s), {n_err} error(s), {n_warn} warning(s)"
        )
        for problem in problems:
            if problem.severity == "error" or not args.quiet:
                _print(f"  {problem}")
        errors += n_err
    return 1 if errors else 0


# run --------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from nflow._http import Request, Response
    from nflow.config import Config
    from nflow.runtime import Runtime

    config, _ = _config(args.config)
    assert isinstance(config, Config)
    headers = []
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep:
            _err(f"--header {item!r}: expected Name: value")
            return 2
        headers.append((name.strip(), value.strip()))
    body = b""
    if args.data is not None:
        body = Path(args.data[1:]).read_bytes() if args.data.startswith("@") else args.data.encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            stripped = body.lstrip()
            ctype = (
                "application/json"
                if stripped[:1] in (b"{", b"[")
                else "application/x-www-form-urlencoded"
            )
            headers.append(("Content-Type", ctype))
    if args.verbose:
        from nflow.logs import configure_logging

        configure_logging(
            level=config.logging.level,
            fmt=config.logging.format,
            verbose=True,
            security=config.security,
        )
    secret = ""
    if not config.session.secret and config.session.backend == "cookie":
        import secrets

        secret = secrets.token_urlsafe(32)
    runtime = Runtime(
        config,
        app_files=[args.app],
        serve_stored_apps=False,
        log_nodes=args.verbose,
        session_secret=secret or None,
        durable_worker=False,
    )

    async def run() -> Response:
        await runtime.open()
        try:
            request = Request.from_url(args.method, args.path, headers=headers, body=body)
            tracing = runtime.tracing
            span = tracing.start_request(request) if tracing is not None else None
            response = Response(500)
            try:
                response = await runtime.handle(request)
            finally:
                if span is not None:
                    span.finish(request, response)
            runtime.wait_forks(10.0)
            return response
        finally:
            await runtime.close()

    response = asyncio.run(run())
    if args.include:
        _print(f"HTTP {response.status}")
        for key, value in response.headers:
            _print(f"{key}: {value}")
        _print()
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    if secret and any(key.lower() == "set-cookie" for key, _ in response.headers):
        # Only now does the throwaway secret matter: this cookie opens in no later run.
        from nflow.runtime import RANDOM_SESSION_SECRET

        _err(f"warning: {RANDOM_SESSION_SECRET}")
    return 0 if response.status < 400 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nflow", description="Serve nFlow designer playbooks over HTTP.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve apps over HTTP")
    p.add_argument("--config", help="config.toml (default: ./config.toml if present)")
    p.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="FILE.json",
        help="serve this app file (repeatable)",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8080)")
    p.add_argument("--workers", type=int, help="worker processes (default: number of CPUs)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, one line per executed node"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "import", help="load app documents and module/template/query files into the database"
    )
    p.add_argument("files", nargs="+")
    p.add_argument("--config")
    p.add_argument("--name", help="app name for app documents (default: the file name)")
    p.add_argument("--force", action="store_true", help="import apps even if they have errors")
    p.add_argument(
        "--stage", action="store_true", help="store the apps' versions without serving them"
    )
    p.add_argument("-m", "--message", help="recorded with the new versions")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write apps, modules, templates and queries to a directory")
    p.add_argument("directory")
    p.add_argument("--config")
    p.add_argument("--name", help="export only this app")
    p.add_argument("--version", help="export this stored version (4+ characters of its id)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check", help="validate apps without running them")
    p.add_argument("files", nargs="+", help="app documents, plus modules files to check against")
    p.add_argument("--config")
    p.add_argument("--no-db", action="store_true", help="do not read modules from the database")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("user", help="manage users of validate_user (passwords stored as Argon2id)")
    p.add_argument("action", choices=["add", "passwd", "delete"])
    p.add_argument("username")
    p.add_argument("--rol", help="role (default ROL_USER)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--allow-short", action="store_true", help="accept passwords under 8 characters")
    p.add_argument("--config")
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("token", help="manage API tokens of validate_token (stored hashed)")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("create", help="create a token and print it once")
    t.add_argument("name", help="the name validate_token(name) checks")
    t.add_argument("--header", default="Authorization")
    t.add_argument("--type", default="Bearer", help="prefix before the token (default Bearer)")
    t.add_argument("--expires-days", type=float, default=0)
    t.add_argument("--config")
    t = tsub.add_parser("list", help="list tokens by id (the token itself is never shown)")
    t.add_argument("--config")
    t = tsub.add_parser("revoke", help="deactivate a token by id (see `nflow token list`)")
    t.add_argument("id", type=int)
    t.add_argument("--config")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("keys", help="encryption keys for data at rest")
    p.add_argument("action", choices=["generate", "rotate"])
    p.add_argument("--config")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser(
        "secrets", help='configuration secrets, stored encrypted (config value "secret:NAME")'
    )
    p.add_argument("action", choices=["set", "list", "delete"])
    p.add_argument("name", nargs="?", help="the secret's name (set, delete)")
    p.add_argument(
        "--value", help="the value (default: read from stdin; a flag can end up in shell history)"
    )
    p.add_argument("--config")
    p.set_defaults(func=cmd_secrets)

    p = sub.add_parser("run", help="run one request through an app without a server")
    p.add_argument("app", metavar="FILE.json")
    p.add_argument("method")
    p.add_argument("path", help="path with optional ?query")
    p.add_argument("--data", "-d", help="request body, or @file")
    p.add_argument("--header", "-H", action="append", help="'Name: value' (repeatable)")
    p.add_argument("--config")
    p.add_argument("-i", "--include", action="store_true", help="print status and headers")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, one line per executed node"
    )
    p.set_defaults(func=cmd_run)

    from nflow._cli_data import add_data_commands

    add_data_commands(sub)
    from nflow._cli_versions import add_version_commands

    add_version_commands(sub)
    from nflow._cli_cluster import add_cluster_commands

    add_cluster_commands(sub)
    return parser


class _Parser(argparse.ArgumentParser):
    """Options may come between positional arguments (``check app.json --no-db mods.json``).

    The subcommands' parsers parse intermixed; a parser with subcommands cannot, and
    parses as usual.
    """

    _intermixed = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        nested = any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions)
        if self._intermixed or nested:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls back into this method for its two passes.
        self._intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed = False


def _guarded(work: Callable[[], int]) -> int:
    """Run a command; nflow's own errors become one line on stderr and an exit code."""
    try:
        return work()
    except NflowError as exc:
        _err(f"nflow: {exc}")
        return _exit_code(exc)
    except KeyboardInterrupt:
        return 130


def _exit_code(exc: NflowError) -> int:
    from nflow.security import KeyConfigError, SecretError

    # 2: fix the configuration or the input; 1: it failed.
    usage = (ConfigError, PlaybookError, KeyConfigError, SecretError)
    return 2 if isinstance(exc, usage) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return _guarded(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
