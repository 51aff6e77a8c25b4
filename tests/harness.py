"""A real Runtime on a real database, driven request by request from synchronous tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from nflow import Request, Response, Runtime
from nflow.config import Config, load_config
from nflow.server import dispatch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COMPAT = SHARED / "compat" / "playbooks"
SUPPORT = COMPAT / "support"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def app_doc(tab: str = "Home", **nodes: dict[str, Any]) -> dict[str, Any]:
    return {"drawflow": {tab: {"data": nodes}}}


def starter(
    node_id: str, pattern: str, first: str | None, *, method: str = "ANY", **data: Any
) -> dict[str, Any]:
    outputs = {"output_1": {"connections": [{"node": first, "output": "input_1"}] if first else []}}
    return {
        "id": node_id,
        "data": {
            "type": "starter",
            "method": method,
            "urlpattern": pattern,
            "name_box": "",
            **data,
        },
        "inputs": {},
        "outputs": outputs,
    }


def js(
    node_id: str, code: str | None = None, *, script: str | None = None, **outputs: str | None
) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "js", "name_box": node_id}
    if code is not None:
        data["code"] = code
    if script is not None:
        data["script"] = script
    return {
        "id": node_id,
        "data": data,
        "inputs": {},
        "outputs": {
            name: {"connections": [{"node": target, "output": "input_1"}] if target else []}
            for name, target in outputs.items()
        },
    }


def node(node_id: str, type_: str, **outputs: str | None) -> dict[str, Any]:
    return {
        "id": node_id,
        "data": {"type": type_},
        "outputs": {
            name: {"connections": [{"node": target, "output": "input_1"}] if target else []}
            for name, target in outputs.items()
        },
    }


class Harness:
    """Opens a Runtime on ``db_url`` with the given apps; ``request`` goes through dispatch."""

    def __init__(
        self,
        db_url: str,
        tmp_path: Path,
        *,
        apps: Iterable[Path | dict[str, Any]] = (),
        support: Sequence[Path] = (),
        config: Config | None = None,
        toml: str | None = None,
        access_log: bool = False,
        example: bool = False,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp_path = tmp_path
        files: list[Path] = []
        for i, app in enumerate(apps):
            if isinstance(app, dict):
                path = tmp_path / f"app{i}.json"
                path.write_bytes(orjson.dumps(app))
                files.append(path)
            else:
                files.append(app)
        if not access_log and config is None and "[logging]" not in (toml or ""):
            # Access lines would go to the test run's stderr; keep them out of test output.
            toml = (toml or "") + "\n[logging]\naccess = false\n"
        if toml is not None:
            cfg_path = tmp_path / "config.toml"
            cfg_path.write_text(toml)
            config = load_config(cfg_path, environ={})
        self.runtime = Runtime(
            config or load_config(None, environ={}),
            app_files=files,
            database_url=db_url,
            example_if_empty=example,
        )
        self.loop.run_until_complete(self._open(support))

    async def _open(self, support: Sequence[Path]) -> None:
        await self.runtime.open()
        if support:
            for path in support:
                await self.runtime.store_call(self.runtime.store.import_file(path))
            await self.runtime.reload()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def serve(self, doc: dict[str, Any], name: str) -> None:
        """Serve ``doc`` as the only app file (app ``name``), as a hot reload does."""
        path = self.tmp_path / f"{name}.json"
        path.write_bytes(orjson.dumps(doc))
        self.runtime.app_files = [path]
        self.run(self.runtime.reload())

    def store(self, method: str, *args: Any, **kwargs: Any) -> Any:
        store = self.runtime.store
        return self.run(self.runtime.store_call(getattr(store, method)(*args, **kwargs)))

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | str = b"",
        form: dict[str, str] | None = None,
        json: Any = None,
        client: str = "127.0.0.1:50000",
    ) -> Response:
        hdrs = list(headers)
        if form is not None:
            from urllib.parse import urlencode

            body = urlencode(form)
            hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif json is not None:
            body = orjson.dumps(json)
            hdrs.append(("Content-Type", "application/json"))
        data = body.encode() if isinstance(body, str) else body
        request = Request.from_url(method, url, headers=hdrs, body=data, client=client)
        return self.run(dispatch(self.runtime, request))

    def close(self) -> None:
        try:
            self.run(self.runtime.close())
        finally:
            self.loop.close()


class Browser:
    """A client with a cookie jar that fills and submits the forms pages send, like a user."""

    def __init__(self, harness: Harness, *, client: str = "127.0.0.1:50000") -> None:
        self.h = harness
        self.client = client
        self.cookies: dict[str, str] = {}
        self.last: Response | None = None
        self.url = "/"

    def _send(self, method: str, url: str, **kwargs: Any) -> Response:
        headers = list(kwargs.pop("headers", ()))
        if self.cookies:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())))
        response = self.h.request(method, url, headers=headers, client=self.client, **kwargs)
        for name, value in response.headers:
            if name.lower() != "set-cookie":
                continue
            pair, _, attrs = value.partition(";")
            key, _, val = pair.partition("=")
            if "max-age=0" in attrs.lower().replace(" ", ""):
                self.cookies.pop(key.strip(), None)
            else:
                self.cookies[key.strip()] = val.strip()
        self.last = response
        self.url = url
        return response

    def get(self, url: str, **kwargs: Any) -> Response:
        return self._send("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self._send("POST", url, **kwargs)

    def submit(
        self, values: dict[str, str], *, page: Response | None = None, url: str = ""
    ) -> Response:
        """Post the first form of ``page`` (default: the last response) with its hidden fields."""
        form = parse_form((page or self.last or Response()).text)
        data = {**form.hidden, **values}
        # A form without an action posts back to the page's own URL, as browsers do.
        return self.post(form.action or url or self.url, form=data)


class Form:
    def __init__(self) -> None:
        self.action = ""
        self.method = ""
        self.hidden: dict[str, str] = {}
        self.fields: list[str] = []


def parse_form(html: str) -> Form:
    from html.parser import HTMLParser

    form = Form()

    class _Parser(HTMLParser):
        seen = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = {k: v or "" for k, v in attrs}
            if tag == "form" and not self.seen:
                self.seen = True
                form.action = a.get("action", "")
                form.method = a.get("method", "")
            elif tag in ("input", "select", "textarea") and a.get("name"):
                if a.get("type") == "hidden":
                    form.hidden[a["name"]] = a.get("value", "")
                else:
                    form.fields.append(a["name"])

    _Parser().feed(html)
    return form
