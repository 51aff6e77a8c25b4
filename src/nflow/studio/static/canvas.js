// The canvas: one tab of the document drawn in SVG at the nodes' stored positions, with pan,
// zoom, drag, connect and select. Boxes are drawn from each node's type, name and data; the
// node's stored `html` is never read.

import { clear, svg } from "./dom.js";
import * as model from "./doc.js";

const WIDTH = 190;
const HEAD = 34;
const PORT_GAP = 20;

const TYPE_COLORS = { starter: "darkcyan", js: "darkred", gorutine: "darkmagenta", wasm: "teal" };

function height(node) {
  const ports = Math.max(
    model.portNames(node, "inputs").length,
    model.portNames(node, "outputs").length,
    1,
  );
  return Math.max(58, HEAD + PORT_GAP * ports);
}

function portY(index) {
  return HEAD + PORT_GAP * index + PORT_GAP / 2 - 4;
}

function cut(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function wirePath(x1, y1, x2, y2) {
  const dx = Math.max(40, Math.abs(x2 - x1) / 2);
  return `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`;
}

export class Canvas {
  /**
   * handlers: select(id|null), change(description, mutate) (the caller snapshots for undo,
   * runs mutate and redraws), colorOf(node) -> css color or null.
   */
  constructor(host, handlers) {
    this.handlers = handlers;
    this.doc = null;
    this.tab = null;
    this.view = { x: 0, y: 0, k: 1 };
    this.selected = null; // {kind: "node", id} | {kind: "wire", wire}
    this.paintState = null;
    this.breakpoints = new Set();
    this.findings = new Map(); // node id -> count
    this.root = svg("svg", { class: "canvas", tabindex: "0", "aria-label": "flow canvas" });
    this.viewport = svg("g", { class: "viewport" });
    this.wires = svg("g", { class: "wires" });
    this.boxes = svg("g", { class: "boxes" });
    this.temp = svg("path", { class: "wire temp", d: "" });
    this.viewport.append(this.wires, this.boxes, this.temp);
    this.root.append(this.viewport);
    host.append(this.root);
    this.root.addEventListener("pointerdown", (e) => this.down(e));
    this.root.addEventListener("pointermove", (e) => this.move(e));
    this.root.addEventListener("pointerup", (e) => this.up(e));
    this.root.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    this.root.addEventListener("keydown", (e) => this.key(e));
  }

  show(doc, tab, { fit = true } = {}) {
    this.doc = doc;
    this.tab = tab;
    this.selected = null;
    this.render();
    if (fit) this.fit();
  }

  nodeElement(id) {
    return this.boxes.querySelector(`[data-node-id="${CSS.escape(id)}"]`);
  }

  render() {
    clear(this.wires);
    clear(this.boxes);
    if (!this.doc) return;
    const data = model.nodes(this.doc, this.tab);
    for (const c of model.connections(this.doc, this.tab)) {
      const a = data[c.from];
      const b = data[c.to];
      if (!a || !b) continue;
      const oi = model.portNames(a, "outputs").indexOf(c.output);
      const ii = Math.max(0, model.portNames(b, "inputs").indexOf(c.input));
      const path = svg("path", {
        class: "wire",
        d: wirePath(
          Number(a.pos_x) + WIDTH,
          Number(a.pos_y) + portY(oi),
          Number(b.pos_x),
          Number(b.pos_y) + portY(ii),
        ),
        dataset: { from: c.from, output: c.output, to: c.to, input: c.input },
      });
      const hit = svg("path", { class: "wire-hit", d: path.getAttribute("d") });
      hit.dataset.wire = JSON.stringify(c);
      this.wires.append(path, hit);
    }
    for (const [id, node] of Object.entries(data)) this.boxes.append(this.box(id, node));
    this.applyPaint();
    this.applySelection();
  }

  box(id, node) {
    const h = height(node);
    const color = this.handlers.colorOf?.(node) || TYPE_COLORS[model.nodeType(node)] || "#555";
    const g = svg("g", {
      class: "node",
      transform: `translate(${Number(node.pos_x) || 0},${Number(node.pos_y) || 0})`,
      dataset: { nodeId: id, type: model.nodeType(node) },
    });
    const title = model.nodeTitle(node);
    g.append(
      svg("title", { text: `${title} (${model.nodeType(node)}) ${id}` }),
      svg("rect", { class: "body", width: WIDTH, height: h, rx: 6 }),
      svg("rect", { class: "head", width: WIDTH, height: 22, rx: 6, fill: color }),
      svg("text", { class: "title", x: 8, y: 15, text: cut(title, 26) }),
      svg("text", { class: "sub", x: 8, y: 38, text: cut(model.nodeSubtitle(node), 28) }),
    );
    model.portNames(node, "inputs").forEach((port, i) => {
      g.append(svg("circle", { class: "port in", cx: 0, cy: portY(i), r: 6, dataset: { port } }));
    });
    model.portNames(node, "outputs").forEach((port, i) => {
      g.append(
        svg("circle", { class: "port out", cx: WIDTH, cy: portY(i), r: 6, dataset: { port } }),
        svg("text", { class: "port-label", x: WIDTH - 10, y: portY(i) + 4, text: i + 1 }),
      );
    });
    if (this.breakpoints.has(id)) {
      g.append(svg("circle", { class: "breakpoint", cx: WIDTH - 10, cy: 11, r: 5 }));
    }
    const count = this.findings.get(id);
    if (count) {
      g.append(
        svg("text", { class: "finding-badge", x: WIDTH - 24, y: 15, text: `⚠${count}` }),
      );
    }
    return g;
  }

  // --- view -------------------------------------------------------------------------

  applyView() {
    const { x, y, k } = this.view;
    this.viewport.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  zoom(factor, cx, cy) {
    const rect = this.root.getBoundingClientRect();
    cx ??= rect.width / 2;
    cy ??= rect.height / 2;
    const k = Math.min(3, Math.max(0.1, this.view.k * factor));
    const f = k / this.view.k;
    this.view = { x: cx - (cx - this.view.x) * f, y: cy - (cy - this.view.y) * f, k };
    this.applyView();
  }

  /** Everything in sight; never enlarges past 1:1. */
  fit() {
    const data = Object.values(model.nodes(this.doc, this.tab));
    const rect = this.root.getBoundingClientRect();
    if (!data.length || !rect.width) {
      this.view = { x: 0, y: 0, k: 1 };
      this.applyView();
      return;
    }
    const xs = data.map((n) => Number(n.pos_x) || 0);
    const ys = data.map((n) => Number(n.pos_y) || 0);
    const x0 = Math.min(...xs) - 30;
    const y0 = Math.min(...ys) - 30;
    const x1 = Math.max(...xs) + WIDTH + 30;
    const y1 = Math.max(...ys) + 120;
    const k = Math.min(1, rect.width / (x1 - x0), rect.height / (y1 - y0));
    this.view = { x: -x0 * k, y: -y0 * k, k };
    this.applyView();
  }

  /** Pans so the node is in sight (keeps the zoom). */
  reveal(id) {
    const node = model.nodes(this.doc, this.tab)[id];
    if (!node) return;
    const rect = this.root.getBoundingClientRect();
    const { k } = this.view;
    const sx = (Number(node.pos_x) || 0) * k + this.view.x;
    const sy = (Number(node.pos_y) || 0) * k + this.view.y;
    if (sx < 0 || sy < 0 || sx + WIDTH * k > rect.width || sy + 60 * k > rect.height) {
      this.view.x = rect.width / 2 - ((Number(node.pos_x) || 0) + WIDTH / 2) * k;
      this.view.y = rect.height / 2 - ((Number(node.pos_y) || 0) + 30) * k;
      this.applyView();
    }
  }

  point(e) {
    const rect = this.root.getBoundingClientRect();
    return {
      x: (e.clientX - rect.left - this.view.x) / this.view.k,
      y: (e.clientY - rect.top - this.view.y) / this.view.k,
    };
  }

  // --- pointer ----------------------------------------------------------------------

  down(e) {
    if (e.button !== 0 || !this.doc) return;
    this.root.focus({ preventScroll: true });
    const out = e.target.closest(".port.out");
    const nodeEl = e.target.closest(".node");
    const wire = e.target.closest(".wire-hit");
    if (out && nodeEl) {
      this.gesture = { kind: "connect", from: nodeEl.dataset.nodeId, output: out.dataset.port };
    } else if (nodeEl) {
      const id = nodeEl.dataset.nodeId;
      const node = model.nodes(this.doc, this.tab)[id];
      this.gesture = {
        kind: "drag",
        id,
        start: { x: e.clientX, y: e.clientY },
        origin: { x: Number(node.pos_x) || 0, y: Number(node.pos_y) || 0 },
        moved: false,
      };
      this.selectNode(id);
    } else if (wire) {
      this.selected = { kind: "wire", wire: JSON.parse(wire.dataset.wire) };
      this.applySelection();
      this.handlers.select(null);
      return;
    } else {
      this.gesture = {
        kind: "pan",
        start: { x: e.clientX, y: e.clientY },
        origin: { ...this.view },
        moved: false,
      };
    }
    this.root.setPointerCapture(e.pointerId);
  }

  move(e) {
    const g = this.gesture;
    if (!g) return;
    if (g.kind === "pan") {
      this.view.x = g.origin.x + e.clientX - g.start.x;
      this.view.y = g.origin.y + e.clientY - g.start.y;
      g.moved = true;
      this.applyView();
    } else if (g.kind === "drag") {
      const dx = (e.clientX - g.start.x) / this.view.k;
      const dy = (e.clientY - g.start.y) / this.view.k;
      if (!g.moved && Math.abs(dx) + Math.abs(dy) < 2) return;
      if (!g.moved) {
        g.moved = true;
        this.handlers.change("move", () => {}); // snapshot the position before the drag
      }
      const node = model.nodes(this.doc, this.tab)[g.id];
      node.pos_x = Math.round(g.origin.x + dx);
      node.pos_y = Math.round(g.origin.y + dy);
      this.render();
    } else if (g.kind === "connect") {
      const node = model.nodes(this.doc, this.tab)[g.from];
      const oi = model.portNames(node, "outputs").indexOf(g.output);
      const p = this.point(e);
      this.temp.setAttribute(
        "d",
        wirePath(Number(node.pos_x) + WIDTH, Number(node.pos_y) + portY(oi), p.x, p.y),
      );
    }
  }

  up(e) {
    const g = this.gesture;
    this.gesture = null;
    if (!g) return;
    if (g.kind === "pan" && !g.moved) {
      this.selected = null;
      this.applySelection();
      this.handlers.select(null);
    } else if (g.kind === "drag" && g.moved) {
      this.handlers.change("moved", () => {}, { snapshot: false });
    } else if (g.kind === "connect") {
      this.temp.setAttribute("d", "");
      const target = document.elementFromPoint(e.clientX, e.clientY);
      const port = target?.closest(".port.in");
      const nodeEl = target?.closest(".node");
      if (port && nodeEl) {
        this.handlers.change("connect", () =>
          model.connect(
            this.doc,
            this.tab,
            g.from,
            g.output,
            nodeEl.dataset.nodeId,
            port.dataset.port,
          ),
        );
      }
    }
  }

  wheel(e) {
    e.preventDefault();
    const rect = this.root.getBoundingClientRect();
    this.zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1, e.clientX - rect.left, e.clientY - rect.top);
  }

  key(e) {
    if ((e.key === "Delete" || e.key === "Backspace") && this.selected) {
      e.preventDefault();
      this.deleteSelected();
    }
  }

  deleteSelected() {
    const s = this.selected;
    if (!s) return;
    if (s.kind === "node") {
      this.handlers.change("delete node", () => model.removeNode(this.doc, this.tab, s.id));
      this.handlers.select(null);
    } else {
      const w = s.wire;
      this.handlers.change("disconnect", () =>
        model.disconnect(this.doc, this.tab, w.from, w.output, w.to, w.input),
      );
    }
    this.selected = null;
    this.applySelection();
  }

  selectNode(id, { notify = true } = {}) {
    this.selected = id ? { kind: "node", id } : null;
    this.applySelection();
    if (notify) this.handlers.select(id);
  }

  applySelection() {
    for (const n of this.root.querySelectorAll(".selected")) n.classList.remove("selected");
    const s = this.selected;
    if (s?.kind === "node") this.nodeElement(s.id)?.classList.add("selected");
    if (s?.kind === "wire") {
      const w = s.wire;
      for (const p of this.wires.querySelectorAll("path.wire")) {
        const d = p.dataset;
        if (d.from === w.from && d.output === w.output && d.to === w.to && d.input === w.input) {
          p.classList.add("selected");
        }
      }
    }
  }

  // --- trace painting ---------------------------------------------------------------

  /** state: {ran: Set<id>, taken: Set<"from|output">, failed: id|null, current: id|null}. */
  paint(state) {
    this.paintState = state;
    this.applyPaint();
  }

  applyPaint() {
    const s = this.paintState;
    this.root.classList.toggle("tracing", !!s);
    for (const g of this.boxes.querySelectorAll(".node")) {
      const id = g.dataset.nodeId;
      g.classList.toggle("ran", !!s && s.ran.has(id));
      g.classList.toggle("dimmed", !!s && !s.ran.has(id));
      g.classList.toggle("failed", !!s && s.failed === id);
      g.classList.toggle("current", !!s && s.current === id);
    }
    for (const p of this.wires.querySelectorAll("path.wire")) {
      const key = `${p.dataset.from}|${p.dataset.output}`;
      p.classList.toggle("taken", !!s && s.taken.has(key));
    }
  }
}
