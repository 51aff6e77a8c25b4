"""Running and debugging from the studio: the composer drives a form wizard with the
browser's cookie jar; a run's trace is painted on the canvas and linked to its timeline both
ways; the step slider travels through payloads; re-run from a step; breakpoints; the runs
list; versions, release and rollback."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .conftest import Studio, StudioServer

ANSWERS = {"nombre": "Ana", "tipo": "celular", "celular": "1155", "mail": "a@b.c", "codigo": "1111"}


def has(cls: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){cls}(\s|$)")


def send(page: Page, studio: Studio, who: str) -> None:
    studio.panel("request")
    page.locator("#panel-request input[name=var-who]").fill(who)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#panel-request button.open-trace")).to_be_visible()
    page.locator("#panel-request button.open-trace").click()
    expect(page.locator("#panel-trace .run-head")).to_be_visible()


def test_composer_drives_the_form_wizard_as_one_journey(studio: Studio) -> None:
    page = studio.open("wizard")
    studio.panel("request")
    expect(page.locator("#panel-request input[name=url]")).to_have_value("/pepe11")
    page.get_by_role("button", name="Send").click()
    for _ in range(4):
        studio.panel("request")
        fill = page.locator("#panel-request button.next-form").first
        expect(fill).to_be_visible()
        fill.click()
        for row in page.locator("#panel-request [data-rows=form] .row").all():
            name = row.get_attribute("data-name") or ""
            if name in ANSWERS:
                row.locator(".row-value").fill(ANSWERS[name])
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#panel-request button.open-trace")).to_be_visible()
    studio.panel("request")
    body = page.locator("#panel-request .response pre.json")
    expect(body).to_contain_text('"nombre": "Ana"')
    expect(body).to_contain_text('"codigo": "1111"')
    # The trace of the last request lists the wizard's requests as one journey.
    studio.panel("trace")
    expect(page.locator("#panel-trace .journey h4")).to_contain_text("5 requests")
    expect(page.locator("#panel-trace .journey-list li")).to_have_count(5)


def test_trace_paints_the_path_taken_the_failed_node_and_what_was_not_reached(
    studio: Studio,
) -> None:
    page = studio.open("demo")
    send(page, studio, "bad")
    expect(page.locator("#panel-trace .run-head")).to_have_attribute("data-status", "error")
    expect(studio.node("boom")).to_have_class(has("failed"))
    for ran in ("start", "greet", "boom"):
        expect(studio.node(ran)).to_have_class(has("ran"))
    for unreached in ("fork", "answer", "background", "lonely"):
        expect(studio.node(unreached)).to_have_class(has("dimmed"))
    expect(page.locator('path.wire[data-from="greet"][data-output="output_2"]')).to_have_class(
        has("taken")
    )
    expect(page.locator('path.wire[data-from="greet"][data-output="output_1"]')).not_to_have_class(
        has("taken")
    )
    expect(page.locator("#panel-trace .step-error")).to_contain_text("boom on purpose")


def test_trace_rows_and_canvas_nodes_link_both_ways(studio: Studio) -> None:
    page = studio.open("demo")
    send(page, studio, "ana")
    greet_row = page.locator('#panel-trace .timeline[data-lane=main] [data-node="greet"]')
    greet_row.click()
    expect(greet_row).to_have_class(has("current"))
    expect(studio.node("greet")).to_have_class(has("current"))
    studio.node("answer").click()
    expect(
        page.locator('#panel-trace .timeline[data-lane=main] [data-node="answer"]')
    ).to_have_class(has("current"))
    expect(studio.node("answer")).to_have_class(has("current"))
    expect(greet_row).not_to_have_class(has("current"))


def test_step_slider_travels_through_the_payloads(studio: Studio) -> None:
    page = studio.open("demo")
    send(page, studio, "ana")
    rows = page.locator("#panel-trace .timeline[data-lane=main] li")
    greet = int(
        page.locator('#panel-trace .timeline[data-lane=main] [data-node="greet"]').get_attribute(
            "data-step"
        )
        or -1
    )
    slider = page.locator("#panel-trace input[name=step]")
    slider.fill(str(greet))
    expect(rows.nth(greet)).to_have_class(has("current"))
    expect(studio.node("greet")).to_have_class(has("current"))
    # Time travel: what ran after this step is not painted yet.
    expect(studio.node("answer")).to_have_class(has("dimmed"))
    detail = page.locator("#panel-trace .step-detail")
    expect(detail.locator('tr.diff-added[data-key="who"]')).to_contain_text("ana")
    expect(detail.locator('tr.diff-added[data-key="big"]')).to_have_count(1)
    after = detail.locator(".json-box", has_text="payload after")
    more = after.locator("button.show-more")
    expect(more).to_be_visible()
    shown = len(after.locator("pre").inner_text())
    more.click()
    assert len(after.locator("pre").inner_text()) > shown
    slider.fill(str(greet + 1))
    expect(studio.node("fork")).to_have_class(has("current"))
    expect(studio.node("greet")).not_to_have_class(has("current"))
    expect(rows.nth(greet + 1)).to_have_class(has("current"))


def test_rerun_from_a_step_opens_the_new_run(studio: Studio) -> None:
    page = studio.open("demo")
    send(page, studio, "ana")
    first = page.locator("#panel-trace .run-head").get_attribute("data-run-id")
    page.locator('#panel-trace .timeline[data-lane=main] [data-node="greet"]').click()
    page.get_by_role("button", name="Re-run from this step").click()
    head = page.locator("#panel-trace .run-head")
    expect(head).not_to_have_attribute("data-run-id", first or "")
    expect(head).to_contain_text(f"from run {first}")
    expect(
        page.locator('#panel-trace .timeline[data-lane=main] [data-node="answer"]')
    ).to_have_count(1)


def test_background_branch_is_a_lane(studio: Studio) -> None:
    page = studio.open("demo")
    send(page, studio, "lane")
    lane = page.locator("#panel-trace .timeline.lane")
    expect(lane).to_have_count(1)
    expect(lane.locator("li").first).to_have_attribute("data-node", "background")


def test_breakpoint_pauses_then_step_and_continue(studio: Studio) -> None:
    page = studio.open("demo")
    studio.node("greet").click()
    studio.panel("node")
    page.get_by_role("button", name="Set breakpoint").click()
    expect(studio.node("greet").locator(".breakpoint")).to_have_count(1)
    send_debug = page.locator("#panel-request input[name=var-who]")
    studio.panel("request")
    send_debug.fill("dbg")
    page.get_by_role("button", name="Send").click()
    state = page.locator("#panel-debug .debug-state")
    expect(state).to_have_attribute("data-state", "paused")
    expect(state).to_contain_text("greet")
    expect(studio.node("greet")).to_have_class(has("current"))
    page.locator("#panel-debug").get_by_role("button", name="Step").click()
    expect(state).to_contain_text("fork")
    expect(studio.node("fork")).to_have_class(has("current"))
    page.locator("#panel-debug").get_by_role("button", name="Continue").click()
    expect(state).to_have_attribute("data-state", "finished")
    expect(page.locator("#panel-debug")).to_contain_text('"done": true')


def test_runs_list_filters_by_status(studio: Studio) -> None:
    page = studio.open("demo")
    send(page, studio, "bad")
    send(page, studio, "fine")
    studio.panel("runs")
    page.locator("select[name=run-app]").select_option("demo")
    page.locator("select[name=run-status]").select_option("error")
    rows = page.locator("#panel-runs tr.run")
    expect(page.locator("#panel-runs tr.run.ok")).to_have_count(0)
    expect(page.locator("#panel-runs tr.run.error").first).to_be_visible()
    assert set(rows.locator("td.status").all_inner_texts()) == {"error"}
    page.locator("select[name=run-status]").select_option("ok")
    expect(page.locator("#panel-runs tr.run.error")).to_have_count(0)
    expect(page.locator("#panel-runs tr.run.ok").first).to_be_visible()
    assert set(rows.locator("td.status").all_inner_texts()) == {"ok"}
    version = page.locator("body").get_attribute("data-version") or ""
    page.locator("input[name=run-version]").fill("0000000000ff")
    page.locator("input[name=run-version]").press("Enter")
    expect(page.locator("#panel-runs")).to_contain_text("no run matches")
    page.locator("input[name=run-version]").fill(version[:12])
    page.locator("input[name=run-version]").press("Enter")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td.version").all_inner_texts()) == {version[:12]}
    rows.first.click()
    expect(page.locator("#panel-trace .run-head")).to_have_attribute("data-status", "ok")


def test_release_with_weights_then_rollback(studio: Studio, server: StudioServer) -> None:
    page = studio.open("release_me")
    first = page.locator("body").get_attribute("data-version") or ""
    studio.node("answer").click()
    page.locator("#node-panel input[name=name_box]").fill("second version")
    page.locator("#node-panel input[name=name_box]").press("Tab")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_contain_text("saved release_me")
    second = page.locator("body").get_attribute("data-version") or ""
    assert second != first
    studio.panel("versions")
    table = page.locator("#panel-versions table.versions")
    expect(table.locator("tr.version")).to_have_count(2)
    page.locator("#panel-versions select[name=diff-from]").select_option(first)
    page.locator("#panel-versions select[name=diff-to]").select_option(second)
    page.get_by_role("button", name="Diff").click()
    expect(page.locator("#panel-versions .diff-box")).to_contain_text("second version")
    page.locator(f'input[name="weight-{first}"]').fill("30")
    page.locator(f'input[name="weight-{second}"]').fill("70")
    page.get_by_role("button", name="Release").click()
    expect(page.locator("#panel-versions .release-now")).to_contain_text(f"{first[:12]} 30%")
    assert server.api.get("/apps/release_me/release").json()["weights"] == {first: 30, second: 70}
    # Rollback ends the split: one version serves everything again, as the page shows.
    page.get_by_role("button", name="Rollback").click()
    expect(page.locator("#panel-versions .release-now")).not_to_contain_text("30%")
    served = server.api.get("/apps/release_me/release").json()["weights"]
    assert len(served) == 1 and list(served.values()) == [100]
    shown = ", ".join(f"{v[:12]} {w:g}%" for v, w in served.items())
    expect(page.locator("#panel-versions .release-now")).to_have_text(f"Served now: {shown}")


def test_conditional_breakpoint_pauses_only_when_the_payload_matches(studio: Studio) -> None:
    page = studio.open("demo")
    studio.node("fork").click()
    studio.panel("node")
    page.get_by_role("button", name="Set breakpoint").click()
    page.locator("#node-panel input[name=condition-key]").fill("who")
    page.locator("#node-panel input[name=condition-value]").fill("stop")
    page.locator("#node-panel input[name=condition-value]").press("Tab")
    studio.panel("request")
    page.locator("#panel-request input[name=var-who]").fill("go")
    page.get_by_role("button", name="Send").click()
    state = page.locator("#panel-debug .debug-state")
    expect(state).to_have_attribute("data-state", "finished")
    studio.panel("request")
    page.locator("#panel-request input[name=var-who]").fill("stop")
    page.get_by_role("button", name="Send").click()
    expect(state).to_have_attribute("data-state", "paused")
    expect(state).to_contain_text("fork")
    expect(page.locator("#panel-debug .json-box pre").first).to_contain_text('"who": "stop"')
