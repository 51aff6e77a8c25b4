"""Hot reload: changed apps are served without a restart, requests in flight finish on the
version they started with, a broken change keeps the old version; SIGHUP reloads the config."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url

from harness import Harness, app_doc, js, starter
from nflow import Request
from nflow.cli import main as nflow_cli
from nflow.engine import Execution
from test_server import Server

FAST = "[server]\nreload_interval_seconds = 0.1\n[logging]\naccess = false\n"


def versioned(version: str) -> dict[str, Any]:
    """Each response carries its version three times, written by two different nodes."""
    return app_doc(
        s1=starter("s1", "/v", "a", method="GET"),
        s2=starter("s2", "/slow", "c", method="GET"),
        a=js(
            "a",
            f"function main(){{ c.SetHeader('X-Version', '{version}'); payload.v = '{version}' }}",
            output_1="b",
        ),
        b=js("b", f"function main(){{ c.JSON(200, {{a: payload.v, b: '{version}'}}) }}"),
        # A slower route: the run straddles more swaps, and runs on the thread pool.
        c=js(
            "c",
            f"function main(){{ c.SetHeader('X-Version', '{version}'); sleep(15); payload.v = '{version}' }}",
            output_1="b",
        ),
    )


def modules_file(path: Path, version: str) -> Path:
    """Two modules in one file, so one import changes both in one transaction."""
    rows = [
        {
            "name": "ma",
            "form": "",
            "mod": "",
            "code": f"function main(){{ payload.m = '{version}' }}",
        },
        {
            "name": "mb",
            "form": "",
            "mod": "",
            "code": f"function main(){{ c.JSON(200, {{a: payload.m, b: '{version}'}}) }}",
        },
    ]
    path.write_text(json.dumps({"modules": rows}))
    return path


MODULE_APP = app_doc(
    s1=starter("s1", "/m", "a", method="GET"),
    a=js("a", script="ma", output_1="b"),
    b=js("b", script="mb"),
)


def write_atomically(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)


def version_of(response: httpx.Response) -> str:
    """The version a response came from; fails on an error or a mix of versions."""
    assert response.status_code == 200, response.text
    body = response.json()
    header = response.headers.get("x-version", body["b"])
    assert body["a"] == body["b"] == header, f"mixed versions: {header} {body}"
    return str(body["b"])


class Load:
    """A few client threads sending a bounded number of requests while the app changes."""

    def __init__(self, url: str, paths: list[str], *, threads: int = 3) -> None:
        self.url = url
        self.paths = paths
        self.done = threading.Event()
        self.seen: dict[str, int] = {}
        self.errors: list[str] = []
        self.count = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for i in range(600):  # bounded, whatever happens
                if self.done.is_set() and i >= 100:
                    return
                path = self.paths[(i + index) % len(self.paths)]
                try:
                    version = version_of(client.get(path))
                except (AssertionError, httpx.HTTPError, KeyError, ValueError) as exc:
                    with self._lock:
                        self.errors.append(f"{path}: {exc!r}")
                    continue
                with self._lock:
                    self.count += 1
                    self.seen[version] = self.seen.get(version, 0) + 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def settle(self, url: str, paths: list[str], version: str) -> None:
        """Wait until ``version`` is served, then until the load has run on it a while."""
        eventually(lambda: all(served(url, p) == version for p in paths), f"version {version}")
        mark = self.count
        eventually(lambda: self.count >= mark + 30, "requests on the new version")

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self._threads:
            thread.join(30)


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def served(url: str, path: str) -> str:
    return version_of(httpx.get(url + path, timeout=10))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def factory(*args: str) -> Server:
        srv = Server(tmp_path, *args)
        servers.append(srv)
        srv.wait_ready()
        return srv

    yield factory
    for srv in servers:
        srv.stop()


LOOP = app_doc(
    s1=starter("s1", "/loop", "a", method="GET"),
    a=js(
        "a",
        "function main(){ payload.n = (payload.n || 0) + 1;"
        " if (payload.n >= 20) { c.JSON(200, {n: payload.n}); next = 'output_2' } }",
        output_1="a",
        output_2=None,
    ),
)
SHARED_CONFIG = FAST + "[limits]\nmax_steps = 50\n"


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with two workers for the file and SIGHUP tests (starting one takes seconds)."""
    folder = tmp_path_factory.mktemp("hot")
    write_atomically(folder / "hot.json", versioned("A"))
    (folder / "loop.json").write_bytes(orjson.dumps(LOOP))
    (folder / "config.toml").write_text(SHARED_CONFIG)
    srv = Server(folder, "--app", "hot.json", "--app", "loop.json", "--workers", "2")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_app_file_changes_under_load(hot: Server) -> None:
    app = hot.log.parent / "hot.json"
    write_atomically(app, versioned("A"))
    eventually(lambda: all(served(hot.url, "/v") == "A" for _ in range(4)), "version A")
    with Load(hot.url, ["/v", "/slow"]) as load:
        for version in "BABAB":
            write_atomically(app, versioned(version))
            load.settle(hot.url, ["/v"], version)
    assert not load.errors, load.errors[:5]
    assert load.count >= 300 and set(load.seen) == {"A", "B"}, load.seen
    eventually(lambda: all(served(hot.url, "/v") == "B" for _ in range(6)), "version B")
    assert "reloaded: app 'hot' changed (GET /v, GET /slow)" in hot.output()


