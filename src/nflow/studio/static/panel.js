// The node panel: a node's data fields as form controls (built from the data's keys, never
// from the module's stored form markup), its code with line numbers and the analyzer's
// findings at their line.

import { clear, el } from "./dom.js";
import * as model from "./doc.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "ANY"];

/** A textarea with a line-number gutter; findings: [{line, message, severity}]. */
export function codeEditor(value, findings, onCommit) {
  const gutter = el("div", { class: "gutter", "aria-hidden": "true" });
  const area = el("textarea", {
    class: "code",
    name: "code",
    spellcheck: "false",
    wrap: "off",
    "aria-label": "code",
  });
  area.value = value;
  const byLine = new Map();
  for (const f of findings) {
    if (!byLine.has(f.line)) byLine.set(f.line, []);
    byLine.get(f.line).push(f);
  }
  const numbers = () => {
    const lines = area.value.split("\n").length;
    clear(gutter);
    for (let i = 1; i <= lines; i++) {
      const found = byLine.get(i);
      const row = el("div", { class: found ? "line has-finding" : "line", text: i });
      row.dataset.line = String(i);
      if (found) row.title = found.map((f) => f.message).join("\n");
      gutter.append(row);
    }
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("input", numbers);
  area.addEventListener("scroll", () => (gutter.scrollTop = area.scrollTop));
  area.addEventListener("change", () => onCommit(area.value));
  numbers();
  const list = el(
    "ul",
    { class: "findings" },
    findings.map((f) =>
      el("li", {
        class: `finding ${f.severity || "error"}`,
        dataset: { line: f.line ?? "" },
        text: `line ${f.line ?? "?"}${f.column ? ":" + f.column : ""}: ${f.message}`,
      }),
    ),
  );
  return el("div", { class: "code-box" }, [el("div", { class: "code-editor" }, [gutter, area]), list]);
}

/**
 * "Pause only when payload <key> equals <value>": a condition is data the server tests, never
 * code. The value reads as JSON when it is JSON (1, true, "x"), else as a string.
 */
function conditionRow(condition, set) {
  const key = el("input", { name: "condition-key", placeholder: "payload key", "aria-label": "condition key" });
  const value = el("input", { name: "condition-value", placeholder: "value", "aria-label": "condition value" });
  key.value = condition?.key ?? "";
  value.value = condition === null || condition === undefined ? "" : typeof condition.equals === "string" ? condition.equals : JSON.stringify(condition.equals);
  const commit = () => {
    let equals = value.value;
    try {
      equals = JSON.parse(value.value);
    } catch {
      /* a plain string */
    }
    set(key.value.trim() ? { key: key.value.trim(), equals } : null);
  };
  key.addEventListener("change", commit);
  value.addEventListener("change", commit);
  return el("div", { class: "condition" }, [
    el("span", { text: "pause only when payload" }),
    key,
    el("span", { text: "equals" }),
    value,
  ]);
}

function field(key, value, commit) {
  const label = el("label", { class: "field" }, [el("span", { text: key })]);
  let input;
  if (key === "code") return null;
  if (value === "true" || value === "false" || typeof value === "boolean") {
    input = el("input", { type: "checkbox", name: key });
    input.checked = value === "true" || value === true;
    // Stored as the designer stored it: the strings "true" and "false".
    input.addEventListener("change", () =>
      commit(typeof value === "boolean" ? input.checked : String(input.checked)),
    );
  } else if (key === "method") {
    input = el(
      "select",
      { name: key },
      METHODS.map((m) => el("option", { value: m, text: m })),
    );
    if (!METHODS.includes(String(value))) input.append(el("option", { value, text: value }));
    input.value = String(value);
    input.addEventListener("change", () => commit(input.value));
  } else if (value !== null && typeof value === "object") {
    input = el("textarea", { name: key, class: "json-field", rows: 3 });
    input.value = JSON.stringify(value, null, 1);
    input.addEventListener("change", () => {
      try {
        commit(JSON.parse(input.value));
        input.classList.remove("invalid");
      } catch {
        input.classList.add("invalid");
      }
    });
  } else {
    const multi = typeof value === "string" && value.includes("\n");
    input = el(multi ? "textarea" : "input", { name: key, type: multi ? undefined : "text" });
    input.value = value === null || value === undefined ? "" : String(value);
    // Numbers stay numbers when they still read as one.
    input.addEventListener("change", () =>
      commit(typeof value === "number" && input.value.trim() !== "" && !isNaN(Number(input.value))
        ? Number(input.value)
        : input.value),
    );
  }
  label.append(input);
  return label;
}

/**
 * Fill `host` with the panel for node `id` of `tab`. handlers: change(description, mutate),
 * remove(), toggleBreakpoint(), isBreakpoint, findings (this node's).
 */
export function showNode(host, doc, tab, id, handlers) {
  clear(host);
  const node = model.nodes(doc, tab)[id];
  if (!node) {
    host.append(el("p", { class: "hint", text: "Select a node to edit it." }));
    return;
  }
  const data = (node.data ||= {});
  host.append(
    el("h3", { text: model.nodeTitle(node) }),
    el("p", { class: "node-meta", text: `${model.nodeType(node)} · ${id}` }),
  );
  const form = el("div", { class: "fields" });
  for (const [key, value] of Object.entries(data)) {
    const control = field(key, value, (v) =>
      handlers.change(`edit ${key}`, () => {
        data[key] = v;
      }),
    );
    if (control) form.append(control);
  }
  host.append(form);
  if (Object.hasOwn(data, "code") || model.nodeType(node) === "js") {
    host.append(el("h4", { text: "Code" }));
    host.append(
      codeEditor(String(data.code ?? ""), handlers.findings, (text) =>
        handlers.change("edit code", () => {
          data.code = text;
        }),
      ),
    );
  } else if (handlers.findings.length) {
    host.append(codeEditor("", handlers.findings, () => {}));
  }
  if (handlers.isBreakpoint) host.append(conditionRow(handlers.condition, handlers.setCondition));
  host.append(
    el("div", { class: "buttons" }, [
      el("button", {
        text: handlers.isBreakpoint ? "Remove breakpoint" : "Set breakpoint",
        name: "breakpoint",
        onclick: handlers.toggleBreakpoint,
      }),
      el("button", {
        text: "Add output",
        onclick: () =>
          handlers.change("add output", () => {
            const n = model.portNames(node, "outputs").length + 1;
            node.outputs[`output_${n}`] = { connections: [] };
          }),
      }),
      el("button", { text: "Delete node", class: "danger", onclick: handlers.remove }),
    ]),
  );
}
