"""The script API as playbooks use it: request globals, the c object, helpers, console."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import UUID, Harness, app_doc, js, starter

Call = Callable[..., Any]


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    # One app with a route per probe; each probe's code is given by the test.
    harness = Harness(
        db_url,
        tmp_path,
        apps=[],
        # Warn only: some probes (require, eval) are what the analyzer refuses at load.
        toml='[env]\nscim_base = "http://scim.local"\n[limits]\nsleep_max_ms = 200\n'
        "[security]\nblock_on_high_severity = false\n",
    )
    yield harness
    harness.close()


def serve(h: Harness, code: str, pattern: str = "/t") -> None:
    """Replace the served apps with one route running ``code``."""
    h.serve(app_doc(s=starter("s", pattern, "a"), a=js("a", code)), "probe")


def test_request_globals(h: Harness) -> None:
    serve(
        h,
        """function main(){
  c.JSON(200, {
    header: header["X-Custom-Thing"], ct: header["Content-Type"],
    form: form, post: post_data, wid: wid, endpoint: nflow_endpoint,
    q: c.QueryParam("a"), qs: c.QueryParams(), raw: c.QueryString(), missing: c.QueryParam("zz"),
    fv: c.FormValue("f"), param: c.Param("*"), names: c.ParamNames(),
    method: c.Request().method(), ua: c.Request().userAgent(), gh: c.GetHeader("x-custom-thing"),
  })
}""",
        pattern="/t/:id",
    )
    r = h.request(
        "POST",
        "/t/9?a=1&a=2&b=x",
        form={"f": "v"},
        headers=[("x-custom-thing", "yes"), ("User-Agent", "probe/1")],
    )
    body = r.json()
    assert body["header"] == ["yes"]
    assert body["ct"] == ["application/x-www-form-urlencoded"]
    assert body["form"] == {"a": ["1", "2"], "b": ["x"], "f": ["v"]}
    # Echo binds form bodies through FormParams, which include the query.
    assert body["post"] == {"*": "t/9", "a": "1", "b": "x", "f": "v"}
    assert body["wid"] == r.header("nflow-wid-1") and UUID.match(body["wid"])
    assert body["endpoint"] == "/t/9"
    assert (body["q"], body["qs"], body["raw"], body["missing"]) == (
        "1",
        {"a": ["1", "2"], "b": ["x"]},
        "a=1&a=2&b=x",
        "",
    )
    assert (body["fv"], body["param"], body["names"]) == ("v", "t/9", ["*"])
    assert (body["method"], body["ua"], body["gh"]) == ("POST", "probe/1", "yes")


def test_post_data_from_json_body_and_get_query(h: Harness) -> None:
    serve(h, "function main(){ c.JSON(200, post_data) }")
    assert h.request("POST", "/t", json={"n": 1.5, "o": {"k": [1]}}).json() == {
        "*": "t",
        "n": 1.5,
        "o": {"k": [1]},
    }
    assert h.request("GET", "/t?x=1&x=2").json() == {"*": "t", "x": "1"}
    # A body that says JSON but is not: post_data is just the path, the run goes on.
    r = h.request("POST", "/t", body=b"{not json", headers=[("Content-Type", "application/json")])
    assert (r.status, r.json()) == (200, {"*": "t"})


def test_response_writers(h: Harness) -> None:
    serve(h, "function main(){ c.SetHeader('X-Made-By', 'nflow'); c.Blob(201, 'text/csv', 'a,b') }")
    r = h.request("GET", "/t")
    assert (r.status, r.body, r.header("content-type"), r.header("x-made-by")) == (
        201,
        b"a,b",
        "text/csv",
        "nflow",
    )
    serve(h, "function main(){ c.NoContent(204) }")
    r = h.request("GET", "/t")
    assert (r.status, r.body) == (204, b"")
    serve(h, "function main(){ c.Redirect(302, '/elsewhere?x=1') }")
    r = h.request("GET", "/t")
    assert (r.status, r.header("location")) == (302, "/elsewhere?x=1")
    serve(h, "function main(){ c.JSONP(200, 'cb', {a: '<b>'}) }")
    assert h.request("GET", "/t").body == b'cb({"a":"\\u003cb\\u003e"});'
    serve(
        h,
        "function main(){ c.SetCookie({name: 'k', value: 'v', path: '/', maxAge: 60, httpOnly: true}); c.String(200, 'ok') }",
    )
    r = h.request("GET", "/t")
    assert ("set-cookie", "k=v; Path=/; Max-Age=60; HttpOnly") in r.headers


def test_invalid_calls_throw_catchable_errors(h: Harness) -> None:
    serve(
        h,
        """function main(){
  var errors = []
  var probes = [
    function(){ c.Redirect(200, '/x') },
    function(){ c.SetHeader('Bad\\nName', 'v') },
    function(){ c.SetHeader('X-Ok', 'line1\\r\\nInjected: yes') },
    function(){ c.JSON(200, {n: NaN}) },
    function(){ c.JSON('abc', {}) },
    function(){ c.File('/etc/passwd') },
    function(){ require('fs') },
    function(){ c.Cookie('absent') },
    function(){ find_element('a.b', {a: {}}) },
  ]
  for (var i = 0; i < probes.length; i++) {
    try { probes[i](); errors.push(null) } catch (e) { errors.push(e.message) }
  }
  c.JSON(200, errors)
}""",
    )
    errors = h.request("GET", "/t").json()
    assert errors[0] == "invalid redirect status code"
    assert "invalid header name" in errors[1]
    assert "one line" in errors[2]
    assert errors[3] == "json: unsupported value: NaN"
    assert "invalid HTTP status" in errors[4]
    assert "disabled" in errors[5]
    assert "not allowed" in errors[6]
    assert "not present" in errors[7]
    assert "no element" in errors[8]


def test_helpers(h: Harness) -> None:
    serve(
        h,
        """function main(){
  c.JSON(200, {
    u1: uuid(), u2: uuid(),
    b64: btoa('hola'), back: atob('aG9sYQ=='), bad: atob('%%%'),
    found: find_element('a.list.1.x', {a: {list: [{x: 1}, {x: 'two'}]}}),
    map: url_values_to_map(c.QueryParams()), nm: new_map(),
    clean: clean_json('```json\\n{"a":1}\\n```'),
    now: time_now_unix(), nano: time_now_unix_nano(),
    year: time_now_year(), month: time_now_month(), wd: time_now_weekday(),
    env: env.scim_base, genv: get_env('scim_base'), path: get_env('PATH'),
    sha: calcular_sha512_256('x'),
  })
}""",
    )
    body = h.request("GET", "/t?k=v").json()
    assert UUID.match(body["u1"]) and body["u1"] != body["u2"]
    assert (body["b64"], body["back"], body["bad"]) == (
        base64.b64encode(b"hola").decode(),
        "hola",
        "",
    )
    assert body["found"] == "two"
    assert (body["map"], body["nm"], body["clean"]) == ({"k": ["v"]}, {}, '{"a":1}')
    assert abs(body["now"] - time.time()) < 5
    assert abs(body["nano"] / 1e9 - time.time()) < 5
    assert body["year"] == time.localtime().tm_year and 1 <= body["month"] <= 12
    assert 0 <= body["wd"] <= 6
    assert body["env"] == body["genv"] == "http://scim.local"
    # The server's own environment is never visible to scripts.
    assert os.environ.get("PATH") and body["path"] == ""
    import hashlib

    assert body["sha"] == hashlib.new("sha512_256", b"x").hexdigest()


def test_sleep_is_bounded(h: Harness) -> None:
    serve(
        h,
        """function main(){
  var t = Date.now(); sleep(50); var slept = Date.now() - t
  var err = null
  try { sleep(10000) } catch (e) { err = e.message }
  c.JSON(200, {slept: slept, err: err})
}""",
    )
    body = h.request("GET", "/t").json()
    assert body["slept"] >= 45
    assert "limits.sleep_max_ms" in body["err"]


def test_console_goes_to_structured_log(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    serve(
        h,
        "function main(){ console.log('hello', {a: 1}); console.error('bad'); c.String(200, 'x') }",
    )
    caplog.set_level(logging.DEBUG, logger="nflow.js")
    r = h.request("GET", "/t")
    records = [rec for rec in caplog.records if rec.name == "nflow.js"]
    assert [rec.getMessage() for rec in records] == [
        'console.log: hello {"a":1}',
        "console.error: bad",
    ]
    assert records[1].levelno == logging.ERROR
    for rec in records:
        assert rec.__dict__["wid"] == r.header("nflow-wid-1")
        assert rec.__dict__["node"] == "a"


def test_wkill_stops_another_run_and_processes_are_listed(h: Harness) -> None:
    import threading

    from nflow._http import Request

    serve(
        h,
        """function main(){
  for (var i = 0; i < 100; i++) { sleep(20) }
  c.JSON(200, {finished: true})
}""",
    )
    result: dict[str, Any] = {}
    runtime = h.runtime

    def slow() -> None:
        result["response"] = runtime.handle_sync(Request("GET", "/t"))

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        procs = runtime.services.processes.list()
        if procs and procs[0].state == "run":
            break
        time.sleep(0.01)
    listed = runtime.services.processes.list()
    assert len(listed) == 1 and listed[0].state == "run" and listed[0].current == "a"
    assert runtime.services.processes.kill(listed[0].wid)
    thread.join(5)
    execution = result["response"]
    assert execution.response.status == 499
    assert "killed" in execution.response.json()["error"]
    assert runtime.services.processes.list() == []
