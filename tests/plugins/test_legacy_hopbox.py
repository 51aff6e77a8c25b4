"""The 2023 hopbox SCIM login steps, verbatim, against a local fake SCIM server and real Redis.

The steps call ``http_post_with_header`` with Go-style array headers, read ``env[...]``,
store the login in a Redis hash with ``redis_hset``/``redis_expire`` and end with
``c.Redirect(301, ...)``. Their form modules are files the old runtime read from disk, so the
form step is replaced by a plain POST of the same fields.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import redis as redis_lib
from plugin_support import LocalServer, PluginRuntime, Reply, Seen, json_reply

from harness import COMPAT, UUID, app_doc, js, starter
from nflow.history import HistoryReader, RunSummary
from nflow.replay import replay

LEGACY = COMPAT / "legacy" / "legacy_hopbox_scim_login_2023-03-11.json"
CHECK_STEP = "fb378cd4-8f1c-41c5-9d56-01928104fb9a"  # SCIM token + user search
STORE_STEP = "d2dbad8a-3eb1-4a40-893f-36fcdbfc1fa4"  # redis_hset x3, redis_expire, redirect


def legacy_code(node_id: str) -> str:
    doc = orjson.loads(LEGACY.read_bytes())
    for tab in doc["drawflow"].values():
        if node_id in tab["data"]:
            code = tab["data"][node_id]["data"]["code"]
            assert isinstance(code, str)
            return code
    raise KeyError(node_id)


def scim_app(seen: Seen) -> Reply:
    if seen.path == "/app/token":
        if seen.json() == {"key": "app1", "secret": "password1"}:
            return json_reply({"token": "tok-1"})
        return json_reply({"error": "bad app"}, 401)
    if seen.path == "/v2/Users/.search":
        if seen.headers.get("authorization") != "Bearer tok-1":
            return json_reply({"error": "no token"}, 401)
        wanted = 'userName eq "ana" and password eq "s3cret"'
        if seen.json().get("filter") == wanted:
            return json_reply({"totalResults": 1, "Resources": [{"id": "user-42"}]})
        return json_reply({"totalResults": 0, "Resources": []})
    return json_reply({"error": "not found"}, 404)


def login_app() -> dict[str, Any]:
    return app_doc(
        s=starter("s", "/login_flow", "check", method="POST"),
        check=js("check", legacy_code(CHECK_STEP), output_1="store", output_2="denied"),
        store=js("store", legacy_code(STORE_STEP)),
        denied=js("denied", 'function main(){ c.JSON(401, {error: "denied"}) }'),
    )


def test_hopbox_login_against_fake_scim(
    plugin_rt: Callable[..., PluginRuntime],
    local_server: Callable[..., LocalServer],
    redis_prefix: str,
) -> None:
    scim = local_server(scim_app)
    redis_host = os.environ.get("NFLOW_TEST_REDIS", "127.0.0.1:6379")
    prefix = f"{redis_prefix}hopbox-{secrets.token_hex(3)}:"
    rt = plugin_rt(
        f'[env]\nscim_base = "{scim.url}"\nopenid_base = "https://openid.example"\n'
        f'[redis]\nhost = "{redis_host}"\nprefix = "{prefix}"\n'
        '[http]\nallowed_hosts = ["127.0.0.1"]\n'  # the fake SCIM server is on loopback
        '[history]\nmode = "all"\nflush_interval_ms = 20\n'
    )
    rt.serve_doc(login_app())

    r = rt.request("POST", "/login_flow", form={"username": "ana", "password": "s3cret"})
    assert r.status == 301, r.text
    location = r.header("location")
    assert location.startswith("https://openid.example/login/key?key=")
    key = location.rsplit("=", 1)[1]
    assert UUID.match(key)
    assert [s.path for s in scim.seen] == ["/app/token", "/v2/Users/.search"]
    assert scim.seen[1].headers["content-type"] == "application/json"

    host, _, port = redis_host.partition(":")
    direct = redis_lib.Redis(host=host, port=int(port or 6379), decode_responses=True)
    try:
        assert direct.hgetall(f"{prefix}{key}") == {
            "user_id": "user-42",
            "username": "ana",
            "password": "s3cret",
        }
        assert 0 < direct.ttl(f"{prefix}{key}") <= 30
    finally:
        direct.close()

    r = rt.request("POST", "/login_flow", form={"username": "ana", "password": "wrong"})
    assert (r.status, r.json()) == (401, {"error": "denied"})

    # Both runs replay from the record with the SCIM server stopped: no HTTP call, no Redis
    # write, the same redirect (with the same random key) and the same denial.
    scim.close()
    history = rt.runtime.history
    assert history is not None and history.flush(20.0)

    async def recorded() -> list[RunSummary]:
        return await HistoryReader(rt.runtime.store).list_runs()

    runs = rt.loop.run_until_complete(rt.runtime.store_call(recorded()))
    assert sorted(r.response_status or 0 for r in runs) == [301, 401]
    for run in runs:
        result = replay(rt.runtime.config, run.id, database_url=rt.runtime.database_url)
        assert result is not None and result.identical, result.divergence
    assert len(scim.seen) == 4