def refusals(srv: Server) -> list[str]:
    return [x for x in srv.output().splitlines() if "app 'hot' not reloaded" in x]


def test_broken_app_file_keeps_the_old_version(hot: Server) -> None:
    app = hot.log.parent / "hot.json"
    write_atomically(app, versioned("B"))
    eventually(lambda: all(served(hot.url, "/v") == "B" for _ in range(4)), "version B")
    before = len(refusals(hot))
    # Malformed JSON: the old version stays, the log says why (once per worker).
    tmp = app.with_suffix(".tmp")
    tmp.write_text('{"drawflow": {"Home": {"data": {"s1": ')
    os.replace(tmp, app)
    eventually(lambda: len(refusals(hot)) == before + 2, "the refusal in both workers")
    assert all(served(hot.url, "/v") == "B" for _ in range(6))
    line = refusals(hot)[-1]
    assert "hot.json: not valid JSON at line 1" in line
    assert "still serving the previous version" in line
    # The next good change is picked up.
    write_atomically(app, versioned("A"))
    eventually(lambda: all(served(hot.url, "/v") == "A" for _ in range(6)), "version A again")
    # A version that gains errors (a connection to a missing node) is refused as well.
    broken = versioned("C")
    broken["drawflow"]["Home"]["data"]["a"]["outputs"]["output_1"]["connections"][0]["node"] = "zz"
    write_atomically(app, broken)
    eventually(lambda: len(refusals(hot)) == before + 4, "the second refusal")
    assert "connects to node 'zz', which does not exist" in refusals(hot)[-1]
    assert served(hot.url, "/v") == "A"
    time.sleep(0.3)  # logged once, not once per poll
    assert len(refusals(hot)) == before + 4


def test_sighup_applies_live_keys_and_names_the_others(hot: Server) -> None:
    config = hot.log.parent / "config.toml"

    def statuses() -> set[int]:
        with httpx.Client(base_url=hot.url, timeout=10) as client:
            return {
                client.get("/loop", headers={"Connection": "close"}).status_code for _ in range(8)
            }

    assert statuses() == {200}
    moved = FAST.replace("[server]\n", "[server]\nport = 9999\n")
    config.write_text(moved + "[limits]\nmax_steps = 10\n")
    hot.proc.send_signal(signal.SIGHUP)
    # Every worker applies the live key; the port needs a restart and is named.
    eventually(lambda: statuses() == {508}, "max_steps = 10 in every worker")
    out = hot.output()
    assert "changed keys need a restart: server.port" in out
    assert "configuration reloaded: applied limits.max_steps" in out
    assert hot.proc.poll() is None

    # An invalid file is refused with the key and the running configuration stays.
    config.write_text('[limits]\nmax_steps = "many"\n')
    hot.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "configuration not reloaded" in hot.output(), "the refusal")
    line = next(x for x in hot.output().splitlines() if "configuration not reloaded" in x)
    assert "limits.max_steps" in line and "keeping the running configuration" in line
    assert statuses() == {508}
    assert hot.proc.poll() is None


def _db_config(db_url: str) -> str:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return f'[database_nflow]\ndriver = "sqlite3"\ndsn = "{url.database}"\n'
    dsn = f"postgres://{url.username}@{url.host}:{url.port or 5432}/{url.database}?sslmode=disable"
    return f'[database_nflow]\ndriver = "postgres"\ndsn = "{dsn}"\n'


