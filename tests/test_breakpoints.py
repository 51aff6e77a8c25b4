"""Breakpoints over the management API: a run paused at a node, inspected, stepped, continued,
aborted or timed out, while normal traffic to the same route never pauses."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Harness, app_doc, js, starter
from nflow.engine import Breakpoint, BreakpointError, Condition
from test_api import conforms

API = "/_nflow/api"
SESSIONS = f"{API}/debug/sessions"
CLIENT = [("X-Nflow-Client", "tests")]

FLOW = app_doc(
    s=starter("s", "/flow", "a", method="ANY"),
    a=js(
        "a", "function main(){ payload.x = Number(form.n || 1); return 'output_1' }", output_1="b"
    ),
    b=js(
        "b",
        "function main(){ console.log('at b with', payload.x); payload.x = payload.x + 1; "
        "return 'output_1' }",
        output_1="c",
    ),
    c=js("c", "function main(){ c.JSON(200, {x: payload.x}) }"),
)


def make(db_url: str, tmp_path: Path, extra: str = "") -> Harness:
    toml = "[api]\nenabled = true\n[debug]\nenabled = true\n" + extra
    return Harness(db_url, tmp_path, apps=[FLOW], toml=toml)


@pytest.fixture
def dbg(db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Harness]:
    # The run's log lines reach a session at the configured level; console.log is info.
    caplog.set_level(logging.INFO, logger="nflow")
    h = make(db_url, tmp_path)
    try:
        yield h
    finally:
        h.close()


def post(h: Harness, url: str, body: Any = None) -> Any:
    r = h.request("POST", url, headers=CLIENT, json=body if body is not None else {})
    return r


def start(h: Harness, **spec: Any) -> dict[str, Any]:
    r = post(h, SESSIONS, {"path": "/flow", **spec})
    assert r.status == 201, r.text
    state = r.json()
    conforms(state, SESSIONS, "post", 201)
    assert r.header("location") == f"{SESSIONS}/{state['id']}"
    return state


def test_pause_inspect_step_continue(dbg: Harness) -> None:
    vms = dbg.runtime.engine.vms
    state = start(dbg, query={"n": "5"}, breakpoints=[{"node": "b"}])
    sid = state["id"]
    assert state["state"] == "paused"
    assert state["paused_at"] == {"node": "b", "type": "js", "name": "b"}
    assert state["payload"]["x"] == 5
    assert [(s["node"], s["next"]) for s in state["steps"]] == [("a", "output_1")]
    assert state["response"] is None

    # Normal traffic to the same route goes through while the session is paused.
    r = dbg.request("GET", "/flow?n=1")
    assert (r.status, r.json()) == (200, {"x": 2})
    # The request's runtime and the paused run's.
    assert vms.counts() == {"idle": 1, "busy": 1}

    r = dbg.request("GET", f"{SESSIONS}/{sid}")
    assert r.status == 200 and r.json()["paused_at"]["node"] == "b"
    conforms(r.json(), f"{SESSIONS}/{{id}}")

    r = post(dbg, f"{SESSIONS}/{sid}/step")
    assert r.status == 200, r.text
    stepped = r.json()
    assert stepped["state"] == "paused" and stepped["paused_at"]["node"] == "c"
    assert stepped["payload"]["x"] == 6
    assert [s["node"] for s in stepped["steps"]] == ["a", "b"]
    assert any(
        line["message"] == "console.log: at b with 5" and line["node"] == "b"
        for line in stepped["logs"]
    ), stepped["logs"]

    r = post(dbg, f"{SESSIONS}/{sid}/continue")
    done = r.json()
    assert done["state"] == "finished" and done["paused_at"] is None
    assert done["response"]["status"] == 200 and '"x":6' in done["response"]["body"]
    assert [s["node"] for s in done["steps"]] == ["a", "b", "c"]
    # The session's thread closed its JS runtime when the run ended.
    assert vms.counts() == {"idle": 1, "busy": 0}

    # An ended run cannot go on.
    r = post(dbg, f"{SESSIONS}/{sid}/continue")
    assert r.status == 409 and "only a paused run can go on" in r.json()["message"]


def test_conditions_choose_when_to_pause(dbg: Harness) -> None:
    # x is 1 at b: a condition on x == 5 never holds, so the run goes through.
    state = start(dbg, breakpoints=[{"node": "b", "condition": {"key": "x", "equals": 5}}])
    assert state["state"] == "finished" and state["response"]["status"] == 200
    # A form post: the body is sent as given, with the headers given.
    state = start(
        dbg,
        method="POST",
        body="n=5",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        breakpoints=[{"node": "b", "condition": {"path": "$.x", "equals": 5}}],
    )
    assert state["state"] == "paused" and state["payload"]["x"] == 5
    assert post(dbg, f"{SESSIONS}/{state['id']}/continue").json()["state"] == "finished"
    state = start(
        dbg,
        query="n=5",
        breakpoints=[
            {"node": "b", "condition": {"path": "x", "gt": 4}},
            {"node": "c", "condition": {"key": "x", "in": [6, 7]}},
        ],
    )
    assert state["paused_at"]["node"] == "b"
    state = post(dbg, f"{SESSIONS}/{state['id']}/continue").json()
    assert state["paused_at"]["node"] == "c" and state["payload"]["x"] == 6
    post(dbg, f"{SESSIONS}/{state['id']}/continue")


def test_abort_ends_the_run_with_an_error(dbg: Harness) -> None:
    state = start(dbg, breakpoints=[{"node": "b"}])
    r = post(dbg, f"{SESSIONS}/{state['id']}/abort")
    aborted = r.json()
    assert aborted["state"] == "aborted"
    assert aborted["error"] == {"message": "the run was aborted by its debug session", "node": "b"}
    assert aborted["response"]["status"] >= 400
    assert [s["node"] for s in aborted["steps"]] == ["a"]
    r = post(dbg, f"{SESSIONS}/{state['id']}/abort")
    assert r.status == 409


def test_sessions_time_out(db_url: str, tmp_path: Path) -> None:
    h = make(db_url, tmp_path, "session_timeout_seconds = 0.5\n")
    try:
        state = start(h, breakpoints=[{"node": "b"}])
        assert state["state"] == "paused"
        deadline = time.monotonic() + 30
        # Expiry passes through "running" while the run is stopped: wait for the end.
        while state["state"] in ("paused", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
            state = h.request("GET", f"{SESSIONS}/{state['id']}").json()
        assert state["state"] == "timed_out"
        assert "timed out after 0.5s (debug.session_timeout_seconds)" in state["error"]["message"]
    finally:
        h.close()


def test_bad_sessions_are_refused_clearly(dbg: Harness) -> None:
    cases = [
        ({"breakpoints": []}, 400, "Object missing required field `path`"),
        ({"path": "/flow", "breakpoints": [{"node": 3}]}, 400, "at `$.breakpoints[0].node`"),
        (
            {"path": "/flow", "breakpoints": [{"node": "b", "condition": {"key": "x"}}]},
            400,
            "breakpoints[0].condition: give exactly one of equals",
        ),
        (
            {"path": "/flow", "breakpoints": [{"node": "b", "condition": {"equals": 1}}]},
            400,
            "breakpoints[0].condition: give key",
        ),
        (
            {"path": "/flow", "breakpoints": [{"node": "b", "condition": {"code": "1"}}]},
            400,
            "unknown field",
        ),
        ({"path": "/nowhere"}, 404, "refused before any step"),
    ]
    for body, status, message in cases:
        r = post(dbg, SESSIONS, body)
        assert r.status == status, (body, r.text)
        assert message in r.json()["message"], (body, r.json())
    r = dbg.request("GET", f"{SESSIONS}/nope")
    assert r.status == 404 and "no debug session 'nope'" in r.json()["message"]


def test_live_sessions_are_bounded(db_url: str, tmp_path: Path) -> None:
    h = make(db_url, tmp_path, "max_sessions = 1\n")
    try:
        first = start(h, breakpoints=[{"node": "b"}])
        r = post(h, SESSIONS, {"path": "/flow", "breakpoints": [{"node": "b"}]})
        assert r.status == 429 and "debug.max_sessions" in r.json()["message"]
        post(h, f"{SESSIONS}/{first['id']}/continue")
        assert start(h)["state"] == "finished"
    finally:
        h.close()


def test_closing_the_runtime_aborts_paused_runs(db_url: str, tmp_path: Path) -> None:
    h = make(db_url, tmp_path)
    start(h, breakpoints=[{"node": "b"}])
    before = {t.name for t in threading.enumerate() if t.name.startswith("nflow-debug-")}
    assert before
    h.close()
    assert not any(t.name in before and t.is_alive() for t in threading.enumerate())


def test_debug_sessions_need_debug_enabled(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[FLOW], toml="[api]\nenabled = true\n")
    try:
        r = post(h, SESSIONS, {"path": "/flow"})
        assert r.status == 404 and "[debug] enabled" in r.json()["message"]
    finally:
        h.close()


def test_conditions_are_data_with_json_equality() -> None:
    def holds(spec: dict[str, Any], payload: Any) -> bool:
        return Condition.parse(spec).holds(payload)

    payload = {"user": {"id": 7, "tags": ["a", "b"]}, "ok": True, "n": 1, "a.b": "dotted"}
    assert holds({"path": "user.id", "equals": 7}, payload)
    assert holds({"path": "$.user.tags[1]", "equals": "b"}, payload)
    assert holds({"key": "a.b", "equals": "dotted"}, payload)
    assert not holds({"key": "ok", "equals": 1}, payload)  # true is not 1
    assert not holds({"key": "n", "equals": True}, payload)
    assert holds({"key": "n", "equals": 1.0}, payload)
    assert holds({"path": "user.missing", "not_equals": 1}, payload)
    assert holds({"path": "user.missing", "exists": False}, payload)
    assert not holds({"path": "user.tags[5]", "exists": True}, payload)
    assert holds({"key": "n", "in": [0, 1]}, payload)
    assert not holds({"key": "ok", "gt": 0}, payload)  # booleans are not numbers
    assert holds({"key": "n", "lt": 2}, payload)
    with pytest.raises(BreakpointError, match=r"condition\.path: 'a\.\.b' is not a path"):
        Condition.parse({"path": "a..b", "equals": 1})
    with pytest.raises(BreakpointError, match=r"condition\.gt: expected a number"):
        Condition.parse({"key": "n", "gt": "3"})
    with pytest.raises(BreakpointError, match=r"breakpoint\.node: expected a node id"):
        Breakpoint.parse({"node": ""})
