// The trace of a recorded run: a timeline of steps linked both ways with the canvas, a step
// slider (time travel) with the payload before and after and their difference, re-run from
// a step, the other requests of its journey and its background branches as lanes.

import { append, clear, el } from "./dom.js";
import { diff, diffView, jsonView } from "./json.js";

/** What the canvas shows for the run up to step `upTo` (inclusive). */
export function paintFor(steps, upTo, starters = []) {
  const ran = new Set();
  const taken = new Set();
  // A starter is not a step of its own: it matched, and its output led to the first step.
  for (const starter of starters) {
    ran.add(starter);
    taken.add(`${starter}|output_1`);
  }
  let failed = null;
  for (const step of steps.slice(0, upTo + 1)) {
    ran.add(step.node);
    if (step.next) taken.add(`${step.node}|${step.next}`);
    if (step.error) failed = step.node;
  }
  return { ran, taken, failed, current: steps[upTo]?.node ?? null };
}

function ms(value) {
  return `${Number(value || 0).toFixed(1)} ms`;
}

export class TraceView {
  /**
   * handlers: paint(state|null), focusNode(id), openRun(id), rerun(runId, step) -> Promise,
   * startersOf(node) -> ids of the starters whose output leads to that node,
   * related(run) -> Promise<{journey: summaries, lanes: runs}>.
   */
  constructor(host, handlers) {
    this.host = host;
    this.handlers = handlers;
    this.run = null;
    this.index = 0;
  }

  clear() {
    this.run = null;
    clear(this.host).append(el("p", { class: "hint", text: "Send a request or pick a run to see its trace." }));
    this.handlers.paint(null);
  }

  async show(run) {
    this.run = run;
    const steps = run.steps || [];
    this.index = Math.max(0, steps.length - 1);
    clear(this.host);
    const head = el("div", { class: "run-head", dataset: { runId: run.id, status: run.status } }, [
      el("h3", { text: `Run ${run.id}` }),
      el("p", {
        class: `run-status ${run.status}`,
        text: `${run.status} · ${run.request?.method || ""} ${run.request?.path || ""} → ${run.response?.status ?? "-"} · ${ms(run.duration_ms)} · version ${String(run.version).slice(0, 12)}`,
      }),
      run.parent ? el("p", { class: "note", text: `from run ${run.parent}` }) : null,
      run.error ? el("p", { class: "error", text: run.error }) : null,
    ]);
    this.journeyBox = el("div", { class: "journey" });
    this.slider = el("input", {
      type: "range",
      name: "step",
      min: 0,
      max: Math.max(0, steps.length - 1),
      value: this.index,
      "aria-label": "step",
    });
    this.slider.addEventListener("input", () => this.select(Number(this.slider.value)));
    this.rows = el(
      "ol",
      { class: "timeline", dataset: { lane: "main" } },
      steps.map((s, i) =>
        el(
          "li",
          {
            class: s.error ? "row failed" : "row",
            dataset: { step: i, node: s.node },
            onclick: () => this.select(i, { reveal: true }),
          },
          [
            el("span", { class: "n", text: i }),
            el("span", { class: "name", text: s.name || s.node.slice(0, 8) }),
            el("span", { class: "type", text: s.type }),
            el("span", { class: "next", text: s.next ? `→ ${s.next}` : "end" }),
            el("span", { class: "dur", text: ms(s.duration_ms) }),
          ],
        ),
      ),
    );
    this.lanesBox = el("div", { class: "lanes" });
    this.detail = el("div", { class: "step-detail" });
    this.host.append(
      head,
      this.journeyBox,
      el("label", { class: "field slider" }, [el("span", { text: "Step" }), this.slider]),
      this.rows,
      this.lanesBox,
      this.detail,
      el("details", { class: "run-io" }, [
        el("summary", { text: "request and response" }),
        jsonView(run.request, { label: "request" }),
        jsonView(run.response, { label: "response" }),
      ]),
    );
    if (!steps.length) this.detail.append(el("p", { text: "This run recorded no step." }));
    else this.select(this.index);
    this.related(run);
  }

