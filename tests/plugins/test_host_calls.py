"""Every host call of a run passes one interceptor, in order: enough to record and replay a run."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from plugin_support import LocalServer, PluginRuntime, json_reply

from nflow.jsapi import HostError, RunContext

REDIS = os.environ.get("NFLOW_TEST_REDIS", "127.0.0.1:6379")


class Recorder:
    """Records each call: name, arguments, and the result or the error the script saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], str, Any]] = []

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        try:
            result = call()
        except HostError as exc:
            self.calls.append((name, args, "error", str(exc)))
            raise
        self.calls.append((name, args, "ok", result))
        return result


class Replayer:
    """Answers each call from a record, in order; only the response writers (``c.*``) run."""

    def __init__(self, calls: list[tuple[str, tuple[Any, ...], str, Any]]) -> None:
        self.calls = list(calls)

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        recorded_name, recorded_args, outcome, value = self.calls.pop(0)
        assert (recorded_name, recorded_args) == (name, args)
        if name.startswith("c."):
            return call()
        if outcome == "error":
            raise HostError(value)
        return value


FLOW = """function main(){
  var id = uuid();
  var t = time_now_unix_nano();
  set_env("color", "blue");
  var env = get_env("color");
  set_session("s", "n", 7);
  var seen = get_session("s", "n");
  var page = http_get("%(url)s/x");
  var rows = db_query("one", []);
  var saved = redis_set("k", "v", 30);
  var missing;
  try { db_query("nope", []) } catch (e) { missing = e.message }
  var user = validate_user("nobody", "pw");
  var token = validate_token("no-such-token");
  var ua = header["User-Agent"];
  c.JSON(200, {id: id, t: String(t), env: env, seen: seen, body: page.body,
               one: rows[0].one, saved: saved.val(), missing: missing, user: user,
               token: token, ua: ua});
}"""


def test_an_interceptor_sees_every_host_call_in_order_and_can_replay_them(
    plugin_rt: Callable[..., PluginRuntime],
    local_server: Callable[..., LocalServer],
    redis_prefix: str,
) -> None:
    peer = local_server(lambda seen: json_reply({"path": seen.path}))
    prefix = f"{redis_prefix}calls-{secrets.token_hex(3)}:"
    rt = plugin_rt(
        f'[http]\nallowed_hosts = ["127.0.0.1"]\n[redis]\nhost = "{REDIS}"\nprefix = "{prefix}"\n'
    )
    rt.runtime.io.call(rt.runtime.store.put_query("one", "SELECT 1 AS one"))
    recorders: list[Recorder] = []

    def record(ctx: RunContext) -> Recorder:
        recorders.append(Recorder())
        return recorders[-1]

    rt.runtime.engine.host_interceptors = record
    out = rt.run(FLOW % {"url": peer.url})
    assert out["env"] == "blue" and out["seen"] == "7" and out["one"] == 1
    assert out["missing"] == "db_query: no query named 'nope' in the queries table"
    assert out["user"] is False and out["token"] is False and out["saved"] == "OK"
    [recorder] = recorders
    names = [name for name, *_ in recorder.calls]
    assert names == [
        "uuid",
        "time_now_unix_nano",
        "set_env",
        "get_env",
        "set_session",
        "get_session",
        "http_get",
        "db_query",
        "redis_set",
        "db_query",
        "validate_user",
        "validate_token",
        "request.value",
        "c.write_json",
    ]
    calls = {name: (args, outcome, value) for name, args, outcome, value in recorder.calls}
    assert calls["uuid"] == ((), "ok", out["id"])
    assert calls["get_env"] == (("color",), "ok", "blue")
    assert calls["http_get"][0] == (f"{peer.url}/x",)
    assert recorder.calls[9] == ("db_query", ("nope", []), "error", out["missing"])
    assert calls["request.value"] == (("header",), "ok", calls["request.value"][2])
    assert calls["c.write_json"][0][0] == 200
    assert len(peer.seen) == 1

    # The record reproduces the run: same answer, and nothing reaches the outside.
    replays = [Replayer(recorder.calls)]
    rt.runtime.engine.host_interceptors = lambda ctx: replays[0]
    response = rt.request("GET", "/t")
    assert response.json() == out
    assert replays[0].calls == []
    assert len(peer.seen) == 1


def test_no_interceptor_without_history(plugin_rt: Callable[..., PluginRuntime]) -> None:
    # The execution history's recording is the only interceptor a run gets by itself.
    rt = plugin_rt('[history]\nmode = "off"\n')
    seen: list[RunContext] = []
    assert rt.runtime.engine.host_interceptors is None

    def none_for_this_run(ctx: RunContext) -> None:
        seen.append(ctx)

    rt.runtime.engine.host_interceptors = none_for_this_run
    assert rt.run("function main(){ c.JSON(200, {id: uuid().length}) }") == {"id": 36}
    assert [ctx.host_interceptor for ctx in seen] == [None]


def test_every_host_function_goes_through_the_interceptor(
    plugin_rt: Callable[..., PluginRuntime],
) -> None:
    rt = plugin_rt()
    # The globals scripts can call (dotted names are the prelude's own: c.*, request.value).
    names = [name for name in rt.runtime.host.names() if "." not in name]
    assert {"http_get", "db_query", "redis_get", "get_session", "validate_user", "get_token"} <= {
        *names
    }
    assert {"get_env", "llm", "send_mail", "send_otp", "time_now_unix_nano", "uuid"} <= {*names}
    recorder = Recorder()
    rt.runtime.engine.host_interceptors = lambda ctx: recorder
    calls = "\n".join(f"  try {{ {name}() }} catch (e) {{}}" for name in names)
    rt.run(f"function main(){{\n{calls}\n  c.JSON(200, {{}})\n}}")
    assert [name for name, *_ in recorder.calls] == [*names, "c.write_json"]
