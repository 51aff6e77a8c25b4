"""Custom Python steps: registration, typed input and output, limits, errors, discovery.

The installed-package tests really ``pip install`` examples/nflow-steps-example into a
directory and run ``nflow`` in a subprocess with that directory on its path, so the node
types come from the entry point and nothing imports the package by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

import nflow
from harness import REPO, Harness, app_doc, js, node, starter
from nflow.check import check_playbook
from nflow.cli import main
from nflow.engine import Execution
from nflow.playbook import parse_playbook

EXAMPLE = REPO / "examples" / "nflow-steps-example"
REPLY = "function main(){ c.JSON(200, payload) }"


# ------------------------------------------------------------------------------------------
# Steps registered by this module (and removed again when it is done)


class GreetIn(BaseModel):
    name: str = Field(min_length=1)
    times: int = 1
    punctuation: str = "!"


class GreetOut(BaseModel):
    greeting: str


seen: dict[str, Any] = {}
kill_started = threading.Event()
kill_release = threading.Event()
async_cancelled = threading.Event()


def greet(ctx: nflow.StepContext, data: GreetIn) -> tuple[GreetOut, str]:
    seen.update(
        wid=ctx.wid,
        app=ctx.app,
        node=ctx.node_id,
        node_name=ctx.node_name,
        path=ctx.request.path,
        header=ctx.request.header("x-shop"),
        vars=dict(ctx.request.path_vars),
        env=ctx.env.get("shop"),
        remaining=ctx.remaining(),
        thread=threading.current_thread().name,
    )
    ctx.log.info("greeting %s", data.name)
    text = " ".join([f"Hello, {data.name}{data.punctuation}"] * data.times)
    return GreetOut(greeting=text), ("output_2" if data.name == "Bob" else "output_1")


def plain(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    # No models: a plain dict in (payload + node data), a dict merged into the payload out.
    return {"keys": sorted(data), "upper": str(data.get("word", "")).upper()}


def boom(ctx: nflow.StepContext, data: dict[str, Any]) -> None:
    raise RuntimeError("inventory service said no")


def slow(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    time.sleep(1.0)
    return {"late": True}


def bad_output(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"greeting": ["not", "a", "string"]}


def not_json(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"when": object()}


async def fetch(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"loop_thread": threading.current_thread().name, "double": int(data["n"]) * 2}


async def stuck(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        async_cancelled.set()
        raise
    return {}


def waits_for_kill(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    seen["kill_wid"] = ctx.wid
    kill_started.set()
    kill_release.wait(5.0)
    return {"finished": True}


STEPS: list[tuple[str, Any, dict[str, Any]]] = [
    ("t_greet", greet, {"input": GreetIn, "output": GreetOut}),
    ("t_plain", plain, {}),
    ("t_boom", boom, {}),
    ("t_slow", slow, {}),
    ("t_bad_output", bad_output, {"output": GreetOut}),
    ("t_not_json", not_json, {}),
    ("t_fetch", fetch, {}),
    ("t_stuck", stuck, {}),
    ("t_wait_kill", waits_for_kill, {}),
]


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    for name, func, models in STEPS:
        nflow.step(name, **models)(func)
    yield
    for name, _, _ in STEPS:
        nflow.steps.unregister_step(name)


def custom(node_id: str, type_: str, **data: Any) -> dict[str, Any]:
    doc = node(node_id, type_, output_1="reply")
    doc["data"].update(name_box=node_id.title(), **data)
    return doc


def one_step_app(type_: str, pattern: str = "/s", **data: Any) -> dict[str, Any]:
    return app_doc(
        s=starter("s", pattern, "step"),
        step=custom("step", type_, **data),
        reply=js("reply", REPLY),
    )


@pytest.fixture
def harness_for(db_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(*apps: dict[str, Any], toml: str | None = None) -> Harness:
        h = Harness(db_url, tmp_path, apps=apps, toml=toml)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ------------------------------------------------------------------------------------------
# Running steps


def test_typed_step_merges_output_routes_and_sees_its_context(harness_for: Any) -> None:
    doc = app_doc(
        s=starter("s", "/greet/:shop", "step"),
        step={
            **custom("step", "t_greet", punctuation="?", times=""),
            "outputs": {
                "output_1": {"connections": [{"node": "reply", "output": "input_1"}]},
                "output_2": {"connections": [{"node": "other", "output": "input_1"}]},
            },
        },
        reply=js("reply", REPLY),
        other=js(
            "other", 'function main(){ c.JSON(202, {"via": "output_2", "g": payload.greeting}) }'
        ),
    )
    h = harness_for(doc, toml='[env]\nshop = "north"\n')
    # The node's punctuation wins over the request's; its empty "times" does not hide ours.
    response = h.request(
        "GET", "/greet/acme?name=Ana&times=2&punctuation=.", headers=[("X-Shop", "yes")]
    )
    assert response.status == 200, response.text
    body = response.json()
    assert body["greeting"] == "Hello, Ana? Hello, Ana?"
    assert body["name"] == "Ana"  # the payload flows on, the output merged into it
    assert seen["wid"] == response.header("Nflow-Wid-1")
    assert seen["node"] == "step" and seen["node_name"] == "Step"
    assert seen["path"] == "/greet/acme" and seen["vars"] == {"shop": "acme"}
    assert seen["header"] == "yes" and seen["env"] == "north"
    assert 0 < seen["remaining"] <= 30
    assert seen["thread"].startswith("nflow-step")

    routed = h.request("GET", "/greet/acme?name=Bob")
    assert routed.status == 202
    assert routed.json() == {"via": "output_2", "g": "Hello, Bob?"}


def test_plain_dict_step_gets_payload_and_node_data(harness_for: Any) -> None:
    h = harness_for(one_step_app("t_plain", mode="fast"))
    body = h.request("GET", "/s?word=tea").json()
    assert body["upper"] == "TEA"
    assert body["keys"] == ["mode", "word"]  # the designer's type and name_box are not input


def test_invalid_input_is_500_naming_node_field_and_expectation(
    harness_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_for(one_step_app("t_greet"))
    response = h.request("GET", "/s?times=many")
    assert response.status == 500
    body = response.json()
    assert body["node"] == "step"
    message = body["message"]
    assert message.startswith("invalid input for step 't_greet' in node step (Step): ")
    assert "field 'name' (expected str): Field required" in message
    assert "field 'times' (expected int): Input should be a valid integer" in message
    assert "got 'many'" in message


def test_exception_is_500_without_traceback_and_logged(
    harness_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_for(one_step_app("t_boom"))
    with caplog.at_level(logging.ERROR, logger="nflow.steps"):
        response = h.request("GET", "/s")
    assert response.status == 500
    body = response.json()
    assert body["message"] == (
        "RuntimeError: inventory service said no in step 't_boom' of node step (Step)"
    )
    assert body["node"] == "step"
    assert "Traceback" not in response.text and "test_steps.py" not in response.text
    logged = [r for r in caplog.records if r.name == "nflow.steps"]
    assert logged and logged[0].exc_info is not None
    assert getattr(logged[0], "node", "") == "step"


def test_bad_outputs_are_500_naming_the_step(harness_for: Any) -> None:
    h = harness_for(
        one_step_app("t_bad_output", "/bad"),
        one_step_app("t_not_json", "/json"),
    )
    bad = h.request("GET", "/bad").json()["message"]
    assert bad.startswith("step 't_bad_output' of node step (Step) returned invalid output: ")
    assert "field 'greeting' (expected str)" in bad
    not_json = h.request("GET", "/json")
    assert not_json.status == 500
    assert "returned a value that is not JSON" in not_json.json()["message"]


def test_sync_step_past_its_limit_is_408_and_traced(harness_for: Any) -> None:
    h = harness_for(one_step_app("t_slow"), toml="[limits]\nstep_timeout_seconds = 0.2\n")
    response = h.request("GET", "/s")
    assert response.status == 408
    body = response.json()
    assert body["node"] == "step"
    assert body["message"] == (
        "Script execution exceeded resource limits: step 't_slow' of node step (Step) "
        "ran longer than its time limit of 0.2s"
    )
    execution = h.runtime.handle_sync(nflow.Request("GET", "/s"))
    assert isinstance(execution, Execution)
    assert [(t.node, t.type) for t in execution.trace] == [("step", "t_slow")]
    assert "time limit" in execution.trace[0].error


def test_step_honours_its_apps_lower_time_limit(harness_for: Any) -> None:
    # The server allows 30 s; the app's own nflow_limits lowers the step limit to 0.2 s.
    h = harness_for({**one_step_app("t_slow"), "nflow_limits": {"step_timeout_seconds": 0.2}})
    response = h.request("GET", "/s")
    assert response.status == 408
    assert response.json()["message"].endswith("ran longer than its time limit of 0.2s")


def test_async_step_runs_on_the_io_loop_and_is_cancelled_at_its_limit(
    harness_for: Any,
) -> None:
    h = harness_for(
        one_step_app("t_fetch", "/fetch"),
        one_step_app("t_stuck", "/stuck"),
        toml="[limits]\nstep_timeout_seconds = 0.2\n",
    )
    body = h.request("GET", "/fetch?n=21").json()
    assert body["double"] == 42 and body["loop_thread"] == "nflow-io"
    async_cancelled.clear()
    response = h.request("GET", "/stuck")
    assert response.status == 408
    assert "step 't_stuck' of node step (Step) ran longer" in response.json()["message"]
    assert async_cancelled.wait(2.0)


def test_killed_run_stops_waiting_for_its_step(harness_for: Any) -> None:
    h = harness_for(one_step_app("t_wait_kill"))
    kill_started.clear()
    kill_release.clear()

    def killer() -> None:
        if kill_started.wait(5.0):
            h.runtime.services.processes.kill(seen["kill_wid"])

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        response = h.request("GET", "/s")
    finally:
        kill_release.set()
        thread.join(5.0)
    assert response.status == 499
    assert response.json()["node"] == "step"


def test_unknown_type_is_still_an_error(harness_for: Any) -> None:
    h = harness_for(one_step_app("t_nowhere"))
    response = h.request("GET", "/s")
    assert response.status == 500
    assert response.json() == {"error": "Type node not found", "node": "step", "type": "t_nowhere"}


# ------------------------------------------------------------------------------------------
# Registration and checking


def test_registration_refuses_what_would_break_apps() -> None:
    with pytest.raises(nflow.StepRegistrationError, match="'js' is a built-in node type"):
        nflow.step("js")(plain)
    with pytest.raises(nflow.StepRegistrationError, match="already registered by"):
        nflow.step("t_plain")(boom)
    with pytest.raises(nflow.StepRegistrationError, match="must accept two arguments"):
        nflow.step("t_one_arg")(lambda ctx: None)
    with pytest.raises(nflow.StepRegistrationError, match="pydantic BaseModel subclass"):
        nflow.step("t_models", input=dict)(plain)  # type: ignore[arg-type]
    assert "t_one_arg" not in nflow.registered_steps()


def test_check_knows_registered_types_and_bad_node_data() -> None:
    doc = app_doc(
        s=starter("s", "/s", "a"),
        a={
            **custom("a", "t_greet", times="often"),
            "outputs": {"output_1": {"connections": [{"node": "b", "output": "input_1"}]}},
        },
        b=custom("b", "t_unregistered"),
        reply=js("reply", REPLY),
    )
    problems = [str(p) for p in check_playbook(parse_playbook(doc), modules={})]
    assert not any("node a, field 'type'" in p for p in problems)
    assert any(
        "node a, field 'times': step 't_greet': Input should be a valid integer" in p
        for p in problems
    ), problems
    assert any("node b, field 'type': unknown node type 't_unregistered'" in p for p in problems)


# ------------------------------------------------------------------------------------------
# The example package, installed for real and found through its entry point


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("steps-example")
    source = root / "src"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (target / "nflow_steps_example-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


# One interpreter runs the commands in turn, as `nflow …` would: starting one per command
# costs seconds on a busy machine.
CLI_SCRIPT = """
import sys
from nflow.cli import main

