// The app document (Drawflow JSON) and the edits the studio makes to it.
// Only the fields an edit concerns are touched: `html`, unknown keys and key order of
// everything else stay as loaded, so saving an unchanged document gives it back unchanged.

/**
 * The fixes every editor needs for what the designer left behind: a null `class` or
 * `name`, a missing Home tab, connections to nodes absent from their tab. Returns the
 * list of fixes made (empty when the document was clean).
 */
export function fixDocument(doc) {
  const fixes = [];
  if (!doc || typeof doc !== "object") throw new Error("the app is not a JSON object");
  if (!doc.drawflow || typeof doc.drawflow !== "object") doc.drawflow = {};
  if (!doc.drawflow.Home) {
    doc.drawflow.Home = { data: {} };
    fixes.push("added the missing Home tab");
  }
  for (const [tab, module] of Object.entries(doc.drawflow)) {
    if (!module.data || typeof module.data !== "object") module.data = {};
    const data = module.data;
    for (const [id, node] of Object.entries(data)) {
      for (const key of ["class", "name"]) {
        if (node[key] === null || node[key] === undefined) {
          node[key] = "";
          fixes.push(`${tab}/${id}: ${key} null set to ""`);
        }
      }
      for (const side of ["outputs", "inputs"]) {
        for (const [port, entry] of Object.entries(node[side] || {})) {
          const conns = entry.connections || [];
          const kept = conns.filter((c) => c && Object.hasOwn(data, String(c.node)));
          if (kept.length !== conns.length) {
            const gone = conns.filter((c) => !kept.includes(c)).map((c) => c && c.node);
            entry.connections = kept;
            fixes.push(`${tab}/${id}: dropped the connection of ${port} to ${gone.join(", ")}, not in the tab`);
          }
        }
      }
    }
  }
  return fixes;
}

export function tabs(doc) {
  return Object.keys(doc.drawflow);
}

export function nodes(doc, tab) {
  return doc.drawflow[tab]?.data || {};
}

/** Where a node of any tab lives. */
export function findNode(doc, id) {
  for (const tab of tabs(doc)) {
    const node = nodes(doc, tab)[id];
    if (node) return { tab, node };
  }
  return null;
}

/** The title a box shows: its name, else its script, else its type. */
export function nodeTitle(node) {
  const data = node.data || {};
  return String(data.name_box || data.script || node.name || data.type || "node");
}

export function nodeType(node) {
  const data = node.data || {};
  return String(data.type || node.name || "?");
}

/** One line under the title: the route of a starter, the script of a module node. */
export function nodeSubtitle(node) {
  const data = node.data || {};
  if (data.type === "starter") return `${data.method || "ANY"} ${data.urlpattern || ""}`;
  if (data.script && data.name_box) return `script ${data.script}`;
  return nodeType(node);
}

export function portNames(node, side) {
  return Object.keys(node[side] || {}).sort((a, b) => portIndex(a) - portIndex(b));
}

function portIndex(name) {
  return Number(String(name).split("_")[1] || 0);
}

export function starters(doc) {
  const out = [];
  for (const tab of tabs(doc)) {
    for (const [id, node] of Object.entries(nodes(doc, tab))) {
      if (node.data && node.data.type === "starter") {
        out.push({
          node: id,
          tab,
          method: String(node.data.method || "ANY"),
          url: String(node.data.urlpattern || ""),
          title: nodeTitle(node),
        });
      }
    }
  }
  return out;
}

export function connections(doc, tab) {
  const list = [];
  for (const [id, node] of Object.entries(nodes(doc, tab))) {
    for (const port of portNames(node, "outputs")) {
      for (const c of node.outputs[port].connections || []) {
        list.push({ from: id, output: port, to: String(c.node), input: c.output || "input_1" });
      }
    }
  }
  return list;
}

export function connect(doc, tab, from, output, to, input) {
  const data = nodes(doc, tab);
  const a = data[from];
  const b = data[to];
  if (!a || !b || from === to) return false;
  // One connection per output, as the designer kept it: a new one replaces the old.
  for (const old of [...(a.outputs[output]?.connections || [])]) {
    disconnect(doc, tab, from, output, String(old.node), old.output);
  }
  a.outputs[output] ||= { connections: [] };
  a.outputs[output].connections.push({ node: to, output: input });
  b.inputs ||= {};
  b.inputs[input] ||= { connections: [] };
  b.inputs[input].connections.push({ node: from, input: output });
  return true;
}

export function disconnect(doc, tab, from, output, to, input) {
  const data = nodes(doc, tab);
  const a = data[from];
  const b = data[to];
  if (a?.outputs?.[output]) {
    a.outputs[output].connections = a.outputs[output].connections.filter(
      (c) => !(String(c.node) === to && (c.output || "input_1") === input),
    );
  }
  if (b?.inputs?.[input]) {
    b.inputs[input].connections = b.inputs[input].connections.filter(
      (c) => !(String(c.node) === from && c.input === output),
    );
  }
}

export function removeNode(doc, tab, id) {
  const data = nodes(doc, tab);
  for (const c of connections(doc, tab)) {
    if (c.from === id || c.to === id) disconnect(doc, tab, c.from, c.output, c.to, c.input);
  }
  delete data[id];
}

/** A new node from a palette module: {name, title, inputs, outputs, data}. */
export function addNode(doc, tab, module, x, y) {
  const id = crypto.randomUUID();
  const inputs = {};
  const outputs = {};
  for (let i = 1; i <= module.inputs; i++) inputs[`input_${i}`] = { connections: [] };
  for (let i = 1; i <= module.outputs; i++) outputs[`output_${i}`] = { connections: [] };
  nodes(doc, tab)[id] = {
    id,
    name: module.name,
    data: structuredClone(module.data),
    class: module.name,
    html: "",
    typenode: false,
    inputs,
    outputs,
    pos_x: Math.round(x),
    pos_y: Math.round(y),
  };
  return id;
}

/** Undo and redo by whole-document snapshots (a large app serialises in under a ms). */
export class History {
  constructor(limit = 200) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
  }
  reset() {
    this.undoStack = [];
    this.redoStack = [];
  }
  /** Call before a change with the document as it is. */
  push(doc) {
    this.undoStack.push(JSON.stringify(doc));
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
  }
  undo(doc) {
    if (!this.undoStack.length) return null;
    this.redoStack.push(JSON.stringify(doc));
    return JSON.parse(this.undoStack.pop());
  }
  redo(doc) {
    if (!this.redoStack.length) return null;
    this.undoStack.push(JSON.stringify(doc));
    return JSON.parse(this.redoStack.pop());
  }
}
