"""Editing in the studio: add from the palette, connect, move, edit fields and code, delete,
undo and redo, save as a new version, and a save that lost a race answered with a reload
prompt."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from .conftest import COMPAT, Studio, StudioServer


def home(server: StudioServer, app: str) -> dict[str, Any]:
    data: dict[str, Any] = server.app(app)["document"]["drawflow"]["Home"]["data"]
    return data


def drag(page: Page, source: Any, target: Any) -> None:
    a = source.bounding_box()
    b = target.bounding_box()
    assert a is not None and b is not None
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=8)
    page.mouse.up()


def test_add_connect_edit_save_and_reload(studio: Studio, server: StudioServer) -> None:
    page = studio.open("edit_me")
    version = page.locator("body").get_attribute("data-version")
    before = set(home(server, "edit_me"))
    page.locator('.palette-list button[data-module="_js_code"]').click()
    boxes = page.locator("svg.canvas [data-node-id]")
    expect(boxes).to_have_count(len(before) + 1)
    new_id = next(
        i for i in boxes.evaluate_all("els => els.map(e => e.dataset.nodeId)") if i not in before
    )
    # Connect lonely's output to the new node's input by dragging between the ports.
    drag(page, studio.node("lonely").locator(".port.out"), studio.node(new_id).locator(".port.in"))
    expect(page.locator(f'path.wire[data-from="lonely"][data-to="{new_id}"]')).to_have_count(1)
    studio.node(new_id).click()
    page.locator("#node-panel input[name=name_box]").fill("added in the studio")
    page.locator("#node-panel input[name=name_box]").press("Tab")
    page.locator("#node-panel textarea.code").fill("function main() {\n  payload.added = 1;\n}\n")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_contain_text("saved edit_me")
    assert page.locator("body").get_attribute("data-version") != version

    stored = home(server, "edit_me")
    assert stored[new_id]["data"]["name_box"] == "added in the studio"
    assert stored[new_id]["data"]["code"] == "function main() {\n  payload.added = 1;\n}\n"
    assert stored["lonely"]["outputs"]["output_1"]["connections"] == [
        {"node": new_id, "output": "input_1"}
    ]
    assert stored[new_id]["inputs"]["input_1"]["connections"] == [
        {"node": "lonely", "input": "output_1"}
    ]

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(studio.node(new_id).locator("text.title")).to_have_text("added in the studio")
    expect(page.locator(f'path.wire[data-from="lonely"][data-to="{new_id}"]')).to_have_count(1)


def test_unchanged_save_gives_back_identical_data_and_outputs(
    studio: Studio, server: StudioServer
) -> None:
    import json

    page = studio.open("wizard")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_contain_text("saved wizard")
    original = json.loads((COMPAT / "home_pepe11_multistep_form_wizard.json").read_text())
    stored = server.app("wizard")["document"]
    for tab, body in original["drawflow"].items():
        for nid, node in body["data"].items():
            again = stored["drawflow"][tab]["data"][nid]
            assert again["data"] == node["data"]
            assert again["outputs"] == node["outputs"]
            assert again["html"] == node["html"]


def test_move_delete_disconnect_undo_redo(studio: Studio, server: StudioServer) -> None:
    page = studio.open("undo_me")
    node = studio.node("lonely")
    start = node.get_attribute("transform")
    box = node.locator("rect.body").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 90, steps=25)
    page.mouse.up()
    moved = node.get_attribute("transform")
    assert moved != start
    # Delete a connection (select the wire, Delete) and a node (button).
    page.locator("path.wire-hit").first.dispatch_event("pointerdown", {"button": 0, "pointerId": 1})
    page.locator("svg.canvas").dispatch_event("pointerup", {"button": 0, "pointerId": 1})
    wires = page.locator("path.wire:not(.temp)")
    count = wires.count()
    page.locator("#delete").click()
    expect(wires).to_have_count(count - 1)
    studio.node("boom").click()
    page.get_by_role("button", name="Delete node").click()
    expect(studio.node("boom")).to_have_count(0)

    page.get_by_role("button", name="Undo").click()
    expect(studio.node("boom")).to_have_count(1)
    page.get_by_role("button", name="Undo").click()
    expect(wires).to_have_count(count)
    page.get_by_role("button", name="Undo").click()
    expect(node).to_have_attribute("transform", start or "")
    page.get_by_role("button", name="Redo").click()
    expect(node).to_have_attribute("transform", moved or "")
    page.keyboard.press("Control+Shift+Z")
    expect(wires).to_have_count(count - 1)
    # Nothing was saved: the stored app still has the node.
    assert "boom" in home(server, "undo_me")


def test_save_after_someone_else_saved_prompts_a_reload(
    studio: Studio, server: StudioServer
) -> None:
    page = studio.open("conflict_me")
    # Someone else saves a change meanwhile.
    current = server.api.get("/apps/conflict_me")
    doc = current.json()["document"]
    doc["drawflow"]["Home"]["data"]["lonely"]["data"]["name_box"] = "changed elsewhere"
    r = server.api.put(
        "/apps/conflict_me", json={"document": doc}, headers={"If-Match": current.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    studio.node("answer").click()
    page.locator("#node-panel input[name=name_box]").fill("my edit")
    page.locator("#node-panel input[name=name_box]").press("Tab")
    page.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("changed on the server")
    dialog.get_by_role("button", name="Reload").click()
    expect(studio.node("lonely").locator("text.title")).to_have_text("changed elsewhere")
    expect(studio.node("answer").locator("text.title")).to_have_text("answer")
    assert home(server, "conflict_me")["answer"]["data"]["name_box"] == "answer"


def test_code_findings_show_at_their_line(studio: Studio) -> None:
    page = studio.open("demo")
    studio.node("answer").click()
    page.locator("#node-panel textarea.code").fill(
        "function main() {\n  var ok = 1;\n  payload.x = (;\n}\n"
    )
    page.locator("#node-panel textarea.code").blur()
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#node-panel .gutter .has-finding")).to_have_count(1)
    line = page.locator("#node-panel .gutter .has-finding").get_attribute("data-line")
    assert line == "3"
    expect(page.locator("#node-panel .findings li").first).to_contain_text("line 3")
    expect(studio.node("answer").locator(".finding-badge")).to_have_count(1)
