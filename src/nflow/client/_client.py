"""The client's calls, written once as request descriptions and sent by a sync or an async
httpx client."""

from __future__ import annotations

__all__ = ["ApiError", "AsyncClient", "Client", "Conflict"]

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

PREFIX = "/_nflow/api"
JSON = Any  # what the API answers: objects and arrays of them, as documented in openapi.json


class ApiError(Exception):
    """The API refused a call: ``status``, its ``message`` and the whole error object."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = dict(body)


class Conflict(ApiError):
    """A save from a version that is no longer current; ``current`` is the version now."""

    @property
    def current(self) -> str:
        return str(self.body.get("current", ""))


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False  # answer with the httpx response itself


def _name(value: str) -> str:
    return quote(value, safe="")


def _result(call: _Call, response: httpx.Response) -> Any:
    if call.raw:
        return response
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"code": response.status_code, "message": response.text}
        if not isinstance(body, dict):
            body = {"code": response.status_code, "message": str(body)}
        message = str(body.get("message", response.reason_phrase))
        kind = Conflict if response.status_code == 409 and "current" in body else ApiError
        raise kind(response.status_code, message, body)
    return response.json()


class _Calls:
    """Each API call as a :class:`_Call`; the subclasses send them."""

    @staticmethod
    def _me() -> _Call:
        return _Call("GET", "/me")

    @staticmethod
    def _login(username: str, password: str) -> _Call:
        return _Call("POST", "/login", body={"username": username, "password": password})

    @staticmethod
    def _logout() -> _Call:
        return _Call("POST", "/logout", body={})

    @staticmethod
    def _apps() -> _Call:
        return _Call("GET", "/apps")

    @staticmethod
    def _app(name: str) -> _Call:
        return _Call("GET", f"/apps/{_name(name)}")

    @staticmethod
    def _save_app(name: str, document: Mapping[str, Any], version: str) -> _Call:
        return _Call(
            "PUT",
            f"/apps/{_name(name)}",
            body={"document": dict(document)},
            headers={"If-Match": f'"{version}"'},
        )

    @staticmethod
    def _check_app(name: str, document: Mapping[str, Any] | None) -> _Call:
        body = {} if document is None else {"document": dict(document)}
        return _Call("POST", f"/apps/{_name(name)}/check", body=body)

    @staticmethod
    def _versions(name: str) -> _Call:
        return _Call("GET", f"/apps/{_name(name)}/versions")

    @staticmethod
    def _diff(name: str, old: str, new: str) -> _Call:
        return _Call("GET", f"/apps/{_name(name)}/diff", params={"from": old, "to": new})

    @staticmethod
    def _release_state(name: str) -> _Call:
        return _Call("GET", f"/apps/{_name(name)}/release")

    @staticmethod
    def _release(name: str, weights: Mapping[str, int], note: str | None) -> _Call:
        body: dict[str, Any] = {"weights": dict(weights)}
        if note:
            body["note"] = note
        return _Call("POST", f"/apps/{_name(name)}/release", body=body)

    @staticmethod
    def _rollback(name: str, to: str | None) -> _Call:
        return _Call("POST", f"/apps/{_name(name)}/rollback", body={"to": to} if to else {})

    @staticmethod
    def _modules() -> _Call:
        return _Call("GET", "/modules")

    @staticmethod
    def _templates() -> _Call:
        return _Call("GET", "/templates")

    @staticmethod
    def _template(name: str) -> _Call:
        return _Call("GET", f"/templates/{_name(name)}")

    @staticmethod
    def _queries() -> _Call:
        return _Call("GET", "/queries")

    @staticmethod
    def _runs(**filters: Any) -> _Call:
        return _Call("GET", "/runs", params={k: v for k, v in filters.items() if v is not None})

    @staticmethod
    def _run(run_id: str) -> _Call:
        return _Call("GET", f"/runs/{_name(run_id)}")

    @staticmethod
    def _replay(run_id: str) -> _Call:
        return _Call("POST", f"/runs/{_name(run_id)}/replay", body={})

    @staticmethod
    def _rerun(run_id: str, from_step: int, live: bool) -> _Call:
        body = {"from_step": from_step, "live": live}
        return _Call("POST", f"/runs/{_name(run_id)}/rerun", body=body)

    @staticmethod
    def _debug(request: Mapping[str, Any]) -> _Call:
        return _Call("POST", "/debug/sessions", body=dict(request))

    @staticmethod
    def _debug_session(session_id: str, action: str | None) -> _Call:
        path = f"/debug/sessions/{_name(session_id)}"
        if action is None:
            return _Call("GET", path)
        return _Call("POST", f"{path}/{action}", body={})


def _build(base: httpx.Client | httpx.AsyncClient, call: _Call) -> httpx.Request:
    headers = dict(call.headers)
    content = None
    if call.method != "GET":
        content = json.dumps(call.body if call.body is not None else {}).encode()
        headers["Content-Type"] = "application/json"
    return base.build_request(
        call.method, PREFIX + call.path, params=call.params, content=content, headers=headers
    )


def _options(
    token: str | None, client_name: str, headers: Mapping[str, str] | None
) -> dict[str, str]:
    out = {"X-Nflow-Client": client_name, **(headers or {})}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


class Client(_Calls):
    """The management API of the nflow server at ``base_url`` (``http://host:port``).

    ``token``: the server's ``api.token``, if it has one; or :meth:`login` with a studio
    user. The login cookie is kept for the client's life.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        client_name: str = "nflow.client",
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers=_options(token, client_name, headers),
            transport=transport,
        )

    def _send(self, call: _Call) -> Any:
        return _result(call, self.http.send(_build(self.http, call)))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # who -------------------------------------------------------------------------------
    def me(self) -> JSON:
        """``{"user": name or None, "auth": "loopback" | "token" | "login"}``."""
        return self._send(self._me())

    def login(self, username: str, password: str) -> JSON:
        return self._send(self._login(username, password))

    def logout(self) -> JSON:
        return self._send(self._logout())

    # apps ------------------------------------------------------------------------------
    def apps(self) -> list[JSON]:
        return list(self._send(self._apps()))

    def app(self, name: str) -> JSON:
        """``{"name", "version", "source", "document", "fixes"}``."""
        return self._send(self._app(name))

    def save_app(self, name: str, document: Mapping[str, Any], *, version: str) -> JSON:
        """Save ``document`` if the app is still at ``version``; :class:`Conflict` if not."""
        return self._send(self._save_app(name, document, version))

    def check_app(self, name: str, document: Mapping[str, Any] | None = None) -> list[JSON]:
        return list(self._send(self._check_app(name, document))["findings"])

    # versions and releases --------------------------------------------------------------
    def versions(self, name: str) -> list[JSON]:
        return list(self._send(self._versions(name)))

    def diff(self, name: str, old: str, new: str) -> list[JSON]:
        return list(self._send(self._diff(name, old, new))["changes"])

    def release_state(self, name: str) -> JSON:
        return self._send(self._release_state(name))

    def release(self, name: str, weights: Mapping[str, int], *, note: str | None = None) -> JSON:
        return self._send(self._release(name, weights, note))

    def rollback(self, name: str, *, to: str | None = None) -> JSON:
        return self._send(self._rollback(name, to))

    # catalog ---------------------------------------------------------------------------
    def modules(self) -> list[JSON]:
        return list(self._send(self._modules()))

    def templates(self) -> list[JSON]:
        return list(self._send(self._templates()))

    def template(self, name: str) -> JSON:
        return self._send(self._template(name))

    def queries(self) -> list[JSON]:
        return list(self._send(self._queries()))

    # runs ------------------------------------------------------------------------------
    def runs(
        self,
        *,
        app: str | None = None,
        status: str | None = None,
        journey: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        version: str | None = None,
    ) -> list[JSON]:
        call = self._runs(
            app=app, status=status, journey=journey, since=since, limit=limit, version=version
        )
        return list(self._send(call))

    def run(self, run_id: str) -> JSON:
        return self._send(self._run(run_id))

    def replay(self, run_id: str) -> JSON:
        """``{"identical": bool, "divergence": None | {...}, ...}``."""
        return self._send(self._replay(run_id))

    def rerun(self, run_id: str, from_step: int, *, live: bool = False) -> JSON:
        return self._send(self._rerun(run_id, from_step, live))

    # debug sessions --------------------------------------------------------------------
    def debug(self, request: Mapping[str, Any]) -> JSON:
        """Start a debug session: ``{"path", "method"?, "query"?, "headers"?, "body"?,
        "breakpoints"?: [{"node", "condition"?}]}``."""
        return self._send(self._debug(request))

    def debug_session(self, session_id: str) -> JSON:
        return self._send(self._debug_session(session_id, None))

    def step(self, session_id: str) -> JSON:
        return self._send(self._debug_session(session_id, "step"))

    def resume(self, session_id: str) -> JSON:
        """Continue to the next breakpoint or the end."""
        return self._send(self._debug_session(session_id, "continue"))

    def abort(self, session_id: str) -> JSON:
        return self._send(self._debug_session(session_id, "abort"))


