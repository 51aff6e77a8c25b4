// A debug session: the request runs paused at the breakpoints; the page shows where it
// stopped and the payload the node is about to get, and steps or continues it.

import { api } from "./api.js";
import { append, clear, el, notify } from "./dom.js";
import { jsonView } from "./json.js";

/** The answer with its body parsed when it is JSON, so it reads as the client would see it. */
function responseShown(response) {
  try {
    return { ...response, body: JSON.parse(response.body) };
  } catch {
    return response;
  }
}

export class DebugView {
  /** handlers: paint(state|null), focusNode(id), openRun(id), startersOf(node) */
  constructor(host, handlers) {
    this.host = host;
    this.handlers = handlers;
    this.session = null;
  }

  async start(spec) {
    clear(this.host).append(el("p", { text: "starting a debug session…" }));
    try {
      this.render(await api.debugStart(spec));
    } catch (err) {
      clear(this.host).append(el("p", { class: "error", text: `debug session refused: ${err.message}` }));
      notify(err.message, "error");
    }
  }

  async go(command) {
    try {
      this.render(await api.debugGo(this.session.id, command));
    } catch (err) {
      notify(err.message, "error");
    }
  }

  render(session) {
    this.session = session;
    const paused = session.state === "paused";
    const steps = session.steps || [];
    clear(this.host);
    append(
      this.host,
      el("h3", { text: "Debug session" }),
      el("p", {
        class: "debug-state",
        dataset: { state: session.state },
        text: paused
          ? `paused before ${session.paused_at.name || session.paused_at.node} (${session.paused_at.type})`
          : session.state,
      }),
      el("div", { class: "buttons" }, [
        el("button", { text: "Continue", name: "continue", disabled: !paused, onclick: () => this.go("continue") }),
        el("button", { text: "Step", name: "step", disabled: !paused, onclick: () => this.go("step") }),
        el("button", { text: "Abort", name: "abort", disabled: !paused, onclick: () => this.go("abort") }),
        !paused && session.wid
          ? el("button", { text: "Open the trace", onclick: () => this.handlers.openRun(session.wid) })
          : null,
      ]),
      el(
        "ol",
        { class: "timeline debug-steps" },
        steps.map((s, i) =>
          el("li", { class: s.error ? "row failed" : "row", dataset: { step: i, node: s.node } }, [
            el("span", { class: "n", text: i }),
            el("span", { class: "type", text: s.type }),
            el("span", { class: "next", text: s.next ? `→ ${s.next}` : "end" }),
          ]),
        ),
      ),
      paused ? jsonView(session.payload, { label: "payload the node gets" }) : null,
      session.response ? jsonView(responseShown(session.response), { label: "response" }) : null,
      session.error ? el("p", { class: "error", text: session.error.message }) : null,
    );
    const first = steps[0]?.node ?? session.paused_at?.node;
    const entry = first ? this.handlers.startersOf(first) : [];
    const ran = new Set([...entry, ...steps.map((s) => s.node)]);
    const taken = new Set([
      ...entry.map((s) => `${s}|output_1`),
      ...steps.filter((s) => s.next).map((s) => `${s.node}|${s.next}`),
    ]);
    const failed = steps.find((s) => s.error)?.node ?? null;
    const current = paused ? session.paused_at.node : null;
    this.handlers.paint({ ran: current ? new Set([...ran, current]) : ran, taken, failed, current });
    if (current) this.handlers.focusNode(current);
  }
}
