"""Stateful designer flows end to end: the form wizard, auth, login, logout, OTP, and the
session guarantees (sealed cookies, revocation, per-client state). Each test runs on both
session backends and both databases."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import COMPAT, SUPPORT, Browser, Harness, app_doc, js, parse_form, starter

MakeHarness = Callable[..., Harness]
WIZARD_FIELDS = {
    "cantidad": "1000",
    "cuotas": "12",
    "interes": "5",
    "valorCuota": "87.5",
    "valorTotal": "1050",
}


@pytest.fixture
def make(db_url: str, tmp_path: Path, session_toml: str) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(
        *apps: Path | dict[str, object], support: tuple[Path, ...] = (), extra: str = ""
    ) -> Harness:
        harness = Harness(db_url, tmp_path, apps=apps, support=support, toml=session_toml + extra)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


SQLITE_SUPPORT = (SUPPORT / "modules_app_sqlite.json", SUPPORT / "templates_app_sqlite.json")


def test_pepe11_wizard(make: MakeHarness) -> None:
    h = make(COMPAT / "home_pepe11_multistep_form_wizard.json", support=SQLITE_SUPPORT)
    b = Browser(h)
    page = b.get("/pepe11")
    assert page.status == 200 and page.header("content-type") == "text/html; charset=UTF-8"
    form = parse_form(page.text)
    assert (form.method, form.action) == ("post", "/pepe11/nftk/Datos%20Personales")
    assert form.hidden["nflow_next_node_run"] == "012715af-7917-4a12-8afc-b5f5406d4094"
    assert "nombre" in form.fields

    page = b.submit({"nombre": "Ana"})
    assert page.status == 200 and "Paso 2" in page.text
    assert {"tipo", "celular", "mail"} <= set(parse_form(page.text).fields)

    page = b.submit({"tipo": "celular", "celular": "555-1234", "mail": ""})
    assert "Paso 3 - Celular" in page.text, page.text[page.text.find("Paso") :][:200]
    assert re.fullmatch(r"[0-9a-f-]{36}", page.header("dromedary-wid-2"))
    assert h.runtime.wait_forks(5.0), "the background branch of the fork finishes"

    page = b.submit({"codigo": "0000"})  # wrong code: back to Paso 2
    assert "Paso 2" in page.text
    page = b.submit({"tipo": "celular", "celular": "555-1234", "mail": ""})
    page = b.submit({"codigo": "1111"})
    assert "Paso 4" in page.text
    form = parse_form(page.text)
    assert form.action == "/pepe11"
    assert form.hidden["nflow_next_node_run"].startswith("fb3e4212")

    done = b.submit(WIZARD_FIELDS)
    assert done.status == 200 and done.header("content-type") == "application/json"
    body = done.json()
    assert body == {
        "nombre": "Ana",
        "tipo": "celular",
        "celular": "555-1234",
        "mail": "",
        "codigo": "1111",
        "paso_codigo": "ok",
        **WIZARD_FIELDS,
    }
    assert done.body == done.body.strip() + b"\n"  # Go's encoder: sorted keys, newline
    # The flow ended, so the form session is cleared: a resume now starts from nothing.
    again = b.post("/pepe11", form={"nflow_next_node_run": form.hidden["nflow_next_node_run"]})
    assert again.json() == {}


def test_two_clients_behind_one_ip_keep_separate_wizards(make: MakeHarness) -> None:
    h = make(COMPAT / "home_pepe11_multistep_form_wizard.json", support=SQLITE_SUPPORT)
    ana, bob = Browser(h, client="10.0.0.1:1111"), Browser(h, client="10.0.0.1:2222")
    ana.get("/pepe11")
    bob.get("/pepe11")
    ana.submit({"nombre": "Ana"})
    bob.submit({"nombre": "Bob"})
    for who, name in ((ana, "Ana"), (bob, "Bob")):
        who.submit({"tipo": "mail", "celular": "", "mail": f"{name}@x"})
        page = who.submit({"codigo": "1111"})
        assert "Paso 4" in page.text
        assert who.submit(WIZARD_FIELDS).json()["nombre"] == name


def test_home_requires_login_then_runs_wizard_and_logout_ends_it(make: MakeHarness) -> None:
    h = make(
        COMPAT / "home_home_auth_multistep_form_wizard.json",
        COMPAT / "login_nflow_login_form.json",
        COMPAT / "login_logout.json",
        support=SQLITE_SUPPORT,
    )
    from nflow.passwords import hash_password

    # The stored "Validate Login" module passes the username as the password (upstream bug).
    h.store("put_user", "ana", hash_password("ana"))
    b = Browser(h)
    r = b.get("/home")
    assert (r.status, r.header("location")) == (307, "/nflow_login")

    login = b.get("/nflow_login")
    assert login.status == 200
    form = parse_form(login.text)
    assert form.hidden["nflow_next_node_run"] == "60135809-d795-4e1a-a9b0-81c5c8ae0bfd"
    bad = b.post("/nflow_login", form={**form.hidden, "username": "mallory", "password": "x"})
    assert "Error Login" in bad.text
    ok = b.post("/nflow_login", form={**form.hidden, "username": "ana", "password": "ana"})
    assert "window.location.href = '/home'" in ok.text

    page = b.get("/home")
    assert page.status == 200
    assert 'action="/home/nftk/Datos%20Personales"' in page.text
    page = b.submit({"nombre": "Ana"})
    assert "Paso 2" in page.text

    out = b.get("/logout")
    assert out.status == 200 and '<form method="GET" action="/home">' in out.text
    assert b.get("/home").status == 307


def test_cookie_replayed_after_logout_is_rejected(make: MakeHarness) -> None:
    h = make(
        COMPAT / "home_home_auth_multistep_form_wizard.json",
        COMPAT / "login_nflow_login_form.json",
        COMPAT / "login_logout.json",
        support=SQLITE_SUPPORT,
    )
    from nflow.passwords import hash_password

    h.store("put_user", "ana", hash_password("ana"))
    b = Browser(h)
    b.get("/home")
    form = parse_form(b.get("/nflow_login").text)
    b.post("/nflow_login", form={**form.hidden, "username": "ana", "password": "ana"})
    assert b.get("/home").status == 200
    stolen = dict(b.cookies)
    b.get("/logout")
    thief = Browser(h)
    thief.cookies = stolen
    assert thief.get("/home").status == 307


def test_tampered_or_foreign_cookie_is_ignored(make: MakeHarness) -> None:
    doc = app_doc(
        s1=starter("s1", "/set", "a"),
        s2=starter("s2", "/get", "b"),
        a=js(
            "a",
            "function main(){ set_session('prefs', 'color', 'blue'); set_profile({username: 'ana'}); c.String(200, 'ok') }",
        ),
        b=js(
            "b",
            "function main(){ c.JSON(200, {color: get_session('prefs', 'color'), profile: get_profile()}) }",
        ),
    )
    h = make(doc)
    b = Browser(h)
    b.get("/set")
    assert b.get("/get").json() == {"color": "blue", "profile": {"username": "ana"}}
    for name, value in list(b.cookies.items()):
        flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
        b.cookies[name] = flipped
    assert b.get("/get").json() == {"color": "", "profile": {}}
    # A cookie forged without the key, or by the original's hard-coded "secret", means nothing.
    b.cookies = {"auth-session": "MTY4OTk1|forged|sig", "prefs": "nf1.AAAA"}
    assert b.get("/get").json() == {"color": "", "profile": {}}


def test_a_non_standard_cookie_does_not_wipe_the_others(make: MakeHarness) -> None:
    # Parsed as Go does: only a malformed cookie is skipped; a space in a value is accepted.
    doc = app_doc(
        s1=starter("s1", "/set", "a"),
        s2=starter("s2", "/get", "b"),
        a=js("a", "function main(){ set_profile({username: 'ana'}); c.String(200, 'ok') }"),
        b=js(
            "b",
            "function main(){ c.JSON(200, {profile: get_profile(), prefs: c.Cookie('prefs').value, all: c.Cookies().length}) }",
        ),
    )
    h = make(doc)
    b = Browser(h)
    b.get("/set")
    session = "; ".join(f"{k}={v}" for k, v in b.cookies.items())
    for header in (
        f"prefs=a b; {session}",
        f'prefs="a b"; we(ird=1; {session}; bad="x\\y"',
        f"prefs=a b;{session};;=orphan",
    ):
        r = h.request("GET", "/get", headers=[("Cookie", header)])
        assert r.json() == {
            "profile": {"username": "ana"},
            "prefs": "a b",
            "all": 1 + len(b.cookies),
        }, header


def test_resume_refused_for_other_app_or_orphan(make: MakeHarness) -> None:
    h = make(COMPAT / "app_nflow_sqlite_full.json", support=SQLITE_SUPPORT)
    b = Browser(h)
    # 60135809 is the login form's Validate Login step: not a step of /pepe11.
    r = b.post("/pepe11", form={"nflow_next_node_run": "60135809-d795-4e1a-a9b0-81c5c8ae0bfd"})
    assert r.status == 400
    orphan = next(p for p in h.runtime.problems if "orphan" in p.message).node
    r = b.post("/pepe11", form={"nflow_next_node_run": orphan})
    assert r.status == 400 and "cannot resume" in r.json()["message"]


def test_user_input_is_escaped_in_pages(make: MakeHarness) -> None:
    h = make(COMPAT / "home_pepe11_multistep_form_wizard.json", support=SQLITE_SUPPORT)
    b = Browser(h)
    b.get("/pepe11")
    page = b.submit({"nombre": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in page.text


def test_twilio_flow_with_twilio_disabled(make: MakeHarness) -> None:
    h = make(
        COMPAT / "examples_twilio_otp_initsql.json",
        support=(SUPPORT / "modules_initsql.json", SUPPORT / "templates_initsql.json"),
        extra="[twilio]\nenable = false\n",
    )
    b = Browser(h)
    page = b.get("/twilio")
    assert page.status == 200 and "phone" in parse_form(page.text).fields
    page = b.submit({"phone": "+5491100000000"})
    assert "code" in parse_form(page.text).fields
    done = b.submit({"code": "123456"})
    assert done.json() == {
        "code": "123456",
        "phone": "+5491100000000",
        "twilio_phone": "+5491100000000",
    }


def test_missing_auth_trigger_file_is_a_start_error(db_url: str, tmp_path: Path) -> None:
    from nflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"auth\.trigger"):
        Harness(db_url, tmp_path, toml=f'[auth]\ntrigger = "{tmp_path / "nope.js"}"\n')


def test_custom_auth_trigger_can_reroute(make: MakeHarness, tmp_path: Path) -> None:
    trigger = tmp_path / "auth.js"
    trigger.write_text(
        "function auth(){ if (header['X-Key'] != 'k1') { c.JSON(403, {denied: true}); next = 'break' } }"
    )
    doc = app_doc(
        s=starter("s", "/secure", "a", nflow_auth="true"),
        a=js("a", "function main(){ c.JSON(200, {secret: 42}) }"),
    )
    h = make(doc, extra=f'[auth]\ntrigger = "{trigger}"\n')
    assert h.request("GET", "/secure").status == 403
    assert h.request("GET", "/secure", headers=[("X-Key", "k1")]).json() == {"secret": 42}


def test_tracker_writes_rows_for_form_flows(make: MakeHarness) -> None:
    h = make(
        COMPAT / "home_pepe11_multistep_form_wizard.json",
        support=SQLITE_SUPPORT,
        extra="[tracker]\nenabled = true\nbatch_size = 2\nflush_interval = 50\n",
    )
    b = Browser(h, client="10.1.2.3:4444")
    b.get("/pepe11", headers=[("User-Agent", "tracker-test")])
    b.submit({"nombre": "Ana"})
    h.run(h.runtime.services.tracker.close())  # flush what is queued
    rows = h.store(
        "run_sql",
        "SELECT log_id, box_id, box_name, box_type, url, connection_next, order_box, payload, ip, user_agent, duration FROM tracker ORDER BY order_box",
    )
    assert [r["box_name"] for r in rows] == ["Datos Personales", "Paso 2"]
    assert [r["order_box"] for r in rows] == [1, 2]
    assert len({r["log_id"] for r in rows}) == 1, "one browser, one log id"
    first = rows[0]
    assert first["box_id"].startswith("1bab77cc")
    assert first["box_type"] == "js" and first["url"] == "/pepe11"
    assert first["connection_next"] == "012715af-7917-4a12-8afc-b5f5406d4094"
    assert first["ip"] == "10.1.2.3:4444" and first["user_agent"] == "tracker-test"
    assert first["duration"].endswith("m")
    assert '"break":true' in first["payload"]
