// The studio page: wires the canvas, panels, composer, trace and versions to the
// management API, and keeps the open app's document, undo history and save state.

import { api, ApiError } from "./api.js";
import { Canvas } from "./canvas.js";
import { Composer } from "./composer.js";
import { DebugView } from "./debug.js";
import * as model from "./doc.js";
import { $, ask, clear, el, notify } from "./dom.js";
import { showNode } from "./panel.js";
import { Palette } from "./palette.js";
import { RunsView } from "./runs.js";
import { TraceView } from "./trace.js";
import { VersionsView } from "./versions.js";

const state = {
  apps: [],
  app: null,
  version: null,
  doc: null,
  tab: null,
  dirty: false,
  history: new model.History(),
  breakpoints: new Map(), // node id -> condition on its payload, or null
  findings: [],
  selected: null,
};

// --- side panels --------------------------------------------------------------------

function showPanel(name) {
  for (const section of document.querySelectorAll(".side > section")) section.hidden = section.dataset.panel !== name;
  for (const button of document.querySelectorAll(".side-tabs button")) {
    button.classList.toggle("active", button.dataset.panel === name);
  }
}

// --- editing ------------------------------------------------------------------------

function setDirty(dirty) {
  state.dirty = dirty;
  document.body.classList.toggle("dirty", dirty);
  $("#undo").disabled = !state.history.undoStack.length;
  $("#redo").disabled = !state.history.redoStack.length;
}

/** Every edit goes through here: snapshot for undo, change, redraw. */
function change(description, mutate, { snapshot = true } = {}) {
  if (!state.doc) return;
  if (snapshot) state.history.push(state.doc);
  mutate();
  setDirty(true);
  canvas.render();
  // A field edited in the panel is already shown there: rebuilding the panel would take the
  // focus away from the field the user tabbed to.
  if (description !== "move" && !description.startsWith("edit ")) refreshNodePanel();
}

function replaceDoc(doc) {
  state.doc = doc;
  if (!state.doc.drawflow[state.tab]) state.tab = "Home";
  canvas.doc = doc;
  canvas.tab = state.tab;
  canvas.render();
  refreshNodePanel();
  renderTabs();
}

function undo() {
  const doc = state.history.undo(state.doc);
  if (doc) {
    replaceDoc(doc);
    setDirty(true);
  }
}

function redo() {
  const doc = state.history.redo(state.doc);
  if (doc) {
    replaceDoc(doc);
    setDirty(true);
  }
}

function nodeFindings(id) {
  return state.findings.filter((f) => f.node === id);
}

function refreshNodePanel() {
  const id = state.selected;
  showNode($("#node-panel"), state.doc, state.tab, id, {
    change,
    findings: nodeFindings(id),
    isBreakpoint: state.breakpoints.has(id),
    condition: state.breakpoints.get(id) ?? null,
    setCondition: (condition) => state.breakpoints.set(id, condition),
    toggleBreakpoint: () => {
      if (state.breakpoints.has(id)) state.breakpoints.delete(id);
      else state.breakpoints.set(id, null);
      canvas.breakpoints = state.breakpoints;
      canvas.render();
      refreshNodePanel();
    },
    remove: () => {
      change("delete node", () => model.removeNode(state.doc, state.tab, id));
      select(null);
    },
  });
}

function select(id) {
  state.selected = id;
  refreshNodePanel();
  if (id && trace.run) trace.selectNode(id);
  else if (id) showPanel("node");
}

function addFromPalette(entry, at) {
  const rect = canvas.root.getBoundingClientRect();
  const { x, y, k } = canvas.view;
  const p = at || { x: (rect.width / 2 - x) / k - 95, y: (rect.height / 2 - y) / k - 30 };
  let id;
  change("add node", () => {
    id = model.addNode(state.doc, state.tab, entry, p.x, p.y);
  });
  canvas.selectNode(id, { notify: false });
  select(id);
}

// --- apps ---------------------------------------------------------------------------

function renderTabs() {
  const bar = clear($("#tabs"));
  for (const tab of model.tabs(state.doc)) {
    const count = Object.keys(model.nodes(state.doc, tab)).length;
    bar.append(
      el("button", {
        class: tab === state.tab ? "tab active" : "tab",
        dataset: { tab },
        text: `${tab || "(unnamed)"} (${count})`,
        onclick: () => openTab(tab),
      }),
    );
  }
}