  async related(run) {
    let found;
    try {
      found = await this.handlers.related(run);
    } catch {
      return;
    }
    if (this.run !== run) return;
    const journey = found.journey || [];
    if (journey.length > 1) {
      this.journeyBox.append(
        el("h4", { text: `Journey ${run.journey}: ${journey.length} requests` }),
        el(
          "ol",
          { class: "journey-list" },
          journey.map((r) =>
            el("li", { class: r.id === run.id ? "current" : "" }, [
              el("button", {
                class: "link",
                dataset: { runId: r.id },
                text: `${r.method} ${r.path} → ${r.response_status ?? "-"} (${r.steps} steps)`,
                onclick: () => this.handlers.openRun(r.id),
              }),
            ]),
          ),
        ),
      );
    }
    for (const lane of found.lanes || []) {
      this.lanesBox.append(
        el("h4", { text: `Background branch (run ${lane.id})` }),
        el(
          "ol",
          { class: "timeline lane", dataset: { lane: lane.id } },
          (lane.steps || []).map((s, i) =>
            el(
              "li",
              {
                class: s.error ? "row failed" : "row",
                dataset: { step: i, node: s.node, run: lane.id },
                onclick: () => this.handlers.openRun(lane.id),
              },
              [
                el("span", { class: "n", text: i }),
                el("span", { class: "name", text: s.name || s.node.slice(0, 8) }),
                el("span", { class: "type", text: s.type }),
                el("span", { class: "dur", text: ms(s.duration_ms) }),
              ],
            ),
          ),
        ),
      );
    }
  }

  /** Time travel: the canvas and the detail follow step `i`. */
  select(i, { reveal = false } = {}) {
    const steps = this.run?.steps || [];
    if (!steps.length) return;
    i = Math.max(0, Math.min(steps.length - 1, i));
    this.index = i;
    this.slider.value = String(i);
    for (const row of this.rows.children) row.classList.toggle("current", Number(row.dataset.step) === i);
    this.rows.children[i]?.scrollIntoView({ block: "nearest" });
    this.handlers.paint(paintFor(steps, i, this.handlers.startersOf(steps[0].node)));
    if (reveal) this.handlers.focusNode(steps[i].node);
    this.showStep(i);
  }

  /** A click on a canvas node: the next step that ran it after the current one. */
  selectNode(id) {
    const steps = this.run?.steps || [];
    const order = [...steps.keys()].map((k) => (this.index + 1 + k) % steps.length);
    const found = order.find((k) => steps[k].node === id);
    if (found !== undefined) this.select(found);
    return found !== undefined;
  }

  showStep(i) {
    const s = this.run.steps[i];
    clear(this.detail);
    const rerun = el("button", { text: "Re-run from this step", name: "rerun" });
    rerun.addEventListener("click", async () => {
      rerun.disabled = true;
      try {
        await this.handlers.rerun(this.run.id, i);
      } finally {
        rerun.disabled = false;
      }
    });
    append(
      this.detail,
      el("h4", { text: `Step ${i}: ${s.name || s.node} (${s.type})` }),
      el("p", { class: "step-next", text: s.next ? `took ${s.next}` : "ended the run" }),
      s.error
        ? el("div", { class: "error step-error" }, [
            el("p", { text: `${s.error.message}${s.error.line ? ` (line ${s.error.line})` : ""}` }),
            el("pre", { text: s.error.stack || "" }),
          ])
        : null,
      el("h4", { text: "Changes" }),
      // A step that failed handed no payload on: there is nothing to compare.
      s.error && (s.payload_after === null || s.payload_after === undefined)
        ? el("p", { class: "diff-empty", text: "the step failed before handing a payload on" })
        : diffView(diff(s.payload_before, s.payload_after)),
      jsonView(s.payload_before, { label: "payload before" }),
      jsonView(s.payload_after, { label: "payload after" }),
      (s.console || []).length
        ? el("div", {}, [el("h4", { text: "console" }), el("pre", { class: "console", text: s.console.join("\n") })])
        : null,
      (s.host_calls || []).length ? jsonView(s.host_calls, { label: "host calls" }) : null,
      (s.writes || []).length ? jsonView(s.writes, { label: "response writes" }) : null,
      el("div", { class: "buttons" }, [rerun]),
    );
  }
}
