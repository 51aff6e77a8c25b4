// The runs list: recorded runs filtered by app, status and version.

import { api } from "./api.js";
import { clear, el, notify } from "./dom.js";

export class RunsView {
  /** handlers: openRun(id), apps() -> names */
  constructor(host, handlers) {
    this.host = host;
    this.handlers = handlers;
    this.app = el("select", { name: "run-app", "aria-label": "app" });
    this.status = el(
      "select",
      { name: "run-status", "aria-label": "status" },
      ["", "ok", "error", "limit"].map((s) => el("option", { value: s, text: s || "any status" })),
    );
    this.version = el("input", { name: "run-version", placeholder: "version", "aria-label": "version" });
    this.table = el("table", { class: "runs" });
    const refresh = el("button", { text: "Refresh", onclick: () => this.load() });
    for (const control of [this.app, this.status]) control.addEventListener("change", () => this.load());
    this.version.addEventListener("change", () => this.load());
    host.append(el("div", { class: "filters" }, [this.app, this.status, this.version, refresh]), this.table);
  }

  setApps(names, current) {
    clear(this.app).append(el("option", { value: "", text: "any app" }));
    for (const name of names) this.app.append(el("option", { value: name, text: name }));
    this.app.value = current || "";
  }

  async load() {
    // Filters changed quickly: only the answer to the latest question is shown.
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    let runs;
    try {
      runs = await api.runs({
        app: this.app.value,
        status: this.status.value,
        version: this.version.value.trim(),
        limit: 200,
      });
    } catch (err) {
      notify(`runs: ${err.message}`, "error");
      return;
    }
    if (ticket !== this.ticket) return;
    clear(this.table).append(
      el("tr", {}, ["started", "app", "request", "status", "steps", "version"].map((h) => el("th", { text: h }))),
    );
    for (const r of runs) {
      this.table.append(
        el(
          "tr",
          { class: `run ${r.status}`, dataset: { runId: r.id }, onclick: () => this.handlers.openRun(r.id) },
          [
            el("td", { text: (r.started_at || "").replace("T", " ").slice(0, 23) }),
            el("td", { text: r.app }),
            el("td", { text: `${r.method} ${r.path} → ${r.response_status ?? "-"}` }),
            el("td", { class: "status", text: r.status }),
            el("td", { text: r.steps }),
            el("td", { class: "version", text: String(r.version).slice(0, 12) }),
          ],
        ),
      );
    }
    if (!runs.length) this.table.append(el("tr", {}, [el("td", { colspan: 6, text: "no run matches" })]));
  }
}