for args in ([a.split("\\x1f") for a in sys.argv[1:]]):
    print("=== exit", main(args), flush=True)
"""


def nflow_cli(tmp_path: Path, site: Path, *commands: list[str]) -> list[tuple[int, str]]:
    """Run ``nflow`` commands with ``site`` (and nothing of this test process) on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFLOW_")}
    env["PYTHONPATH"] = str(site)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database_nflow]\ndsn = "{tmp_path / "nflow.db"}"\n[logging]\naccess = false\n'
        f'[session]\nsecret = "{"s" * 40}"\n'
    )
    argv = ["\x1f".join([*command, "--config", str(config)]) for command in commands]
    done = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    results: list[tuple[int, str]] = []
    out = done.stdout
    while "=== exit " in out:
        text, _, rest = out.partition("=== exit ")
        code, _, out = rest.partition("\n")
        results.append((int(code), text))
    return results


def test_installed_package_is_found_by_entry_point_in_check_and_run(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    playbook = str(EXAMPLE / "playbook.json")
    (check_code, check_out), (slug_code, slug_out), (sum_code, sum_out) = nflow_cli(
        tmp_path,
        installed,
        ["check", "--no-db", playbook],
        ["run", playbook, "GET", "/slug?text=H%C3%A9llo,%20World!"],
        ["run", playbook, "GET", "/sum?a=1&b=-2.5", "-i"],
    )
    assert check_code == 0, check_out
    assert "2 starter(s), 0 error(s)" in check_out
    assert slug_code == 0, slug_out
    assert json.loads(slug_out) == {"slug": "hello-world"}
    assert sum_code == 1 and sum_out.startswith("HTTP 422"), sum_out
    assert json.loads(sum_out.split("\n\n", 1)[1]) == {"error": "negative total", "total": -1.5}

    # This test process never installed the package: the same app has unknown node types.
    assert main(["check", "--no-db", playbook]) == 1
    unknown = capsys.readouterr().out
    assert "node slug-step, field 'type': unknown node type 'slugify'" in unknown
    assert "node sum-step, field 'type': unknown node type 'sum_fields'" in unknown
