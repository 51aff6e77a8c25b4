"""The compat fixtures answer with the documented status, headers and bytes (no sessions)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import COMPAT, SUPPORT, UUID, Harness
from nflow.check import check_playbook
from nflow.playbook import load_playbook

MakeHarness = Callable[..., Harness]


@pytest.fixture
def make(db_url: str, tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(*apps: Path, support: tuple[Path, ...] = ()) -> Harness:
        harness = Harness(db_url, tmp_path, apps=apps, support=support)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def test_login_flow21_returns_sorted_go_json(make: MakeHarness) -> None:
    h = make(COMPAT / "examples_login_flow21_static_json.json")
    for method in ("GET", "POST", "DELETE"):
        r = h.request(method, "/login_flow21")
        assert r.status == 200
        assert (
            r.body == b'{"franco":"cafferata","idp":"nflow2","pepe":{"es":1234567,"jojo":["as"]}}\n'
        )
        assert r.header("content-type") == "application/json"
        assert UUID.match(r.header("nflow-wid-1"))


def test_login_flow21_initsql_variant(make: MakeHarness) -> None:
    h = make(COMPAT / "examples_login_flow21_static_json_initsql_variant.json")
    r = h.request("GET", "/login_flow21")
    assert (r.status, r.body) == (200, b'{"idp":"nflow2","ss":"sss"}\n')


def test_pretty_query_indents_like_echo(make: MakeHarness) -> None:
    h = make(COMPAT / "examples_login_flow21_static_json.json")
    r = h.request("GET", "/login_flow21?pretty")
    assert r.body == (
        b'{\n  "franco": "cafferata",\n  "idp": "nflow2",\n  "pepe": {\n    "es": 1234567,\n'
        b'    "jojo": [\n      "as"\n    ]\n  }\n}\n'
    )


def test_unmatched_path_is_json_404(make: MakeHarness) -> None:
    h = make(COMPAT / "examples_login_flow21_static_json.json")
    r = h.request("GET", "/nope")
    assert (r.status, r.body) == (404, b'{"code":404,"message":"not found"}\n')


def test_login_flow1_validates_api_tokens(make: MakeHarness) -> None:
    h = make(
        COMPAT / "examples_login_flow1_validate_token.json",
        support=(SUPPORT / "modules_app_sqlite.json",),
    )
    # The sample database had an expired Bearer row and a Basic row without expiry.
    h.store("add_token", "api1", "old-bearer", token_type="Bearer", expired=int(time.time()) - 3600)
    h.store("add_token", "api1", "dXNlcjpwYXNz", token_type="Basic")
    h.store("add_token", "api1", "disabled", token_type="Bearer", active=False)

    denied = h.request("GET", "/login_flow1")
    assert (denied.status, denied.body) == (401, b'{"error":"Unauthorized"}\n')
    expired = h.request("GET", "/login_flow1", headers=[("Authorization", "Bearer old-bearer")])
    assert expired.status == 401
    inactive = h.request("GET", "/login_flow1", headers=[("Authorization", "Bearer disabled")])
    assert inactive.status == 401
    ok = h.request("GET", "/login_flow1", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    assert (ok.status, ok.body) == (200, b'{"idp":"nflow2"}\n')


def test_login_flow1_token_in_custom_header(make: MakeHarness) -> None:
    h = make(
        COMPAT / "examples_login_flow1_validate_token.json",
        support=(SUPPORT / "modules_app_sqlite.json",),
    )
    h.store("add_token", "api1", "s3cret", header="X-Api-Key", token_type="Token")
    assert (
        h.request("GET", "/login_flow1", headers=[("Authorization", "Token s3cret")]).status == 401
    )
    ok = h.request("GET", "/login_flow1", headers=[("X-Api-Key", "Token s3cret")])
    assert (ok.status, ok.body) == (200, b'{"idp":"nflow2"}\n')


@pytest.mark.parametrize(
    ("file", "body"),
    [
        ("legacy_app_earliest_2023-03.json", b'{"aa":"ss"}\n'),
        ("legacy_app1_pepe_hello_2023-06-14.json", b'{"hola":"como estas"}\n'),
    ],
)
def test_legacy_pepe_apps(make: MakeHarness, file: str, body: bytes) -> None:
    h = make(COMPAT / "legacy" / file)
    r = h.request("GET", "/pepe")
    assert (r.status, r.body) == (200, body)


def test_legacy_file_based_app(make: MakeHarness) -> None:
    h = make(
        COMPAT / "legacy" / "legacy_app_file_based_modules_2023-07.json",
        support=(SUPPORT / "modules_app_sqlite.json",),
    )
    r = h.request("GET", "/login_flow2")
    assert (r.status, r.body) == (200, b'{"idp":"nflow2"}\n')
    # Its modules are file paths the old runtime read from disk: a clear 500 names them.
    r = h.request("GET", "/login_flow1")
    assert r.status == 500
    error = r.json()
    assert isinstance(error, dict)
    # The documented body of a failing node, as for script errors.
    assert "modules/Validate Token/js/code" in error["message"]
    assert "not in the modules table" in error["message"]
    assert error["node"]


@pytest.mark.parametrize(
    ("file", "modules"),
    [
        ("app_nflow_sqlite_full.json", "modules_app_sqlite.json"),
        ("app_nflow_runtime_repo_full.json", "modules_app_sqlite.json"),
        ("app_nflow_initsql_postgres_full.json", "modules_initsql.json"),
    ],
)
def test_whole_apps_import_and_check_with_orphans_as_warnings(
    make: MakeHarness, file: str, modules: str
) -> None:
    h = make(support=(SUPPORT / modules, COMPAT / file))
    assert h.runtime.router.playbooks, "the imported app is served"
    stored = h.store("get_app", "app")
    assert stored is not None
    playbook = load_playbook(stored.json, name="app")
    problems = check_playbook(playbook, modules=h.runtime.services.modules)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    assert errors == []
    assert any("orphan" in p.message for p in warnings)
    patterns = {s.pattern for s in playbook.starters}
    assert {"/pepe11", "/nflow_login", "/logout"} <= patterns