class AsyncClient(_Calls):
    """:class:`Client`'s calls, awaited."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        client_name: str = "nflow.client",
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers=_options(token, client_name, headers),
            transport=transport,
        )

    async def _send(self, call: _Call) -> Any:
        return _result(call, await self.http.send(_build(self.http, call)))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def me(self) -> JSON:
        return await self._send(self._me())

    async def login(self, username: str, password: str) -> JSON:
        return await self._send(self._login(username, password))

    async def logout(self) -> JSON:
        return await self._send(self._logout())

    async def apps(self) -> list[JSON]:
        return list(await self._send(self._apps()))

    async def app(self, name: str) -> JSON:
        return await self._send(self._app(name))

    async def save_app(self, name: str, document: Mapping[str, Any], *, version: str) -> JSON:
        return await self._send(self._save_app(name, document, version))

    async def check_app(self, name: str, document: Mapping[str, Any] | None = None) -> list[JSON]:
        return list((await self._send(self._check_app(name, document)))["findings"])

    async def versions(self, name: str) -> list[JSON]:
        return list(await self._send(self._versions(name)))

    async def diff(self, name: str, old: str, new: str) -> list[JSON]:
        return list((await self._send(self._diff(name, old, new)))["changes"])

    async def release_state(self, name: str) -> JSON:
        return await self._send(self._release_state(name))

    async def release(
        self, name: str, weights: Mapping[str, int], *, note: str | None = None
    ) -> JSON:
        return await self._send(self._release(name, weights, note))

    async def rollback(self, name: str, *, to: str | None = None) -> JSON:
        return await self._send(self._rollback(name, to))

    async def modules(self) -> list[JSON]:
        return list(await self._send(self._modules()))

    async def templates(self) -> list[JSON]:
        return list(await self._send(self._templates()))

    async def template(self, name: str) -> JSON:
        return await self._send(self._template(name))

    async def queries(self) -> list[JSON]:
        return list(await self._send(self._queries()))

    async def runs(
        self,
        *,
        app: str | None = None,
        status: str | None = None,
        journey: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        version: str | None = None,
    ) -> list[JSON]:
        call = self._runs(
            app=app, status=status, journey=journey, since=since, limit=limit, version=version
        )
        return list(await self._send(call))

    async def run(self, run_id: str) -> JSON:
        return await self._send(self._run(run_id))

    async def replay(self, run_id: str) -> JSON:
        return await self._send(self._replay(run_id))

    async def rerun(self, run_id: str, from_step: int, *, live: bool = False) -> JSON:
        return await self._send(self._rerun(run_id, from_step, live))

    async def debug(self, request: Mapping[str, Any]) -> JSON:
        return await self._send(self._debug(request))

    async def debug_session(self, session_id: str) -> JSON:
        return await self._send(self._debug_session(session_id, None))

    async def step(self, session_id: str) -> JSON:
        return await self._send(self._debug_session(session_id, "step"))

    async def resume(self, session_id: str) -> JSON:
        return await self._send(self._debug_session(session_id, "continue"))

    async def abort(self, session_id: str) -> JSON:
        return await self._send(self._debug_session(session_id, "abort"))