function openTab(tab, { fit = true } = {}) {
  state.tab = tab;
  canvas.show(state.doc, tab, { fit });
  renderTabs();
  select(null);
}

async function loadApp(name) {
  let answer;
  try {
    answer = await api.app(name);
  } catch (err) {
    notify(`app ${name}: ${err.message}`, "error");
    return;
  }
  const body = answer.data;
  const doc = body.document;
  let fixes;
  try {
    fixes = [...(body.fixes || []), ...model.fixDocument(doc)];
  } catch (err) {
    notify(`app ${name} cannot be shown: ${err.message}`, "error");
    return;
  }
  state.app = name;
  state.version = body.version || (answer.etag || "").replaceAll('"', "");
  state.doc = doc;
  state.findings = [];
  state.history.reset();
  state.breakpoints = new Map();
  canvas.breakpoints = state.breakpoints;
  canvas.findings = new Map();
  setDirty(false);
  $("#app").value = name;
  if (location.hash !== `#app=${encodeURIComponent(name)}`) history.replaceState(null, "", `#app=${encodeURIComponent(name)}`);
  const tabs = model.tabs(doc);
  // The first tab with nodes, Home when it has some.
  const first = Object.keys(model.nodes(doc, "Home")).length
    ? "Home"
    : tabs.find((t) => Object.keys(model.nodes(doc, t)).length) || "Home";
  openTab(first);
  const fixBox = clear($("#fixes"));
  if (fixes.length) {
    fixBox.append(
      el("details", {}, [
        el("summary", { text: `${fixes.length} fix${fixes.length > 1 ? "es" : ""} made at load (saved with the next Save)` }),
        el("ul", {}, fixes.map((f) => el("li", { text: f }))),
      ]),
    );
  }
  composer.setStarters(model.starters(doc));
  trace.clear();
  runs.setApps(state.apps.map((a) => a.name), name);
  if (!$("#panel-versions").hidden) versions.load(name);
  const info = state.apps.find((a) => a.name === name);
  const readOnly = info?.source === "file";
  $("#save").disabled = readOnly;
  $("#save").title = readOnly ? "This app is served from a file: edit the file" : "Save as a new version (Ctrl+S)";
  document.body.dataset.app = name;
  document.body.dataset.version = state.version;
  notify(`${name} loaded (version ${String(state.version).slice(0, 12)})`, "ok");
}

async function switchApp(name) {
  if (state.dirty) {
    const answer = await ask("Unsaved changes", `Leave ${state.app} without saving?`, [
      { label: "Leave", value: true },
      { label: "Stay", value: false },
    ]);
    if (!answer) {
      $("#app").value = state.app;
      return;
    }
  }
  await loadApp(name);
}

async function save() {
  if (!state.doc) return;
  // A field being edited commits on change: make it happen before the document is sent.
  if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  try {
    const { data } = await api.save(state.app, state.doc, state.version);
    state.version = data.version;
    document.body.dataset.version = state.version;
    setDirty(false);
    notify(`saved ${state.app} as version ${String(data.version).slice(0, 12)}`, "ok");
  } catch (err) {
    // A 409 without "current" is an app served from a file: there is nothing to reload.
    if (err instanceof ApiError && err.status === 409 && err.body?.current) {
      const reload = await ask(
        "The app changed on the server",
        `Someone saved ${state.app} after you opened it. Reload it (your edits are lost) or keep editing?`,
        [
          { label: "Reload", value: true },
          { label: "Keep editing", value: false },
        ],
      );
      if (reload) await loadApp(state.app);
      else notify("not saved: the app changed on the server", "error");
      return;
    }
    notify(`not saved: ${err.message}`, "error");
  }
}

