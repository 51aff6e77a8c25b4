// JSON values shown safely and in bounded size: a large value shows its first part and a
// "show more" button, so a megabyte payload never freezes the page.

import { el } from "./dom.js";

export const CHUNK = 2000;
const TRUNCATED_KEY = "nflow_truncated";

function pretty(value) {
  if (value === undefined) return "(nothing)";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Did the server cut this value when it recorded it? */
export function serverTruncated(value) {
  if (value && typeof value === "object") {
    if (Object.hasOwn(value, TRUNCATED_KEY)) return true;
    return Object.values(value).some(serverTruncated);
  }
  return typeof value === "string" && /…\[truncated \d+ bytes\]$/.test(value);
}

/** A <pre> of the value, CHUNK characters at a time. */
export function jsonView(value, { label } = {}) {
  const text = typeof value === "string" ? value : pretty(value);
  const pre = el("pre", { class: "json" });
  const box = el("div", { class: "json-box" }, [label ? el("h4", { text: label }) : null, pre]);
  let shown = 0;
  const more = el("button", { class: "show-more", text: "show more" });
  const step = () => {
    shown = Math.min(text.length, shown + CHUNK);
    pre.textContent = text.slice(0, shown);
    if (shown >= text.length) more.remove();
    else more.textContent = `show more (${text.length - shown} more characters)`;
  };
  more.addEventListener("click", step);
  step();
  if (shown < text.length) box.append(more);
  if (serverTruncated(value)) {
    box.append(
      el("p", {
        class: "note",
        text: "Part of this value was cut when it was recorded (history.max_value_bytes).",
      }),
    );
  }
  return box;
}

/** Top-level changes between two payloads: [{key, op, before, after}]. */
export function diff(before, after) {
  const a = before && typeof before === "object" && !Array.isArray(before) ? before : {};
  const b = after && typeof after === "object" && !Array.isArray(after) ? after : {};
  const out = [];
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const inA = Object.hasOwn(a, key);
    const inB = Object.hasOwn(b, key);
    if (inA && !inB) out.push({ key, op: "removed", before: a[key] });
    else if (!inA && inB) out.push({ key, op: "added", after: b[key] });
    else if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      out.push({ key, op: "changed", before: a[key], after: b[key] });
    }
  }
  return out;
}

function short(value) {
  const text = value === undefined ? "" : JSON.stringify(value) ?? String(value);
  return text.length > 200 ? text.slice(0, 199) + "…" : text;
}

export function diffView(changes) {
  if (!changes.length) return el("p", { class: "diff-empty", text: "no change to the payload" });
  return el(
    "table",
    { class: "diff" },
    changes.map((c) =>
      el("tr", { class: `diff-${c.op}`, dataset: { key: c.key } }, [
        el("td", { text: c.op === "added" ? "+" : c.op === "removed" ? "−" : "~" }),
        el("td", { class: "key", text: c.key }),
        el("td", { text: short(c.before) }),
        el("td", { text: short(c.after) }),
      ]),
    ),
  );
}
