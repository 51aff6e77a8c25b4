"""Browser tests of the studio page: Debian's chromium driven by pytest-playwright against a
real ``nflow serve`` on 127.0.0.1 (SQLite, one server per test module).

The browser is the system's ``chromium`` (``executable_path``); Playwright never downloads
one. When it is missing the tests fail with the command that installs it, never skip. A
screenshot of the page is kept for every failed test (``--screenshot only-on-failure``, in
pyproject's pytest options, writes it under ``test-results/``). Every request the page makes
to anything but the server under test fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserType,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

COMPAT = Path(__file__).resolve().parents[3] / "shared" / "compat" / "playbooks"
API = "/_nflow/api"
SUPPORT = [
    COMPAT / "support" / "modules_app_sqlite.json",
    COMPAT / "support" / "templates_app_sqlite.json",
    COMPAT / "support" / "queries_app_sqlite.json",
]


def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium", pytrace=False)
    return found


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": chromium(),
        "args": ["--disable-gpu", "--disable-quic"],
    }


# pytest-playwright keeps one Playwright for the whole session, and its sync API leaves an
# event loop marked running in the main thread until it stops: every later test that runs
# asyncio would fail. These overrides start it for this package and stop it when the package
# is done.
@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    browser_type: BrowserType = getattr(playwright, browser_name)
    return browser_type


@pytest.fixture(scope="package")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_context_args(pytestconfig: Any, _pw_artifacts_folder: Any) -> dict[str, Any]:
    """pytest-playwright's own, for this package's Playwright: a wide viewport, and videos
    when ``--video`` asks for them."""
    args: dict[str, Any] = {"viewport": {"width": 1400, "height": 860}}
    if pytestconfig.getoption("--video") in ("on", "retain-on-failure"):
        args["record_video_dir"] = _pw_artifacts_folder.name
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StudioServer:
    """``nflow serve`` with the studio on, over a SQLite database holding ``apps``."""

    def __init__(
        self,
        root: Path,
        apps: dict[str, Any],
        studio: str = "",
        users: tuple[tuple[str, str, str], ...] = (),
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        db = root / "nflow.db"
        (root / "config.toml").write_text(
            f'[database_nflow]\ndsn = "{db}"\n'
            '[session]\nsecret = "studio-tests-secret-0123456789abcdef"\n'
            "[logging]\naccess = false\n"
            f"[studio]\nenabled = true\n{studio}"
            "[debug]\nenabled = true\n"
            '[history]\nmode = "all"\n'
        )
        files: list[str] = []
        for name, doc in apps.items():
            if isinstance(doc, Path):
                doc = json.loads(doc.read_text())
            path = root / "apps" / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(doc))
            files.append(str(path))
        subprocess.run(
            [sys.executable, "-m", "nflow", "import", "--force", *files, *map(str, SUPPORT)],
            cwd=root,
            check=True,
            capture_output=True,
            timeout=120,
        )
        for name, password, role in users:
            subprocess.run(
                [sys.executable, "-m", "nflow", "user", "add", name, "--rol", role],
                input=password + "\n",
                text=True,
                cwd=root,
                check=True,
                capture_output=True,
                timeout=60,
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nflow", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", "1"),
            ],
            cwd=root,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "NFLOW_LOGGING__FORMAT": "json"},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            self.stop()
            raise AssertionError(f"server not ready: {self.output()}")
        self.api = httpx.Client(
            base_url=self.url + API, timeout=20, headers={"X-Nflow-Client": "tests"}
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def app(self, name: str) -> dict[str, Any]:
        r = self.api.get(f"/apps/{name}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def serve(
    tmp_path_factory: pytest.TempPathFactory, apps: dict[str, Any], **options: Any
) -> Iterator[StudioServer]:
    server = StudioServer(tmp_path_factory.mktemp("studio"), apps, **options)
    try:
        yield server
    finally:
        server.api.close()
        server.stop()


class Studio:
    """The page under test, with what it logged: console errors, uncaught errors, dialogs
    and requests to anywhere but the server."""

    def __init__(self, page: Page, server: StudioServer) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        self.http_errors: list[str] = []
        # What the page's Content-Security-Policy blocked: inline styles of a form page read
        # with DOMParser to fill the composer, never applied.
        self.blocked: list[str] = []
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)
        page.route("**/*", self._route)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)
        if message.type != "error":
            return
        # Chromium logs every HTTP error answer to fetch as a console error; the tests that
        # expect one (a 409, a run not yet recorded) check the page instead.
        if "Content Security Policy" in message.text:
            self.blocked.append(message.text)
        elif message.text.startswith("Failed to load resource"):
            self.http_errors.append(message.text)
        else:
            self.errors.append(f"console: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.server.url + "/"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def open(self, app: str) -> Page:
        self.page.goto(f"{self.server.url}/_nflow/studio#app={app}")
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")
        expect(self.page.locator("body")).to_have_attribute("data-app", app)
        return self.page

    def node(self, node_id: str) -> Any:
        return self.page.locator(f'[data-node-id="{node_id}"]')

    def panel(self, name: str) -> None:
        self.page.locator(f'.side-tabs button[data-panel="{name}"]').click()

    def clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert self.foreign == []


# Waits are generous because CI machines run several suites at once; every wait still ends.
expect.set_options(timeout=15_000)


@pytest.fixture
def studio(page: Page, server: StudioServer) -> Iterator[Studio]:
    page.set_default_timeout(20_000)
    watched = Studio(page, server)
    yield watched
    watched.clean()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """The server the editing and debugging tests share: each test works on its own app."""
    from .apps import demo

    yield from serve(
        tmp_path_factory,
        {
            "demo": demo("/demo/:who"),
            "edit_me": demo("/edit/:who"),
            "undo_me": demo("/undo/:who"),
            "conflict_me": demo("/conflict/:who"),
            "release_me": demo("/release/:who"),
            "wizard": COMPAT / "home_pepe11_multistep_form_wizard.json",
        },
    )
