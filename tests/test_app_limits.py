"""Per-app limit overrides: an app may lower the server's limits (config.toml or its own
document), never raise them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from harness import Harness, app_doc, js, starter
from nflow.cli import main
from nflow.config import load_config
from nflow.errors import ConfigError

# Busy for 300 ms of wall clock, then answers: fine under the default 30 s limits.
BUSY = (
    "function main(){ var t = Date.now(); while (Date.now() - t < 300) {} "
    "c.JSON(200, {done: true}) }"
)


def busy_app(path: str, **extra: Any) -> dict[str, Any]:
    return {**app_doc(s=starter("s", path, "a"), a=js("a", BUSY)), **extra}


def test_lower_timeout_gives_408_where_the_same_script_succeeds(
    db_url: str, tmp_path: Path
) -> None:
    apps = [
        busy_app("/plain"),
        busy_app("/own", nflow_limits={"request_timeout_seconds": 0.1}),
        busy_app("/operator"),
    ]
    # app2 is lowered by the operator in config.toml rather than by its document.
    toml = '[apps."app2".limits]\nstep_timeout_seconds = 0.1\n'
    h = Harness(db_url, tmp_path, apps=apps, toml=toml)
    try:
        assert h.request("GET", "/plain").json() == {"done": True}
        own = h.request("GET", "/own")
        assert own.status == 408
        assert "time limit" in own.json()["message"]
        assert h.request("GET", "/operator").status == 408
        # The override belongs to its app: the plain one still has the server's limits.
        assert h.request("GET", "/plain").status == 200
    finally:
        h.close()


# Holds about 40 MiB of arrays at once: fine under the server's 128 MiB heap.
HOG = (
    "function main(){ var keep = []; for (var i = 0; i < 40; i++) "
    "{ keep.push(new Array(131072).fill(i)) } c.JSON(200, {arrays: keep.length}) }"
)


def test_lower_memory_limit_runs_on_its_own_runtime(db_url: str, tmp_path: Path) -> None:
    hog = app_doc(s=starter("s", "/hog", "a"), a=js("a", HOG))
    small = {
        **app_doc(s=starter("s", "/small", "a"), a=js("a", HOG)),
        "nflow_limits": {"max_memory_mb": 16},
    }
    h = Harness(db_url, tmp_path, apps=[hog, small])
    try:
        assert h.request("GET", "/hog").json() == {"arrays": 40}
        r = h.request("GET", "/small")
        assert r.status == 500
        assert "memory limit" in r.json()["error"]
        # The app with the server's heap keeps its runtime and its answer.
        assert h.request("GET", "/hog").json() == {"arrays": 40}
        assert h.request("GET", "/small").status == 500
    finally:
        h.close()


def test_memory_above_the_server_heap_is_refused_by_check(tmp_path: Path, capsys: Any) -> None:
    doc = {**busy_app("/m"), "nflow_limits": {"max_memory_mb": 4096}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "nflow_limits.max_memory_mb = 4096 is above the server's limit 128" in out
    assert "(vm_pool.max_memory_mb)" in out


def test_each_key_is_enforced_per_app(db_url: str, tmp_path: Path) -> None:
    loop = app_doc(
        s=starter("s", "/loop", "a"),
        a=js("a", "function main(){ payload.n = (payload.n || 0) + 1 }", output_1="b"),
        b=js(
            "b",
            "function main(){ if (payload.n > 5) { c.JSON(200, payload); next = 'x' } }",
            output_1="a",
        ),
    )
    sleepy = app_doc(
        s=starter("s", "/sleep", "a"),
        a=js("a", "function main(){ sleep(50); c.String(200, 'ok') }"),
    )
    big = app_doc(
        s=starter("s", "/big", "a"), a=js("a", "function main(){ c.String(200, 'x'.repeat(2000)) }")
    )
    calls = app_doc(
        s=starter("s", "/calls", "a"),
        a=js("a", "function main(){ for (var i = 0; i < 50; i++) { uuid() } c.String(200, 'ok') }"),
    )
    body = app_doc(
        s=starter("s", "/body", "a"), a=js("a", "function main(){ c.String(200, 'ok') }")
    )
    lowered = {
        "app0": {"max_steps": 4},
        "app1": {"sleep_max_ms": 10},
        "app2": {"max_response_bytes": 1000},
        "app3": {"max_host_calls": 20},
        "app4": {"max_body_bytes": 10},
    }
    docs = [loop, sleepy, big, calls, body]
    plain = [dict(d) for d in docs]
    h = Harness(
        db_url,
        tmp_path,
        apps=[{**d, "nflow_limits": lowered[f"app{i}"]} for i, d in enumerate(docs)],
    )
    try:
        assert h.request("GET", "/loop").status == 508
        slept = h.request("GET", "/sleep")
        assert slept.status == 500 and "limits.sleep_max_ms (10 ms)" in slept.text
        assert h.request("GET", "/big").status == 500
        called = h.request("GET", "/calls")
        assert called.status == 500 and "more than 20 host calls" in called.text
        posted = h.request("POST", "/body", body="x" * 50)
        assert posted.status == 413 and "app 'app4'" in posted.text
    finally:
        h.close()
    # The same documents without overrides all succeed.
    h = Harness(db_url, tmp_path, apps=plain)
    try:
        assert h.request("GET", "/loop").json()["n"] == 6
        assert h.request("GET", "/sleep").text == "ok"
        assert h.request("GET", "/big").status == 200
        assert h.request("GET", "/calls").text == "ok"
        assert h.request("POST", "/body", body="x" * 50).text == "ok"
    finally:
        h.close()


def test_raise_is_clamped_at_load_with_a_warning(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    apps = [busy_app("/greedy", nflow_limits={"request_timeout_seconds": 60, "max_steps": 5})]
    toml = (
        '[limits]\nrequest_timeout_seconds = 0.1\n[apps."app0".limits]\nmax_host_calls = 500000\n'
    )
    with caplog.at_level(logging.WARNING, logger="nflow"):
        h = Harness(db_url, tmp_path, apps=apps, toml=toml)
    try:
        # Still served, but under the server's 0.1 s, not the 60 s it asked for.
        assert h.request("GET", "/greedy").status == 408
        limits = h.runtime.services.limits_for(h.runtime.router.playbooks[0])
        assert limits.request_timeout_seconds == 0.1
        assert limits.max_steps == 5  # the lowering part of the same override applies
        assert limits.max_host_calls == 100_000
    finally:
        h.close()
    text = caplog.text
    assert "nflow_limits.request_timeout_seconds = 60 is above the server's limit 0.1" in text
    assert 'apps."app0".limits.max_host_calls = 500000 is above the server\'s limit 100000' in text
    assert "clamped" in text


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database_nflow]\ndsn = "{tmp_path / "cli.db"}"\n[limits]\nmax_steps = 100\n'
        '[apps."operator".limits]\nrequest_timeout_seconds = 45\n'
    )
    return path


def test_check_and_import_refuse_a_raise(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    greedy = tmp_path / "greedy.json"
    greedy.write_text(json.dumps(busy_app("/g", nflow_limits={"max_steps": 5000})))
    assert main(["check", "--config", str(cfg), str(greedy)]) == 1
    out = capsys.readouterr().out
    assert (
        "app 'greedy': nflow_limits.max_steps = 5000 is above the server's limit 100 "
        "(limits.max_steps)" in out
    )
    assert main(["import", "--config", str(cfg), str(greedy)]) == 1
    assert "nflow_limits.max_steps = 5000" in capsys.readouterr().err
    # The operator's own override is held to the same rule.
    operator = tmp_path / "operator.json"
    operator.write_text(json.dumps(busy_app("/o")))
    assert main(["check", "--config", str(cfg), str(operator)]) == 1
    assert 'apps."operator".limits.request_timeout_seconds = 45 is above' in capsys.readouterr().out
    # Lowering is fine.
    modest = tmp_path / "modest.json"
    modest.write_text(json.dumps(busy_app("/m", nflow_limits={"max_steps": 10})))
    assert main(["check", "--config", str(cfg), str(modest)]) == 0
    assert main(["import", "--config", str(cfg), str(modest)]) == 0


def test_bad_overrides_name_the_key_path(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    limits = {"max_stepz": 5, "sleep_max_ms": "10", "max_stack_kb": 64, "step_timeout_seconds": 0}
    bad.write_text(json.dumps(busy_app("/b", nflow_limits=limits)))
    assert main(["check", "--config", str(cfg), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "field 'nflow_limits.max_stepz': unknown limit (did you mean max_steps?)" in out
    assert "field 'nflow_limits.sleep_max_ms': expected an integer, got \"10\"" in out
    assert "field 'nflow_limits.max_stack_kb': cannot be set per app" in out
    assert "field 'nflow_limits.step_timeout_seconds': must be greater than 0, got 0" in out
    not_object = tmp_path / "list.json"
    not_object.write_text(json.dumps(busy_app("/l", nflow_limits=[1])))
    assert main(["check", "--config", str(cfg), str(not_object)]) == 1
    assert "field 'nflow_limits': expected an object of limits" in capsys.readouterr().out

    toml = tmp_path / "bad.toml"
    toml.write_text(
        '[apps."shop".limits]\nmax_steps = true\nrequest_timeout = 3\n[apps."shop"]\ncolor = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(toml, environ={})
    message = str(caught.value)
    assert "apps.shop.limits.max_steps: expected an integer, got true" in message
    assert "apps.shop.limits.request_timeout: unknown limit (did you mean" in message
    assert "apps.shop.color: unknown key" in message
    with pytest.raises(ConfigError, match="NFLOW_APPS__SHOP__LIMITS__MAX_STEPS: per-app"):
        load_config(None, environ={"NFLOW_APPS__SHOP__LIMITS__MAX_STEPS": "3"})


def test_route_that_keeps_hitting_limits_is_quarantined(db_url: str, tmp_path: Path) -> None:
    apps = [busy_app("/slow", nflow_limits={"request_timeout_seconds": 0.05}), busy_app("/ok")]
    toml = "[limits]\nquarantine_after_hits = 2\nquarantine_seconds = 0.5\n"
    h = Harness(db_url, tmp_path, apps=apps, toml=toml)
    try:
        assert [h.request("GET", "/slow").status for _ in range(2)] == [408, 408]
        paused = h.request("GET", "/slow")
        assert paused.status == 503
        assert "after repeated limit hits (limits.quarantine_after_hits)" in paused.text
        assert dict(paused.headers)["retry-after"] == "1"
        assert h.request("GET", "/ok").status == 200  # other routes are untouched
        time.sleep(0.6)
        assert h.request("GET", "/slow").status == 408  # a fresh chance after the pause
    finally:
        h.close()


def test_config_reload_applies_new_app_limits(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[busy_app("/busy")], toml="")
    try:
        assert h.request("GET", "/busy").status == 200
        path = tmp_path / "reloaded.toml"
        path.write_text('[apps."app0".limits]\nrequest_timeout_seconds = 0.1\n')
        h.runtime.apply_config(load_config(path, environ={}), ["apps.app0.limits"])
        assert h.request("GET", "/busy").status == 408
    finally:
        h.close()
