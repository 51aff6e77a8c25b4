"""The studio's side of the management API, in process on both databases: the page and its
Content-Security-Policy, logins and who may call, apps read and saved under ETags (every
compat document round-trips), the analyzer's findings, the catalog, versions and releases.
Real ``nflow serve`` processes (the client, replay, debug sessions over two workers) are in
test_studio_server.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness import COMPAT, SUPPORT, Harness, app_doc, js, starter
from nflow import Request, Response
from nflow.server import dispatch
from test_api import conforms

API = "/_nflow/api"
CLIENT = [("X-Nflow-Client", "tests")]
TOKEN = "tok_studio_0123456789abcdef0123456789"
APP_DOCS = sorted(
    p
    for p in COMPAT.rglob("*.json")
    if p.parent.name != "support" and "drawflow" in orjson.loads(p.read_bytes())
)


def hash_password(password: str) -> str:
    # The users table's legacy digest (which nflow still accepts): Argon2 would take seconds
    # per hash on a loaded test machine.
    return hashlib.new("sha512_256", password.encode()).hexdigest()


def shop(version: int) -> dict[str, Any]:
    return app_doc(
        s=starter("s", "/shop", "a", method="GET"),
        a=js("a", f"function main(){{ c.JSON(200, {{v: {version}}}) }}"),
    )


def stored(h: Harness, name: str, doc: dict[str, Any]) -> None:
    h.store("put_app", name, orjson.dumps(doc).decode())
    h.run(h.runtime.reload())


@pytest.fixture
def studio(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(db_url, tmp_path, toml="[studio]\nenabled = true\n")
    try:
        stored(h, "shop", shop(1))
        yield h
    finally:
        h.close()


@pytest.fixture
def locked(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    """Logins required; a token too; peers from 10.0.0.0/8 allowed."""
    toml = (
        "[studio]\nenabled = true\nlogin = true\n"
        f'[api]\ntoken = "{TOKEN}"\nallowed_ips = ["127.0.0.1", "10.0.0.0/8"]\n'
    )
    h = Harness(db_url, tmp_path, toml=toml)
    try:
        h.store("put_user", "dev", hash_password("s3cret-dev"), rol="developer")
        h.store("put_user", "ana", hash_password("s3cret-ana"), rol="ROL_USER")
        h.store("put_user", "old", hash_password("s3cret-old"), rol="admin", active=False)
        stored(h, "shop", shop(1))
        yield h
    finally:
        h.close()


def save(h: Harness, name: str, doc: dict[str, Any], version: str, **kw: Any) -> Response:
    headers = [*CLIENT, ("If-Match", f'"{version}"')]
    return h.request("PUT", f"{API}/apps/{name}", json={"document": doc}, headers=headers, **kw)


# The page ----------------------------------------------------------------------------------
def test_the_page_is_served_with_its_security_policy(studio: Harness) -> None:
    r = studio.request("GET", "/_nflow/studio")
    assert r.status == 200 and "nflow studio" in r.text
    assert r.header("content-type") == "text/html; charset=utf-8"
    csp = r.header("content-security-policy")
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert studio.request("GET", "/_nflow/studio/").text == r.text
    # Nothing outside the package's static directory, nothing hidden.
    for path in ("/_nflow/studio/../config.toml", "/_nflow/studio/%2e%2e/x", "/_nflow/studio/.x"):
        assert studio.request("GET", path).status == 404, path
    assert studio.request("POST", "/_nflow/studio", headers=CLIENT, json={}).status == 405
    # Another host may not even load the page.
    assert studio.request("GET", "/_nflow/studio", client="192.0.2.9:4000").status == 403


def test_every_studio_file_is_served_with_its_type(studio: Harness) -> None:
    static = Path(__file__).resolve().parents[1] / "src" / "nflow" / "studio" / "static"
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    files = [p for p in static.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert files
    for path in files:
        url = "/_nflow/studio/" + path.relative_to(static).as_posix()
        r = studio.request("GET", url)
        assert r.status == 200 and r.body == path.read_bytes(), url
        if path.suffix in types:
            assert r.header("content-type").split(";")[0] == types[path.suffix], url
        assert r.header("x-content-type-options") == "nosniff"


def test_apps_from_files_are_read_only_here(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[shop(1)], toml="[api]\nenabled = true\n")
    try:
        [app] = h.request("GET", f"{API}/apps").json()
        assert app["source"] == "file"
        loaded = h.request("GET", f"{API}/apps/{app['name']}").json()
        assert loaded["version"] == app["version"]
        r = save(h, app["name"], loaded["document"], loaded["version"])
        assert r.status == 409 and "served from a file" in r.json()["message"]
    finally:
        h.close()


def test_the_bundled_example_is_listed_and_read_only(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, toml="[studio]\nenabled = true\n", example=True)
    try:
        [app] = h.request("GET", f"{API}/apps").json()
        assert (app["name"], app["source"]) == ("example", "file")
        loaded = h.request("GET", f"{API}/apps/example").json()
        assert loaded["version"] == app["version"] and "drawflow" in loaded["document"]
        r = save(h, "example", loaded["document"], loaded["version"])
        assert r.status == 409
    finally:
        h.close()


def test_the_studio_and_its_api_are_off_by_default(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[shop(1)])
    try:
        assert h.request("GET", "/_nflow/studio").status == 404
        assert h.request("GET", f"{API}/apps").status == 404
    finally:
        h.close()


# Who may call --------------------------------------------------------------------------------
def test_logins_with_a_studio_role_set_a_strict_cookie(locked: Harness) -> None:
    h = locked
    r = h.request("GET", f"{API}/apps")
    assert r.status == 401 and "log in first" in r.json()["message"]
    # Logging in is a change: JSON and the client header, like every other.
    creds = {"username": "dev", "password": "s3cret-dev"}
    assert h.request("POST", f"{API}/login", json=creds).status == 403
    assert h.request("POST", f"{API}/login", body="username=dev", headers=CLIENT).status == 415
    for username, password in (
        ("dev", "wrong"),
        ("ana", "s3cret-ana"),  # a role not in [studio] roles
        ("old", "s3cret-old"),  # inactive
        ("nobody", "x"),
    ):
        r = h.request("POST", f"{API}/login", json={"username": username, "password": password})
        r2 = h.request(
            "POST",
            f"{API}/login",
            json={"username": username, "password": password},
            headers=CLIENT,
        )
        assert r.status == 403 and r2.status == 401, username
        assert "set-cookie" not in dict(r2.headers)
    r = h.request("POST", f"{API}/login", json=creds, headers=CLIENT)
    assert r.status == 200 and r.json() == {"user": "dev", "auth": "login"}
    cookie = r.header("set-cookie")
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0].startswith("nflow_studio=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/_nflow"} <= set(attrs)
    assert "Secure" not in attrs  # plain http here
    jar = [("Cookie", attrs[0])]
    r = h.request("GET", f"{API}/me", headers=jar)
    assert r.json() == {"user": "dev", "auth": "login"}
    conforms(r.json(), f"{API}/me")
    assert h.request("GET", f"{API}/apps", headers=jar).status == 200
    # From an allowed network too; not from elsewhere.
    assert h.request("GET", f"{API}/apps", headers=jar, client="10.1.2.3:5000").status == 200
    assert h.request("GET", f"{API}/apps", headers=jar, client="192.0.2.1:5000").status == 403
    # A forged or altered cookie is no login.
    value = attrs[0].split("=", 1)[1]
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert (
        h.request("GET", f"{API}/me", headers=[("Cookie", f"nflow_studio={forged}")]).status == 401
    )
    # The bearer token works instead of a login.
    bearer = [("Authorization", f"Bearer {TOKEN}")]
    assert h.request("GET", f"{API}/me", headers=bearer).json() == {"user": None, "auth": "token"}
    # Logging out ends that login, also for a copy of the cookie.
    r = h.request("POST", f"{API}/logout", json={}, headers=[*CLIENT, *jar])
    assert r.status == 200 and "Max-Age=0" in r.header("set-cookie")
    assert h.request("GET", f"{API}/me", headers=jar).status == 401
    # A user who loses the role loses the studio at once.
    r = h.request("POST", f"{API}/login", json=creds, headers=CLIENT)
    jar = [("Cookie", r.header("set-cookie").split(";")[0])]
    h.store("put_user", "dev", hash_password("s3cret-dev"), rol="ROL_USER")
    assert h.request("GET", f"{API}/me", headers=jar).status == 401


def test_repeated_failed_logins_from_an_address_are_throttled(locked: Harness) -> None:
    from nflow.server.api._login import MAX_FAILURES

    wrong = {"username": "dev", "password": "guess"}
    peer = "10.9.9.9:4000"
    for _ in range(MAX_FAILURES):
        r = locked.request("POST", f"{API}/login", json=wrong, headers=CLIENT, client=peer)
        assert r.status == 401
    right = {"username": "dev", "password": "s3cret-dev"}
    r = locked.request("POST", f"{API}/login", json=right, headers=CLIENT, client=peer)
    assert r.status == 429 and int(r.header("retry-after")) > 0
    assert "too many failed logins" in r.json()["message"]
    # Other addresses are not locked out.
    r = locked.request("POST", f"{API}/login", json=right, headers=CLIENT, client="10.1.1.1:1")
    assert r.status == 200


def test_over_https_the_login_cookie_is_secure(locked: Harness) -> None:
    request = Request(
        "POST",
        f"{API}/login",
        headers=[("Content-Type", "application/json"), *CLIENT],
        body=orjson.dumps({"username": "dev", "password": "s3cret-dev"}),
        client="127.0.0.1:5000",
        scheme="https",
    )
    r = locked.run(dispatch(locked.runtime, request))
    assert r.status == 200 and "; Secure" in r.header("set-cookie")


def test_behind_a_tls_proxy_cookie_secure_makes_the_login_cookie_secure(
    db_url: str, tmp_path: Path
) -> None:
    toml = "[studio]\nenabled = true\nlogin = true\n[session]\ncookie_secure = true\n"
    h = Harness(db_url, tmp_path, toml=toml)
    try:
        h.store("put_user", "dev", hash_password("s3cret-dev"), rol="admin")
        creds = {"username": "dev", "password": "s3cret-dev"}
        r = h.request("POST", f"{API}/login", json=creds, headers=CLIENT)
        assert r.status == 200 and "; Secure" in r.header("set-cookie")
    finally:
        h.close()


def test_without_login_or_token_loopback_needs_nothing(studio: Harness) -> None:
    assert studio.request("GET", f"{API}/me").json() == {"user": None, "auth": "loopback"}
    r = studio.request(
        "POST", f"{API}/login", json={"username": "a", "password": "b"}, headers=CLIENT
    )
    assert r.status == 404 and "logins are off" in r.json()["message"]
    assert studio.request("GET", f"{API}/apps", client="10.0.0.1:1").status == 403


# Apps ----------------------------------------------------------------------------------------
def test_save_needs_the_version_it_edits_and_is_served_at_once(studio: Harness) -> None:
    h = studio
    r = h.request("GET", f"{API}/apps")
    assert r.status == 200
    conforms(r.json(), f"{API}/apps")
    [app] = r.json()
    assert app["name"] == "shop" and app["tabs"] == ["Home"]
    assert app["starters"] == [{"node": "s", "tab": "Home", "method": "GET", "url": "/shop"}]
    r = h.request("GET", f"{API}/apps/shop")
    conforms(r.json(), f"{API}/apps/{{name}}")
    version = r.json()["version"]
    assert r.header("etag") == f'"{version}"' and version == app["version"]
    doc = r.json()["document"]
    doc["drawflow"]["Home"]["data"]["a"]["data"]["code"] = "function main(){ c.JSON(200, {v: 2}) }"

    r = h.request("PUT", f"{API}/apps/shop", json={"document": doc}, headers=CLIENT)
    assert r.status == 428 and "If-Match" in r.json()["message"]
    r = h.request("PUT", f"{API}/apps/shop", json={"document": doc}, headers=[("If-Match", "*")])
    assert r.status == 403  # without the client header: maybe a forged cross-site call
    r = save(h, "shop", doc, version)
    assert r.status == 200, r.text
    conforms(r.json(), f"{API}/apps/{{name}}", "put")
    new = r.json()["version"]
    assert new != version and r.header("etag") == f'"{new}"'
    assert h.request("GET", "/shop").json() == {"v": 2}  # served by this worker at once
    versions = h.request("GET", f"{API}/apps/shop/versions").json()
    conforms(versions, f"{API}/apps/{{name}}/versions")
    assert [(v["version"], v["current"], v["source"]) for v in versions][:2] == [
        (new, True, "designer"),
        (version, False, "designer"),
    ]
    # A second save from the old version is a conflict that says the current one.
    doc["drawflow"]["Home"]["data"]["a"]["data"]["code"] = "function main(){ c.JSON(200, {v: 3}) }"
    r = save(h, "shop", doc, version)
    assert r.status == 409 and r.json()["current"] == new
    assert "changed since version" in r.json()["message"]
    assert h.request("GET", "/shop").json() == {"v": 2}


def test_a_stored_app_that_cannot_be_served_is_listed_and_can_be_mended(studio: Harness) -> None:
    studio.store("put_app", "broken", '{"nodes": []}')
    studio.run(studio.runtime.reload())
    listed = {a["name"]: a for a in studio.request("GET", f"{API}/apps").json()}
    assert listed["broken"]["starters"] == [] and listed["broken"]["version"]
    r = studio.request("GET", f"{API}/apps/broken")
    assert r.status == 200 and r.json()["document"] == {"nodes": []}
    assert r.json()["version"] == listed["broken"]["version"]
    mended = shop(5)
    mended["drawflow"]["Home"]["data"]["s"]["data"]["urlpattern"] = "/mended"
    assert save(studio, "broken", mended, r.json()["version"]).status == 200
    assert studio.request("GET", "/mended").json() == {"v": 5}


def test_a_save_only_replaces_the_row_it_read(studio: Harness) -> None:
    # Two workers may both pass the version check; the row is swapped only if unchanged.
    row = studio.store("get_app", "shop")
    newer = orjson.dumps(shop(7)).decode()
    assert studio.store("replace_app", "shop", newer, expected=row.json, default_js="", tag=None)
    late = orjson.dumps(shop(8)).decode()
    assert not studio.store("replace_app", "shop", late, expected=row.json, default_js="", tag=None)
    assert studio.store("get_app", "shop").json == newer
    assert not studio.store("replace_app", "gone", late, expected="", default_js="", tag=None)


def test_invalid_documents_are_refused_naming_node_and_field(studio: Harness) -> None:
    h = studio
    version = h.request("GET", f"{API}/apps/shop").json()["version"]
    r = save(h, "shop", {"nodes": []}, version)
    assert r.status == 400 and '"drawflow" key' in r.json()["message"]
    broken = shop(1)
    broken["drawflow"]["Home"]["data"]["s"]["outputs"]["output_1"]["connections"] = [
        {"node": "zz", "output": "input_1"}
    ]
    r = save(h, "shop", broken, version)
    assert r.status == 400
    assert "node s, field 'outputs.output_1'" in r.json()["message"]
    assert "'zz', which does not exist" in r.json()["message"]
    r = h.request(
        "PUT",
        f"{API}/apps/shop",
        body=b"{",
        headers=[*CLIENT, ("If-Match", "*"), ("Content-Type", "application/json")],
    )
    assert r.status == 400
    assert h.request("GET", f"{API}/apps/none").status == 404
    assert h.request("GET", "/shop").json() == {"v": 1}


def test_every_compat_document_loads_and_round_trips(db_url: str, tmp_path: Path) -> None:
    assert len(APP_DOCS) >= 16
    h = Harness(db_url, tmp_path, toml="[api]\nenabled = true\n")
    try:
        fixed_total = 0
        for path in APP_DOCS:
            raw = path.read_bytes()
            original = orjson.loads(raw)
            h.store("put_app", "compat", raw.decode())
            first = h.request("GET", f"{API}/apps/compat")
            assert first.status == 200, (path.name, first.text)
            loaded = first.json()
            fixed_total += len(loaded["fixes"])
            doc = loaded["document"]
            assert "Home" in doc["drawflow"], path.name
            r = save(h, "compat", doc, loaded["version"])
            assert r.status == 200, (path.name, r.text)
            again = h.request("GET", f"{API}/apps/compat").json()
            assert again["version"] == r.json()["version"]
            for tab, tab_doc in again["document"]["drawflow"].items():
                for node_id, node in tab_doc["data"].items():
                    before = doc["drawflow"][tab]["data"][node_id]
                    assert node["data"] == before["data"], (path.name, node_id)
                    assert node["outputs"] == before["outputs"], (path.name, node_id)
                    # Stored markup is an opaque string, kept byte for byte.
                    if tab in original["drawflow"]:
                        raw_node = original["drawflow"][tab]["data"][node_id]
                        assert node.get("html") == raw_node.get("html"), (path.name, node_id)
                        assert node["data"] == raw_node["data"], (path.name, node_id)
        assert fixed_total > 0  # the designer's leftovers were there, and were fixed
    finally:
        h.close()


def test_load_time_fixes_are_listed() -> None:
    from nflow.server.api._apps import load_fixes

    doc = {
        "drawflow": {
            "Tab": {
                "data": {
                    "1": {
                        "id": 1,
                        "class": None,
                        "name": None,
                        "html": "<script>alert(1)</script>",
                        "data": {"type": "js"},
                        "outputs": {
                            "output_1": {"connections": [{"node": "9", "output": "input_1"}]}
                        },
                        "inputs": {
                            "input_1": {"connections": [{"node": "8", "input": "output_1"}]}
                        },
                    }
                }
            }
        }
    }
    fixed, fixes = load_fixes(doc)
    node = fixed["drawflow"]["Tab"]["data"]["1"]
    assert node["class"] == "" and node["name"] == ""
    assert node["outputs"]["output_1"]["connections"] == []
    assert node["inputs"]["input_1"]["connections"] == []
    assert node["html"] == "<script>alert(1)</script>"
    assert fixed["drawflow"]["Home"] == {"data": {}}
    assert len(fixes) == 5
    assert doc["drawflow"]["Tab"]["data"]["1"]["class"] is None  # the input is left alone


def test_check_reports_findings_at_their_line(studio: Harness) -> None:
    doc = shop(1)
    doc["drawflow"]["Home"]["data"]["a"]["data"]["code"] = (
        "function main() {\n  let x = 1;\n  x = ;\n}"
    )
    r = studio.request("POST", f"{API}/apps/shop/check", json={"document": doc}, headers=CLIENT)
    assert r.status == 200
    conforms(r.json(), f"{API}/apps/{{name}}/check", "post")
    syntax = [f for f in r.json()["findings"] if f["message"].startswith("SyntaxError")]
    assert syntax == [
        {
            "node": "a",
            "tab": "Home",
            "line": 3,
            "column": None,
            "severity": "error",
            "message": syntax[0]["message"],
            "rule": "code",
        }
    ]
    # Without a document: the stored one, which is fine.
    r = studio.request("POST", f"{API}/apps/shop/check", json={}, headers=CLIENT)
    assert [f for f in r.json()["findings"] if f["severity"] == "error"] == []


# Catalog -------------------------------------------------------------------------------------
def test_modules_templates_and_queries_as_stored(studio: Harness) -> None:
    for name in ("modules_app_sqlite.json", "templates_app_sqlite.json", "queries_app_sqlite.json"):
        studio.store("import_file", SUPPORT / name)
    modules = studio.request("GET", f"{API}/modules").json()
    conforms(modules, f"{API}/modules")
    stored_modules = studio.store("list_modules")
    assert [m["name"] for m in modules] == [m.name for m in stored_modules]
    assert all(m["type"] for m in modules)
    assert any(isinstance(m["manifest"], dict) for m in modules)
    names = studio.request("GET", f"{API}/templates").json()
    conforms(names, f"{API}/templates")
    assert names and names == [{"name": t.name} for t in studio.store("list_templates")]
    first = names[0]["name"]
    r = studio.request("GET", f"{API}/templates/{first}")
    assert r.json() == {"name": first, "content": studio.store("get_template", first).content}
    assert studio.request("GET", f"{API}/templates/nope").status == 404
    queries = studio.request("GET", f"{API}/queries").json()
    conforms(queries, f"{API}/queries")
    assert queries == [{"name": k, "sql": v} for k, v in studio.store("list_queries").items()]
    assert queries


# Versions and releases -----------------------------------------------------------------------
def test_versions_diff_release_and_rollback(studio: Harness) -> None:
    h = studio
    v1 = h.request("GET", f"{API}/apps/shop").json()["version"]
    doc = shop(2)
    doc["drawflow"]["Home"]["data"]["b"] = js("b", "function main(){}")
    doc["drawflow"]["Home"]["data"]["a"]["outputs"] = {
        "output_1": {"connections": [{"node": "b", "output": "input_1"}]}
    }
    v2 = save(h, "shop", doc, v1).json()["version"]
    r = h.request("GET", f"{API}/apps/shop/diff?from={v1[:8]}&to={v2[:8]}")
    assert r.status == 200
    conforms(r.json(), f"{API}/apps/{{name}}/diff")
    changes = {(c["node"], c["what"]): c for c in r.json()["changes"]}
    assert changes[("a", "data.code")]["after"] == "function main(){ c.JSON(200, {v: 2}) }"
    assert changes[("b", "node added")]["tab"] == "Home"
    assert changes[("a", "connection added")]["after"] == {"output": "output_1", "node": "b"}
    assert h.request("GET", f"{API}/apps/shop/diff?from={v1}").status == 400

    state = h.request("GET", f"{API}/apps/shop/release").json()
    conforms(state, f"{API}/apps/{{name}}/release")
    assert state["weights"] == {v2: 100.0} and state["head"] == v2
    # Back to v1 for everyone, through a release.
    r = h.request(
        "POST", f"{API}/apps/shop/release", json={"weights": {v1[:8]: 100}}, headers=CLIENT
    )
    assert r.status == 200, r.text
    conforms(r.json(), f"{API}/apps/{{name}}/release", "post")
    assert r.json()["weights"] == {v1: 100.0}
    assert h.request("GET", "/shop").json() == {"v": 1}
    r = h.request("POST", f"{API}/apps/shop/release", json={"weights": {v2: 100}}, headers=CLIENT)
    assert r.json()["weights"] == {v2: 100.0}
    assert h.request("GET", "/shop").json() == {"v": 2}
    # Rollback restores the release before the last change: v1 again.
    r = h.request("POST", f"{API}/apps/shop/rollback", json={}, headers=CLIENT)
    assert r.status == 200 and r.json()["weights"] == {v1: 100.0}
    assert [e["kind"] for e in r.json()["events"]][:3] == ["rollback", "release", "release"]
    assert h.request("GET", "/shop").json() == {"v": 1}
    # The save itself was a release: a canary after it rolls back to the saved version.
    r = h.request("POST", f"{API}/apps/shop/release", json={"weights": {v2: 100}}, headers=CLIENT)
    v3 = save(h, "shop", shop(3), v2).json()["version"]
    assert h.request("GET", "/shop").json() == {"v": 3}
    r = h.request(
        "POST", f"{API}/apps/shop/release", json={"weights": {v1[:8]: 30, v3: 70}}, headers=CLIENT
    )
    assert r.json()["weights"] == {v1: 30.0, v3: 70.0}
    r = h.request("POST", f"{API}/apps/shop/rollback", json={}, headers=CLIENT)
    assert r.status == 200 and r.json()["weights"] == {v3: 100.0}
    assert h.request("GET", "/shop").json() == {"v": 3}
    r = h.request("POST", f"{API}/apps/shop/rollback", json={"to": v2[:8]}, headers=CLIENT)
    assert r.status == 200 and r.json()["weights"] == {v2: 100.0}
    bad = [
        ({"weights": {v1: 60}}, "add up to 100"),
        ({"weights": {v1: 150}}, "from 0 to 100"),
        ({"weights": {"ffff0000": 100}}, "has no version"),
        ({"weights": {}}, "at least one version"),
    ]
    for body, message in bad:
        r = h.request("POST", f"{API}/apps/shop/release", json=body, headers=CLIENT)
        assert r.status == 400 and message in r.json()["message"], (body, r.text)


def test_openapi_names_the_new_routes() -> None:
    from openapi_spec_validator import validate

    from nflow.server.api import openapi_document

    doc = openapi_document()
    validate(doc)
    for path, method in [
        ("/apps/{name}", "put"),
        ("/apps/{name}/check", "post"),
        ("/runs/{id}/rerun", "post"),
        ("/login", "post"),
        ("/apps/{name}/release", "post"),
    ]:
        assert method in doc["paths"][API + path], path
    put = doc["paths"][f"{API}/apps/{{name}}"]["put"]
    assert {p["name"] for p in put["parameters"]} >= {"If-Match", "X-Nflow-Client", "name"}
    assert {"409", "428"} <= set(put["responses"])
