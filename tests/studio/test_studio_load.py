"""The studio opens every compat document: every node of every tab drawn at its stored
position with its connections, the designer's leftovers fixed at load, and no stored markup
or script ever running in the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import COMPAT, Studio, StudioServer, serve

DOCUMENTS = sorted(
    p
    for p in [
        *COMPAT.glob("*.json"),
        *COMPAT.glob("legacy/*.json"),
        *COMPAT.glob("reconstructed/*.json"),
    ]
)

HOSTILE_HTML = (
    '<script>window.__pwned = "script"; console.log("PWNED script")</script>'
    "<img src=\"x\" onerror=\"window.__pwned = 'onerror'; alert('PWNED')\">"
    "<div onmouseover=\"window.__pwned = 'hover'\">hover me</div>"
)


def hostile() -> dict[str, Any]:
    """A document whose stored html, names and data all carry markup and handlers."""

    def node(
        nid: str, x: int, data: dict[str, Any], outputs: dict[str, Any], inputs: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": nid,
            "name": "<img src=x onerror=alert('name')>",
            "data": data,
            "class": "x\" onclick=\"window.__pwned='class'",
            "html": HOSTILE_HTML,
            "typenode": False,
            "inputs": inputs,
            "outputs": outputs,
            "pos_x": x,
            "pos_y": 100,
        }

    return {
        "drawflow": {
            "Home": {
                "data": {
                    "s1": node(
                        "s1",
                        50,
                        {
                            "type": "starter",
                            "method": "GET",
                            "urlpattern": "/hostile",
                            "name_box": "<b onclick=alert(1)>go</b>",
                        },
                        {"output_1": {"connections": [{"node": "j1", "output": "input_1"}]}},
                        {},
                    ),
                    "j1": node(
                        "j1",
                        350,
                        {
                            "type": "js",
                            "name_box": "<script>window.__pwned='data'</script>",
                            "code": "function main(){ c.JSON(200, {ok: true}) }",
                        },
                        {"output_1": {"connections": []}},
                        {"input_1": {"connections": [{"node": "s1", "input": "output_1"}]}},
                    ),
                }
            }
        }
    }


def broken() -> dict[str, Any]:
    """What the designer left: class null, no Home tab, a connection to a missing node."""
    return {
        "drawflow": {
            "Main": {
                "data": {
                    "a": {
                        "id": "a",
                        "name": None,
                        "class": None,
                        "html": "<p>a</p>",
                        "typenode": False,
                        "data": {
                            "type": "starter",
                            "method": "GET",
                            "urlpattern": "/broken",
                            "name_box": "start",
                        },
                        "inputs": {},
                        "outputs": {
                            "output_1": {"connections": [{"node": "gone", "output": "input_1"}]}
                        },
                        "pos_x": 10,
                        "pos_y": 20,
                    }
                }
            }
        }
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    apps: dict[str, Any] = {p.stem: p for p in DOCUMENTS}
    apps["hostile"] = hostile()
    apps["broken"] = broken()
    yield from serve(tmp_path_factory, apps)


def tabs_of(path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {tab: body.get("data") or {} for tab, body in doc["drawflow"].items()}


def wires(nodes: dict[str, Any]) -> int:
    return sum(
        1
        for node in nodes.values()
        for out in (node.get("outputs") or {}).values()
        for c in out.get("connections") or []
        if str(c["node"]) in nodes
    )


def test_sixteen_compat_documents_are_served() -> None:
    assert len(DOCUMENTS) == 16


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_every_compat_document_draws_every_node_and_connection(studio: Studio, path: Path) -> None:
    page = studio.open(path.stem)
    for tab, nodes in tabs_of(path).items():
        page.locator(f'#tabs button[data-tab="{tab}"]').click()
        boxes = page.locator("svg.canvas [data-node-id]")
        expect(boxes).to_have_count(len(nodes))
        expect(page.locator("svg.canvas path.wire:not(.temp)")).to_have_count(wires(nodes))
        drawn = set(boxes.evaluate_all("els => els.map(e => e.dataset.nodeId)"))
        assert drawn == set(nodes)
    assert studio.http_errors == []
    assert studio.blocked == []


def test_nodes_sit_at_their_stored_positions(studio: Studio) -> None:
    path = COMPAT / "home_pepe11_multistep_form_wizard.json"
    page = studio.open(path.stem)
    for nid, node in tabs_of(path)["Home"].items():
        assert (
            studio.node(nid).get_attribute("transform")
            == f"translate({node['pos_x']},{node['pos_y']})"
        )
    # Pan and zoom move the view, never the stored positions.
    before = page.locator("svg.canvas g.viewport").get_attribute("transform")
    page.locator("#zoom-in").click()
    assert page.locator("svg.canvas g.viewport").get_attribute("transform") != before
    box = page.locator("svg.canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 5, box["y"] + box["height"] - 5)
    page.mouse.down()
    page.mouse.move(box["x"] + 105, box["y"] + box["height"] - 55, steps=5)
    page.mouse.up()
    nid, node = next(iter(tabs_of(path)["Home"].items()))
    assert (
        studio.node(nid).get_attribute("transform") == f"translate({node['pos_x']},{node['pos_y']})"
    )


def test_stored_html_and_markup_in_data_never_run(studio: Studio, server: StudioServer) -> None:
    page = studio.open("hostile")
    expect(page.locator("svg.canvas [data-node-id]")).to_have_count(2)
    # The markup in a name shows as text.
    expect(studio.node("s1").locator("text.title")).to_have_text("<b onclick=alert(1)>go</b>")
    studio.node("j1").click()
    studio.node("j1").hover()
    expect(page.locator("#node-panel input[name=name_box]")).to_have_value(
        "<script>window.__pwned='data'</script>"
    )
    page.locator("#node-panel input[name=name_box]").hover()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img, script:not([type=module]), iframe").count() == 0
    assert not any("PWNED" in line for line in studio.console)
    assert studio.dialogs == []
    # Nothing even tried to run: the page's CSP had nothing to block.
    assert studio.blocked == []
    # The html is kept as an opaque value: a save gives it back byte for byte.
    page.locator("#node-panel input[name=name_box]").fill("renamed")
    page.locator("#node-panel input[name=name_box]").press("Tab")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("body")).not_to_have_class("dirty")
    stored = server.app("hostile")["document"]["drawflow"]["Home"]["data"]
    assert stored["j1"]["html"] == HOSTILE_HTML
    assert stored["j1"]["data"]["name_box"] == "renamed"
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_what_the_designer_left_is_fixed_at_load(studio: Studio) -> None:
    page = studio.open("broken")
    expect(page.locator("#fixes summary")).to_contain_text("made at load")
    page.locator("#fixes summary").click()
    fixes = page.locator("#fixes li").all_inner_texts()
    assert any("dropped" in f and "gone" in f for f in fixes)
    assert any("Home" in f for f in fixes)
    assert any("null" in f for f in fixes)
    expect(page.locator('#tabs button[data-tab="Home"]')).to_be_visible()
    page.locator('#tabs button[data-tab="Main"]').click()
    expect(page.locator("svg.canvas [data-node-id]")).to_have_count(1)
    expect(page.locator("svg.canvas path.wire:not(.temp)")).to_have_count(0)
