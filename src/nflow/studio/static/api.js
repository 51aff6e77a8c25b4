// Calls to the management API under /_nflow/api. Every call carries X-Nflow-Client and
// mutating calls send JSON: the API refuses anything else (no cross-site form posts).

export const API = "/_nflow/api";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, { body, headers = {} } = {}) {
  const init = {
    method,
    headers: { "X-Nflow-Client": "studio", Accept: "application/json", ...headers },
    credentials: "same-origin",
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(API + path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message = (data && data.message) || `${method} ${path}: HTTP ${response.status}`;
    throw new ApiError(response.status, message, data);
  }
  return { data, etag: response.headers.get("ETag"), status: response.status };
}

const enc = encodeURIComponent;

export const api = {
  me: () => call("GET", "/me").then((r) => r.data),
  login: (username, password) => call("POST", "/login", { body: { username, password } }),
  logout: () => call("POST", "/logout", { body: {} }),
  apps: () => call("GET", "/apps").then((r) => r.data),
  app: (name) => call("GET", `/apps/${enc(name)}`),
  save: (name, document, version) =>
    call("PUT", `/apps/${enc(name)}`, {
      body: { document },
      headers: { "If-Match": `"${version}"` },
    }),
  check: (name, document) =>
    call("POST", `/apps/${enc(name)}/check`, { body: { document } }).then((r) => r.data),
  modules: () => call("GET", "/modules").then((r) => r.data),
  runs: (filters) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters || {})) if (v) q.set(k, v);
    const s = q.toString();
    return call("GET", `/runs${s ? "?" + s : ""}`).then((r) => r.data);
  },
  run: (id) => call("GET", `/runs/${enc(id)}`).then((r) => r.data),
  rerun: (id, fromStep) =>
    call("POST", `/runs/${enc(id)}/rerun`, { body: { from_step: fromStep, live: false } }).then(
      (r) => r.data,
    ),
  debugStart: (spec) => call("POST", "/debug/sessions", { body: spec }).then((r) => r.data),
  debugGo: (id, command) =>
    call("POST", `/debug/sessions/${enc(id)}/${command}`, { body: {} }).then((r) => r.data),
  versions: (name) => call("GET", `/apps/${enc(name)}/versions`).then((r) => r.data),
  diff: (name, from, to) =>
    call("GET", `/apps/${enc(name)}/diff?from=${enc(from)}&to=${enc(to)}`).then((r) => r.data),
  release: (name) => call("GET", `/apps/${enc(name)}/release`).then((r) => r.data),
  setRelease: (name, weights) =>
    call("POST", `/apps/${enc(name)}/release`, { body: { weights } }).then((r) => r.data),
  rollback: (name) => call("POST", `/apps/${enc(name)}/rollback`, { body: {} }).then((r) => r.data),
};
