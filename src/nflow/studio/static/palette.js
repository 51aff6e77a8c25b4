// The palette: the modules table as the designer's list of boxes to add. A module's stored
// form markup is not used; a new node gets the module's `param` as its data.

import { clear, el } from "./dom.js";

const BUILTIN = [
  { name: "starter", title: "Http Start", inputs: 0, outputs: 1, color: "darkcyan",
    data: { type: "starter", name_box: "", method: "GET", urlpattern: "/new", nflow_auth: "false" } },
  { name: "_js_code", title: "JS Code", inputs: 1, outputs: 1, color: "darkred",
    data: { type: "js", name_box: "", code: "function main() {\n  \n}\n", nflow_auth: "false" } },
  { name: "_goroutine", title: "Parallel", inputs: 1, outputs: 2, color: "darkmagenta",
    data: { type: "gorutine", name_box: "", nflow_auth: "false" } },
];

function count(value, fallback) {
  if (value === null) return 0;
  const n = Number(value);
  if (!Number.isFinite(n)) return fallback;
  return n < 0 ? 1 : n; // -1: "ask for the number": start with one, "Add output" adds more
}

/** A row of GET /modules as {name, title, inputs, outputs, color, data}. */
export function paletteEntry(row) {
  const manifest = row.manifest || row.mod || row.module || row;
  const param = manifest.param || row.param || {};
  const data = { ...param };
  if (!data.type) data.type = row.type || "js";
  if (data.type === "js" && !("code" in data) && !("script" in data)) data.script = row.name;
  if (!("name_box" in data)) data.name_box = "";
  return {
    name: String(row.name),
    title: String(manifest.title || row.title || row.name),
    inputs: count(manifest.in ?? row.in, 1),
    outputs: count(manifest.out ?? row.out, 1),
    color: manifest.boxcolor || row.boxcolor || null,
    hidden: !!(manifest.hide || row.hide),
    data,
  };
}

export class Palette {
  /** handlers: add(entry) */
  constructor(host, handlers) {
    this.handlers = handlers;
    this.entries = BUILTIN;
    this.search = el("input", { type: "search", placeholder: "search modules", "aria-label": "search modules" });
    this.list = el("ul", { class: "palette-list" });
    this.search.addEventListener("input", () => this.render());
    host.append(el("h3", { text: "Modules" }), this.search, this.list);
    this.render();
  }

  setModules(rows) {
    const seen = new Set();
    const entries = [];
    for (const row of rows) {
      const entry = paletteEntry(row);
      if (entry.hidden || seen.has(entry.name)) continue;
      seen.add(entry.name);
      entries.push(entry);
    }
    for (const b of BUILTIN) if (!seen.has(b.name) && !entries.some((e) => e.data.type === b.data.type && e.data.type !== "js")) entries.push(b);
    this.entries = entries.sort((a, b) => a.title.localeCompare(b.title));
    this.render();
  }

  colorOf(name) {
    return this.entries.find((e) => e.name === name)?.color || null;
  }

  render() {
    const q = this.search.value.trim().toLowerCase();
    clear(this.list);
    for (const entry of this.entries) {
      if (q && !entry.title.toLowerCase().includes(q) && !entry.name.toLowerCase().includes(q)) continue;
      const item = el("li", {}, [
        el("button", {
          class: "module",
          draggable: "true",
          dataset: { module: entry.name },
          title: `add ${entry.title}`,
          text: entry.title,
          onclick: () => this.handlers.add(entry, null),
        }),
      ]);
      item.firstChild.addEventListener("dragstart", (e) => e.dataTransfer.setData("text/x-nflow-module", entry.name));
      if (entry.color) item.firstChild.style.borderLeftColor = entry.color;
      this.list.append(item);
    }
  }

  entry(name) {
    return this.entries.find((e) => e.name === name);
  }
}