async function check() {
  try {
    const { findings } = await api.check(state.app, state.doc);
    state.findings = findings || [];
  } catch (err) {
    notify(`check: ${err.message}`, "error");
    return;
  }
  const counts = new Map();
  for (const f of state.findings) if (f.node) counts.set(f.node, (counts.get(f.node) || 0) + 1);
  canvas.findings = counts;
  canvas.render();
  refreshNodePanel();
  const list = clear($("#findings"));
  for (const f of state.findings) {
    list.append(
      el("li", {
        class: `finding ${f.severity}`,
        dataset: { node: f.node || "" },
        text: `${f.severity}: ${f.message}${f.line ? ` (line ${f.line})` : ""}`,
        onclick: () => f.node && focusNode(f.node, { open: true }),
      }),
    );
  }
  notify(`${state.findings.length} finding${state.findings.length === 1 ? "" : "s"}`, state.findings.length ? "info" : "ok");
}

// --- runs and traces ----------------------------------------------------------------

function focusNode(id, { open = false } = {}) {
  const where = model.findNode(state.doc, id);
  if (!where) return;
  if (where.tab !== state.tab) {
    state.tab = where.tab;
    canvas.show(state.doc, where.tab, { fit: true });
    renderTabs();
  }
  canvas.reveal(id);
  canvas.selectNode(id, { notify: false });
  state.selected = id;
  refreshNodePanel();
  if (open) showPanel("node");
}

async function waitForRun(id) {
  // The history writer stores a run just after its answer: look a few times.
  for (let i = 0; i < 100; i++) {
    try {
      return await api.run(id);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return null;
}

/** Load a run's trace and paint it; `show` also brings the trace panel to the front. */
async function openRun(id, { show = true } = {}) {
  let run;
  try {
    run = await waitForRun(id);
  } catch (err) {
    notify(`run ${id}: ${err.message}`, "error");
    return;
  }
  if (!run) {
    notify(`run ${id} is not in the history (is [history] mode recording it?)`, "error");
    return;
  }
  if (run.app !== state.app && state.apps.some((a) => a.name === run.app)) await loadApp(run.app);
  if (show) showPanel("trace");
  await trace.show(run);
}

async function related(run) {
  const found = { journey: [], lanes: [] };
  if (run.journey) {
    const list = await api.runs({ journey: run.journey, limit: 50 });
    // The journey's requests; a background branch (a run with a parent) is a lane instead.
    found.journey = list
      .filter((r) => !r.parent)
      .sort((a, b) => String(a.started_at).localeCompare(String(b.started_at)));
  }
  const forks = (await api.runs({ app: run.app, limit: 200 })).filter((r) => r.parent === run.id && r.id !== run.id);
  for (const fork of forks.slice(0, 5)) {
    const full = await api.run(fork.id);
    if (full.starter !== run.starter || full.steps?.length) found.lanes.push(full);
  }
  // A re-run also names its source as parent; a background branch starts at a node the
  // parent run went through, a re-run at its starter.
  found.lanes = found.lanes.filter((r) => !found.journey.some((j) => j.id === r.id));
  return found;
}

async function rerun(id, step) {
  try {
    const result = await api.rerun(id, step);
    notify(`re-run from step ${step}: ${result.status} (run ${result.run_id})`, "ok");
    await openRun(result.run_id);
  } catch (err) {
    notify(`re-run: ${err.message}`, "error");
  }
}

// --- start --------------------------------------------------------------------------

const canvas = new Canvas($("#canvas"), {
  select: (id) => select(id),
  change,
  colorOf: (node) => palette.colorOf(node.name),
});
const palette = new Palette($("#palette"), { add: addFromPalette });
const composer = new Composer($("#panel-request"), {
  // The composer stays in front, to take a wizard's next step; the canvas shows the trace.
  sent: (wid) => openRun(wid, { show: false }),
  showTrace: () => showPanel("trace"),
  breakpoints: () =>
    [...state.breakpoints].map(([node, condition]) => (condition ? { node, condition } : { node })),
  debug: (spec) => {
    showPanel("debug");
    debugView.start(spec);
  },
});
const paint = (s) => canvas.paint(s);
const startersOf = (nodeId) =>
  model
    .starters(state.doc)
    .filter((s) => model.connections(state.doc, s.tab).some((c) => c.from === s.node && c.to === nodeId))
    .map((s) => s.node);
const trace = new TraceView($("#panel-trace"), {
  paint,
  focusNode,
  openRun,
  rerun,
  related,
  startersOf,
});
const debugView = new DebugView($("#panel-debug"), { paint, focusNode, openRun, startersOf });
const runs = new RunsView($("#panel-runs"), { openRun });
const versions = new VersionsView($("#panel-versions"), {
  released: async () => {
    if (!state.dirty) await loadApp(state.app);
  },
});

function bind() {
  $("#save").addEventListener("click", save);
  $("#undo").addEventListener("click", undo);
  $("#redo").addEventListener("click", redo);
  $("#check").addEventListener("click", check);
  $("#zoom-in").addEventListener("click", () => canvas.zoom(1.2));
  $("#zoom-out").addEventListener("click", () => canvas.zoom(1 / 1.2));
  $("#zoom-fit").addEventListener("click", () => canvas.fit());
  $("#delete").addEventListener("click", () => canvas.deleteSelected());
  $("#clear-trace").addEventListener("click", () => trace.clear());
  $("#app").addEventListener("change", (e) => switchApp(e.target.value));
  for (const button of document.querySelectorAll(".side-tabs button")) {
    button.addEventListener("click", () => {
      showPanel(button.dataset.panel);
      if (button.dataset.panel === "runs") runs.load();
      if (button.dataset.panel === "versions" && state.app) versions.load(state.app);
    });
  }
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest?.("input, textarea, select");
    if (typing) return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === "z") {
      e.preventDefault();
      if (e.shiftKey) redo();
      else undo();
    } else if (mod && e.key.toLowerCase() === "y") {
      e.preventDefault();
      redo();
    } else if (mod && e.key.toLowerCase() === "s") {
      e.preventDefault();
      save();
    }
  });
  canvas.root.addEventListener("dragover", (e) => e.preventDefault());
  canvas.root.addEventListener("drop", (e) => {
    e.preventDefault();
    const entry = palette.entry(e.dataTransfer.getData("text/x-nflow-module"));
    if (entry) addFromPalette(entry, canvas.point(e));
  });
  // A link to #app=NAME opens that app (the address bar is a bookmark of the open app).
  window.addEventListener("hashchange", () => {
    const name = new URLSearchParams(location.hash.slice(1)).get("app");
    if (name && name !== state.app && state.apps.some((a) => a.name === name)) switchApp(name);
  });
  window.addEventListener("beforeunload", (e) => {
    if (state.dirty) e.preventDefault();
  });
}