def test_stored_app_and_modules_change_under_load(
    db_url: str, tmp_path: Path, start: Callable[..., Server]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_db_config(db_url) + FAST)

    def nflow_import(*args: str) -> None:
        assert nflow_cli(["import", "--config", str(config), *args]) == 0

    def import_app(version: str) -> None:
        path = tmp_path / f"hot_{version}.json"
        path.write_bytes(orjson.dumps(versioned(version)))
        nflow_import(str(path), "--name", "hot")

    def import_modules(version: str) -> None:
        nflow_import(str(modules_file(tmp_path / f"modules_{version}.json", version)))

    import_app("A")
    import_modules("A")
    (tmp_path / "m.json").write_bytes(orjson.dumps(MODULE_APP))
    nflow_import(str(tmp_path / "m.json"), "--name", "m")
    srv = start("--workers", "1")
    assert served(srv.url, "/v") == served(srv.url, "/m") == "A"
    with Load(srv.url, ["/v", "/slow", "/m"]) as load:
        for version in "BAB":
            import_app(version)
            import_modules(version)
            load.settle(srv.url, ["/v", "/m"], version)
    assert not load.errors, load.errors[:5]
    assert load.count >= 300 and set(load.seen) == {"A", "B"}, load.seen
    eventually(
        lambda: all(served(srv.url, p) == "B" for p in ("/v", "/m") for _ in range(4)),
        "version B",
    )
    out = srv.output()
    assert "reloaded: app 'hot' changed (GET /v, GET /slow)" in out
    assert "modules changed" in out


def test_run_keeps_the_modules_it_started_with(db_url: str, tmp_path: Path) -> None:
    """A run that is mid-way when a reload lands finishes with its own module code."""
    h = Harness(
        db_url, tmp_path, apps=[MODULE_APP], support=[modules_file(tmp_path / "a.json", "A")]
    )
    try:
        slow_a = modules_file(tmp_path / "slow.json", "A")
        rows = json.loads(slow_a.read_text())
        rows["modules"][0]["code"] = "function main(){ sleep(400); payload.m = 'A' }"
        slow_a.write_text(json.dumps(rows))
        h.store("import_file", slow_a)
        h.run(h.runtime.reload())
        result: list[Execution | Any] = []
        thread = threading.Thread(
            target=lambda: result.append(h.runtime.handle_sync(Request.from_url("GET", "/m")))
        )
        thread.start()
        time.sleep(0.15)  # the run is inside module ma now
        h.store("import_file", modules_file(tmp_path / "b.json", "B"))
        h.run(h.runtime.reload())
        thread.join(10)
        first = result[0]
        assert isinstance(first, Execution)
        assert json.loads(first.response.body) == {"a": "A", "b": "A"}
        again = h.runtime.handle_sync(Request.from_url("GET", "/m"))
        assert isinstance(again, Execution)
        assert json.loads(again.response.body) == {"a": "B", "b": "B"}
    finally:
        h.close()


def test_a_catalog_is_built_from_its_sources_alone(db_url: str, tmp_path: Path) -> None:
    """No Runtime needed: app files, the database and the flags are one CatalogSources value."""
    from nflow._io import IoLoop
    from nflow.catalog import CatalogSources, build_catalog
    from nflow.store import ModuleRecord, Store

    path = tmp_path / "files.json"
    path.write_bytes(orjson.dumps(versioned("1")))
    io = IoLoop()
    store = Store(db_url)
    try:
        io.call(store.open())
        io.call(
            store.put_module(
                ModuleRecord(name="greet", form="", mod="{}", code="function main(){}")
            )
        )
        sources = CatalogSources(store=store, io=io, app_files=(path,))
        catalog = build_catalog(sources).catalog
        assert [p.name for p in catalog.playbooks] == ["files"]
        assert catalog.router.match("GET", "/v") is not None
        assert catalog.modules == {"greet": "function main(){}"}
        # Nothing changed: the next build serves the same routes and reports no change (a file
        # this fresh is read again, so only what was seen of it may move).
        again = build_catalog(sources, catalog)
        assert again.changes == [] and again.catalog.router is catalog.router
        # Without app files and with the example flag, the bundled example is served.
        example = build_catalog(CatalogSources(store=store, io=io, example_if_empty=True))
        assert [p.name for p in example.catalog.playbooks] == ["example"]
    finally:
        io.call(store.close())
        io.close()
