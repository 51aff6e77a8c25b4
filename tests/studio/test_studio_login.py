"""With ``[studio] login = true`` the page asks for an nflow user of a studio role before it
shows anything, and logging out asks again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from .apps import demo
from .conftest import Studio, StudioServer, serve

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    yield from serve(
        tmp_path_factory,
        {"demo": demo()},
        studio="login = true\n",
        users=(("dev", PASSWORD, "developer"), ("clerk", PASSWORD, "ROL_USER")),
    )


def test_login_with_a_developer_then_log_out(studio: Studio) -> None:
    page = studio.page
    page.goto(f"{studio.server.url}/_nflow/studio#app=demo")
    form = page.locator("form.login")
    expect(form).to_be_visible()
    expect(page.locator("[data-node-id]")).to_have_count(0)
    # A user without a studio role is refused like a wrong password.
    form.locator("input[name=username]").fill("clerk")
    form.locator("input[name=password]").fill(PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    expect(form.locator(".error")).to_contain_text("wrong user name or password")
    form.locator("input[name=username]").fill("dev")
    form.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_have_attribute("data-app", "demo")
    expect(form).to_have_count(0)
    expect(page.locator("[data-node-id]")).to_have_count(7)
    expect(page.locator("#user")).to_have_text("dev (login)")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["nflow_studio"]["httpOnly"] is True
    assert cookies["nflow_studio"]["sameSite"] == "Strict"
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("form.login")).to_be_visible()
    assert "nflow_studio" not in {c["name"] for c in page.context.cookies()}