async function login() {
  const user = el("input", { name: "username", autocomplete: "username", "aria-label": "user" });
  const pass = el("input", { name: "password", type: "password", autocomplete: "current-password", "aria-label": "password" });
  const message = el("p", { class: "error" });
  const form = el("form", { class: "login" }, [
    el("h2", { text: "Sign in to nflow studio" }),
    user,
    pass,
    el("button", { type: "submit", text: "Sign in" }),
    message,
  ]);
  user.placeholder = "user";
  pass.placeholder = "password";
  return new Promise((resolve) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api.login(user.value, pass.value);
        form.remove();
        resolve();
      } catch (err) {
        message.textContent = err.message;
      }
    });
    document.body.append(form);
  });
}

async function start() {
  bind();
  showPanel("node");
  // With [studio] login (or api.token) the API answers 401 until the user has logged in.
  for (;;) {
    try {
      state.apps = await api.apps();
      break;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) {
        notify(`apps: ${err.message}`, "error");
        return;
      }
      await login();
    }
  }
  api.me().then(
    (me) => {
      $("#user").textContent = me.user ? `${me.user} (${me.auth})` : me.auth;
      if (me.auth === "login") {
        $("#user").after(
          el("button", {
            text: "Log out",
            onclick: async () => {
              await api.logout().catch(() => {});
              location.reload();
            },
          }),
        );
      }
    },
    () => {},
  );
  const picker = clear($("#app"));
  for (const app of state.apps) picker.append(el("option", { value: app.name, text: app.name }));
  api.modules().then(
    (rows) => {
      palette.setModules(rows);
      canvas.render();
    },
    () => {},
  );
  const wanted = new URLSearchParams(location.hash.slice(1)).get("app");
  const name = state.apps.some((a) => a.name === wanted) ? wanted : state.apps[0]?.name;
  if (name) await loadApp(name);
  else notify("no app is stored yet", "info");
  document.body.dataset.ready = "true";
}

start();
