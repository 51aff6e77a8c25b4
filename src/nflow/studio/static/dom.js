// DOM helpers. Every text from a document, a run or a server answer goes through
// textContent or an attribute: nothing here parses a string as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of [].concat(children || [])) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("button", {text: "Save", onclick: f}). */
export function el(tag, attrs, children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag, attrs, children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** A status message in the header bar; kind: "info" | "error" | "ok". */
export function notify(message, kind = "info") {
  const bar = $("#status");
  if (!bar) return;
  bar.textContent = message;
  bar.dataset.kind = kind;
}

/**
 * A modal question with buttons; resolves with the chosen button's value.
 * Used instead of window.confirm so the page never blocks on a native dialog.
 */
export function ask(title, message, buttons) {
  return new Promise((resolve) => {
    const box = el("div", { class: "dialog", role: "dialog", "aria-modal": "true" });
    const done = (value) => {
      box.remove();
      resolve(value);
    };
    fill(box, {}, [
      el("div", { class: "dialog-body" }, [
        el("h2", { text: title }),
        el("p", { text: message }),
        el(
          "div",
          { class: "dialog-buttons" },
          buttons.map((b) => el("button", { text: b.label, onclick: () => done(b.value) })),
        ),
      ]),
    ]);
    document.body.append(box);
    box.querySelector("button")?.focus();
  });
}

/** Element.append, skipping null and undefined (which append would turn into text). */
export function append(node, ...children) {
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
