"""Host functions of the core API: response writing, request helpers, time, ids, sessions."""

from __future__ import annotations

import time
import uuid
from typing import Any

from nflow._http import ResponseTooLarge
from nflow.golang.json import dumps as go_json
from nflow.jsapi._context import HostError, RunContext, security_event
from nflow.jsapi._host import HostTable
from nflow.jsapi._vm import REQUEST_VALUE

core = HostTable()

_JSON = "application/json"
_MAX_HEADER = 8192


def _status(code: object) -> int:
    if isinstance(code, bool) or not isinstance(code, int | float) or code != code:
        raise HostError(f"invalid HTTP status {code!r}: expected a number")
    if not 100 <= code <= 999:
        raise HostError(f"invalid HTTP status {code}: expected 100-999")
    status = int(code)
    if not 100 <= status <= 999:
        raise HostError(f"invalid HTTP status {status}: expected 100-999")
    return status


def _write(ctx: RunContext, status: int, content_type: str, body: bytes) -> None:
    if ctx.isolated:
        return  # a background fork has no client to answer
    try:
        ctx.writer.write(status, content_type, body)
    except ResponseTooLarge as exc:
        raise HostError(str(exc)) from None


@core.function("c.write_json")
def write_json(ctx: RunContext, code: object, data: object, indent: str = "") -> None:
    status = _status(code)
    if not indent and "pretty" in ctx.request.query:
        indent = "  "  # Echo's ?pretty
    try:
        body = go_json(data, indent=indent or None)
    except (ValueError, TypeError) as exc:
        raise HostError(str(exc)) from None
    _write(ctx, status, _JSON, body)


@core.function("c.write_jsonp")
def write_jsonp(ctx: RunContext, code: object, callback: str, data: object) -> None:
    status = _status(code)
    try:
        body = go_json(data).rstrip(b"\n")
    except (ValueError, TypeError) as exc:
        raise HostError(str(exc)) from None
    _write(
        ctx, status, "application/javascript; charset=UTF-8", f"{callback}(".encode() + body + b");"
    )


@core.function("c.write")
def write(ctx: RunContext, code: object, content_type: str, body: object) -> None:
    status = _status(code)
    if isinstance(body, str):
        data = body.encode("utf-8")
    elif isinstance(body, bytes | bytearray):
        data = bytes(body)
    else:
        raise HostError("response body must be a string or bytes")
    _write(ctx, status, content_type, data)


@core.function("c.redirect")
def redirect(ctx: RunContext, code: object, url: str) -> None:
    status = _status(code)
    if not 300 <= status <= 308:
        raise HostError("invalid redirect status code")
    _check_header_value(url)
    if ctx.isolated:
        return
    if not ctx.writer.committed:
        ctx.writer.set_header("Location", url)
    _write(ctx, status, "", b"")


@core.function("c.error")
def error(ctx: RunContext, message: str) -> None:
    _write(ctx, 500, _JSON, go_json({"message": message}))


@core.function("c.get_header")
def get_header(ctx: RunContext, name: str) -> str:
    return ctx.request.header(name)


def _check_header_value(value: str) -> None:
    if "\r" in value or "\n" in value or len(value) > _MAX_HEADER:
        raise HostError("header values must be one line of at most 8 KiB")


@core.function("c.set_header")
def set_header(ctx: RunContext, name: str, value: str) -> None:
    if not name or not all(33 <= ord(ch) < 127 and ch != ":" for ch in name):
        raise HostError(f"invalid header name {name!r}")
    _check_header_value(value)
    if not ctx.isolated:
        ctx.writer.set_header(name, value)


@core.function("c.set_cookie")
def set_cookie(ctx: RunContext, cookie: object) -> None:
    if not isinstance(cookie, dict):
        raise HostError("SetCookie expects an object like {name, value, path, maxAge}")
    fields = {str(k).lower(): v for k, v in cookie.items()}
    name = str(fields.get("name", ""))
    value = str(fields.get("value", ""))
    if not name or any(ch in name for ch in "=;, \t\r\n"):
        raise HostError(f"invalid cookie name {name!r}")
    _check_header_value(value)
    parts = [f"{name}={value}"]
    path = fields.get("path")
    if path:
        parts.append(f"Path={path}")
    domain = fields.get("domain")
    if domain:
        parts.append(f"Domain={domain}")
    max_age = fields.get("maxage")
    if isinstance(max_age, int | float) and not isinstance(max_age, bool) and max_age:
        parts.append(f"Max-Age={int(max_age)}" if max_age > 0 else "Max-Age=0")
    if fields.get("secure"):
        parts.append("Secure")
    if fields.get("httponly"):
        parts.append("HttpOnly")
    same_site = fields.get("samesite")
    if isinstance(same_site, str) and same_site:
        parts.append(f"SameSite={same_site}")
    header = "; ".join(parts)
    _check_header_value(header)
    if not ctx.isolated:
        ctx.cookies_out.append(header)


# request values ---------------------------------------------------------------------------
@core.function(REQUEST_VALUE)
def request_value(ctx: RunContext, name: str) -> object:
    request = ctx.request
    if name == "header":
        return request.headers
    if name == "form":
        return request.form
    if name == "post_data":
        return post_data(ctx)
    if name in ("vars", "path_vars"):
        return dict(ctx.vars)
    if name == "nflow_endpoint":
        return ctx.endpoint
    if name == "wid":
        return ctx.wid
    if name == "env":
        return dict(ctx.services.env)
    if name == "url_base":
        return ctx.services.config.url.url_base
    if name == "__query":
        return request.query
    if name == "__cookies":
        return request.cookies
    if name == "__request":
        return {
            "method": request.method,
            "user_agent": request.header("user-agent"),
            "host": request.host,
            "remote_addr": request.client,
            "uri": request.uri,
            "referer": request.header("referer"),
            "content_length": len(request.body),
            "query_string": request.query_string,
            "path": request.path,
            "real_ip": request.real_ip,
            "scheme": request.scheme,
        }
    return None


