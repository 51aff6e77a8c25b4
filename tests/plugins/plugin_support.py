"""Local peers and a plugin-enabled Runtime for the plugin tests (fixtures are in conftest.py).

Every Runtime carries the plugin tables; requests go through ``nflow.server.dispatch`` as in
production.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from harness import app_doc, js, starter
from nflow import Request, Response, Runtime
from nflow.config import Config, load_config
from nflow.jsapi import HostTable
from nflow.plugins import PLUGIN_TABLES, close_plugins
from nflow.server import dispatch

# Every request of these tests ends within this bound (the runtime's own limit).
REQUEST_TIMEOUT = 10


class PluginRuntime:
    """Runtime(hosts=PLUGIN_TABLES) on SQLite (or ``database_url``); ``serve`` installs apps."""

    def __init__(
        self,
        tmp_path: Path,
        toml: str = "",
        *,
        database_url: str = "",
        hosts: Sequence[HostTable] = (),
    ) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.runtime = Runtime(
            self._config(toml),
            app_files=[],
            database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
            hosts=[*PLUGIN_TABLES, *hosts],
            session_secret="s" * 40,
        )
        self.loop.run_until_complete(self.runtime.open())
        self._apps = 0

    def _config(self, toml: str) -> Config:
        cfg = self.tmp_path / "plugin-config.toml"
        cfg.write_text(f"[limits]\nrequest_timeout_seconds = {REQUEST_TIMEOUT}\n{toml}")
        return load_config(cfg, environ={})

    def reconfigure(self, toml: str) -> None:
        """Serve with the config ``toml`` from now on, as a SIGHUP reload does."""
        self.runtime.apply_config(self._config(toml))

    def serve_doc(self, doc: dict[str, Any]) -> None:
        self._apps += 1
        path = self.tmp_path / f"plugin-app{self._apps}.json"
        path.write_bytes(orjson.dumps(doc))
        self.runtime.app_files = [path]
        self.loop.run_until_complete(self.runtime.reload())

    def serve(self, code: str, pattern: str = "/t") -> None:
        self.serve_doc(app_doc(s=starter("s", pattern, "a"), a=js("a", code)))

    def request(
        self,
        method: str,
        url: str,
        *,
        form: dict[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        hdrs = list(headers or [])
        body = b""
        if form is not None:
            from urllib.parse import urlencode

            body = urlencode(form).encode()
            hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        request = Request.from_url(method, url, headers=hdrs, body=body, client="127.0.0.1:5000")
        return self.loop.run_until_complete(dispatch(self.runtime, request))

    def run(self, code: str) -> Any:
        """Serve ``code`` at /t, GET it, and return the JSON it wrote (status must be 200)."""
        self.serve(code)
        response = self.request("GET", "/t")
        assert response.status == 200, response.text
        return response.json()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            if self.runtime.is_open:
                self.loop.run_until_complete(close_plugins(self.runtime.services.io))
            self.loop.run_until_complete(self.runtime.close())
        finally:
            self.loop.close()


# --------------------------------------------------------------------------------------------
# A local HTTP(S) peer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


Reply = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class LocalServer:
    """ThreadingHTTPServer on 127.0.0.1 answering with ``app(seen)``; records every request."""

    app: Callable[[Seen], Reply]
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                server.seen.append(seen)
                status, headers, payload = server.app(seen)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def json_reply(data: Any, status: int = 200) -> Reply:
    return status, [("Content-Type", "application/json")], orjson.dumps(data)


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate for 127.0.0.1 and localhost."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context