def post_data(ctx: RunContext) -> dict[str, object]:
    """Echo's DefaultBinder into a map: path param, query (GET/DELETE/HEAD), then the body."""
    request = ctx.request
    out: dict[str, object] = {"*": request.path.lstrip("/")}
    if request.method in ("GET", "DELETE", "HEAD"):
        for key, values in request.query.items():
            if values:
                out[key] = values[0]
    body = request.json()
    if isinstance(body, dict):
        out.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for key, values in request.form.items():
            if values:
                out[key] = values[0]
    return out


@core.function("time_now_unix_nano")
def time_now_unix_nano(ctx: RunContext) -> int:
    return time.time_ns()


@core.function("uuid")
def new_uuid(ctx: RunContext) -> str:
    # The original bound one uuid at start-up and returned it forever; this one is random.
    return str(uuid.uuid4())


@core.function("sleep")
def sleep(ctx: RunContext, ms: object) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
        raise HostError("sleep(ms) expects a non-negative number of milliseconds")
    durable = ctx.durable
    if durable is not None and ms > durable.park_sleep_ms:
        # A durable run parks instead: no thread is held, any instance resumes it.
        durable.sleep(int(ms))
        return
    limit_ms = ctx.limits.sleep_max_ms
    if ms > limit_ms:
        raise HostError(f"sleep({ms}) is longer than limits.sleep_max_ms ({limit_ms} ms)")
    seconds = ms / 1000.0
    if seconds >= ctx.remaining():
        raise HostError(f"sleep({ms}) would pass the run's time limit")
    time.sleep(seconds)


@core.function("wkill")
def wkill(ctx: RunContext, wid: str) -> bool:
    return bool(ctx.services.processes.kill(str(wid)))


@core.function("get_env")
def get_env(ctx: RunContext, key: str) -> str:
    # Scripts see the [env] table of the config, never the server's process environment.
    value = ctx.services.env.get(str(key))
    return "" if value is None else str(value)


@core.function("set_env")
def set_env(ctx: RunContext, key: str, value: object) -> None:
    ctx.services.env[str(key)] = str(value)


# sessions ---------------------------------------------------------------------------------
def _session_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return "<complex-value>"


@core.function("get_session")
def get_session(ctx: RunContext, name: str, key: str) -> str:
    return _session_string(ctx.sessions.get(str(name)).get(str(key)))


@core.function("set_session")
def set_session(ctx: RunContext, name: str, key: str, value: object) -> None:
    ctx.sessions.get(str(name))[str(key)] = value
    ctx.sessions.mark(str(name))


@core.function("open_session")
def open_session(ctx: RunContext, name: str) -> dict[str, Any]:
    return dict(ctx.sessions.get(str(name)))


@core.function("save_session")
def save_session(ctx: RunContext, name: str, values: object) -> None:
    if not isinstance(values, dict):
        raise HostError("save_session(name, values) expects an object")
    ctx.sessions.get(str(name)).update({str(k): v for k, v in values.items()})
    ctx.sessions.mark(str(name))


@core.function("delete_session")
def delete_session(ctx: RunContext, name: str) -> None:
    ctx.sessions.clear(str(name))


@core.function("open_session_form")
def open_session_form(ctx: RunContext) -> dict[str, Any]:
    return dict(ctx.sessions.get("nflow_form"))


@core.function("delete_session_form")
def delete_session_form(ctx: RunContext) -> None:
    ctx.sessions.clear("nflow_form")


@core.function("set_profile")
def set_profile(ctx: RunContext, profile: object) -> None:
    if not isinstance(profile, dict):
        raise HostError("set_profile expects an object")
    import orjson

    # The original stored map[string]string: values are coerced to strings.
    flat = {str(k): _session_string(v) for k, v in profile.items()}
    sessions = ctx.sessions
    if sessions.profile_sid:
        sessions.revoked.append(sessions.profile_sid)  # a new login ends the previous one
    sessions.profile_sid = uuid.uuid4().hex
    sessions.get("auth-session")["profile"] = orjson.dumps(flat).decode()
    sessions.mark("auth-session")


def _profile(ctx: RunContext) -> dict[str, Any]:
    import orjson

    raw = ctx.sessions.get("auth-session").get("profile")
    if isinstance(raw, str) and raw:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return raw if isinstance(raw, dict) else {}


@core.function("get_profile")
def get_profile(ctx: RunContext) -> dict[str, Any]:
    return _profile(ctx)


@core.function("exist_profile")
def exist_profile(ctx: RunContext) -> bool:
    return bool(_profile(ctx))


@core.function("delete_profile")
def delete_profile(ctx: RunContext) -> None:
    sessions = ctx.sessions
    sessions.get("auth-session").pop("profile", None)
    if sessions.profile_sid:
        sessions.revoked.append(sessions.profile_sid)
        sessions.profile_sid = ""
    sessions.mark("auth-session")


@core.function("security.blocked")
def security_blocked(ctx: RunContext, what: object) -> None:
    security_event(ctx, f"blocked:{str(what)[:40]}", f"script tried {what}")
