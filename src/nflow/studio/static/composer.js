// The request composer: one request to a starter of the open app, sent by the page to the
// flow itself (same origin). Cookies live in the browser's jar for this origin, so the
// session cookies a form wizard sets (nflow_form, log-session) go back with the next step
// of the wizard just as they would from a user's browser.

import { clear, el } from "./dom.js";
import { jsonView } from "./json.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const BODY_KINDS = ["none", "form", "json", "text"];

/** Path variables of a starter's URL pattern (`/greet/:name`). */
export function pathVariables(pattern) {
  return pattern
    .split("/")
    .filter((s) => s.startsWith(":"))
    .map((s) => s.slice(1));
}

export function fillPath(pattern, values) {
  return pattern
    .split("/")
    .map((s) => (s.startsWith(":") ? encodeURIComponent(values[s.slice(1)] ?? "") : s))
    .join("/");
}

/** The forms of an HTML answer, read with DOMParser: an inert document, nothing runs. */
export function formsOf(html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  return [...parsed.querySelectorAll("form")].map((form) => ({
    action: form.getAttribute("action"),
    method: (form.getAttribute("method") || "GET").toUpperCase(),
    fields: [...form.querySelectorAll("input[name], select[name], textarea[name]")]
      .filter((i) => !["submit", "button"].includes((i.getAttribute("type") || "").toLowerCase()))
      .map((i) => ({
        name: i.getAttribute("name"),
        value: i.tagName === "SELECT" ? i.querySelector("option")?.getAttribute("value") || "" : i.getAttribute("value") || "",
        hidden: (i.getAttribute("type") || "").toLowerCase() === "hidden",
      })),
  }));
}

/** Rows of name/value inputs. */
class Rows {
  constructor(title, kind) {
    this.kind = kind;
    this.list = el("div", { class: "rows", dataset: { rows: kind } });
    this.box = el("fieldset", { class: "rows-box" }, [
      el("legend", { text: title }),
      this.list,
      el("button", { type: "button", text: "+ add", onclick: () => this.add("", "") }),
    ]);
  }
  add(name, value, hidden = false) {
    const n = el("input", { class: "row-name", placeholder: "name", "aria-label": `${this.kind} name` });
    const v = el("input", { class: "row-value", placeholder: "value", "aria-label": `${this.kind} ${name || "value"}` });
    n.value = name;
    v.value = value;
    const row = el("div", { class: hidden ? "row hidden-field" : "row" }, [
      n,
      v,
      el("button", { type: "button", text: "×", title: "remove", onclick: () => row.remove() }),
    ]);
    row.dataset.name = name;
    this.list.append(row);
  }
  set(pairs) {
    clear(this.list);
    for (const p of pairs) this.add(p.name, p.value, p.hidden);
  }
  pairs() {
    return [...this.list.querySelectorAll(".row")]
      .map((r) => [r.querySelector(".row-name").value, r.querySelector(".row-value").value])
      .filter(([n]) => n);
  }
}

export class Composer {
  /**
   * handlers: sent(runId) after a plain request; debug(spec) when breakpoints are set and
   * "pause at breakpoints" is on; breakpoints() -> [{node, condition?}].
   */
  constructor(host, handlers) {
    this.host = host;
    this.handlers = handlers;
    this.starters = [];
    this.vars = {};
    this.starter = el("select", { name: "starter", "aria-label": "starter" });
    this.method = el("select", { name: "method", "aria-label": "method" }, METHODS.map((m) => el("option", { text: m, value: m })));
    this.url = el("input", { name: "url", class: "url", "aria-label": "URL" });
    this.varBox = el("div", { class: "path-vars" });
    this.query = new Rows("Query", "query");
    this.headers = new Rows("Headers", "header");
    this.bodyKind = el("select", { name: "body-kind", "aria-label": "body kind" }, BODY_KINDS.map((k) => el("option", { text: k, value: k })));
    this.formRows = new Rows("Form fields", "form");
    this.bodyText = el("textarea", { name: "body", rows: 5, "aria-label": "body" });
    this.pause = el("input", { type: "checkbox", name: "pause" });
    this.pause.checked = true;
    this.result = el("div", { class: "response" });
    this.send = el("button", { text: "Send", name: "Send", class: "primary" });
    this.send.addEventListener("click", () => this.sendRequest());
    this.starter.addEventListener("change", () => this.pick(Number(this.starter.value)));
    this.bodyKind.addEventListener("change", () => this.showBody());
    this.url.addEventListener("input", () => this.showVars());
    host.append(
      el("label", { class: "field" }, [el("span", { text: "Starter" }), this.starter]),
      el("div", { class: "request-line" }, [this.method, this.url]),
      this.varBox,
      this.query.box,
      this.headers.box,
      el("label", { class: "field" }, [el("span", { text: "Body" }), this.bodyKind]),
      this.formRows.box,
      this.bodyText,
      el("p", { class: "jar", text: "Cookies: the browser's jar for this origin; the session cookies a form sets go back with the next request." }),
      el("label", { class: "check" }, [this.pause, " pause at breakpoints (debug session)"]),
      el("div", { class: "buttons" }, [this.send]),
      this.result,
    );
    this.showBody();
  }

  setStarters(list) {
    this.starters = list;
    clear(this.starter);
    list.forEach((s, i) =>
      this.starter.append(el("option", { value: i, text: `${s.method} ${s.url || "(no URL)"} · ${s.tab}` })),
    );
    if (list.length) this.pick(0);
  }

  pick(index) {
    const s = this.starters[index];
    if (!s) return;
    this.method.value = METHODS.includes(s.method) ? s.method : "GET";
    this.url.value = s.url;
    this.query.set([]);
    this.headers.set([]);
    this.bodyKind.value = "none";
    this.showBody();
    this.showVars();
  }

  showVars() {
    clear(this.varBox);
    for (const name of pathVariables(this.url.value)) {
      const input = el("input", { name: `var-${name}`, "aria-label": `path variable ${name}` });
      input.value = this.vars[name] ?? "";
      input.addEventListener("input", () => (this.vars[name] = input.value));
      this.varBox.append(el("label", { class: "field" }, [el("span", { text: `:${name}` }), input]));
    }
  }

  showBody() {
    const kind = this.bodyKind.value;
    this.formRows.box.hidden = kind !== "form";
    this.bodyText.hidden = kind !== "json" && kind !== "text";
  }

  /** Fill the composer from a form of the last answer, to take the wizard's next step. */
  useForm(form, base) {
    const action = form.action ? new URL(form.action, new URL(base, location.href)) : new URL(base, location.href);
    this.method.value = METHODS.includes(form.method) ? form.method : "POST";
    this.url.value = decodeURIComponent(action.pathname);
    this.query.set([...action.searchParams].map(([name, value]) => ({ name, value })));
    this.bodyKind.value = "form";
    this.formRows.set(form.fields);
    this.showBody();
    this.showVars();
  }

  request() {
    // A query typed into the URL joins the query rows.
    const [typed, typedQuery = ""] = (this.url.value.trim() || "/").split("?", 2);
    const path = fillPath(typed, this.vars);
    const query = new URLSearchParams(typedQuery);
    for (const [name, value] of this.query.pairs()) query.append(name, value);
    const headers = Object.fromEntries(this.headers.pairs());
    let body;
    const kind = this.bodyKind.value;
    if (kind === "form") {
      body = new URLSearchParams(this.formRows.pairs()).toString();
      headers["Content-Type"] ||= "application/x-www-form-urlencoded";
    } else if (kind === "json") {
      body = this.bodyText.value;
      headers["Content-Type"] ||= "application/json";
    } else if (kind === "text") {
      body = this.bodyText.value;
    }
    return { method: this.method.value, path, query: query.toString(), headers, body };
  }

  async sendRequest() {
    const req = this.request();
    const breakpoints = this.handlers.breakpoints();
    if (breakpoints.length && this.pause.checked) {
      this.handlers.debug({
        path: req.path,
        method: req.method,
        query: req.query,
        headers: req.headers,
        body: req.body ?? null,
        breakpoints,
      });
      return;
    }
    const url = req.path + (req.query ? "?" + req.query : "");
    clear(this.result).append(el("p", { text: `${req.method} ${url} …` }));
    let response;
    try {
      response = await fetch(url, {
        method: req.method,
        headers: req.headers,
        body: req.method === "GET" ? undefined : req.body,
        credentials: "same-origin",
        redirect: "manual",
      });
    } catch (err) {
      clear(this.result).append(el("p", { class: "error", text: `request failed: ${err.message}` }));
      return;
    }
    const text = await this.showResponse(url, response);
    // A run that failed answers its id in the body's "wid" rather than in the header.
    let wid = response.headers.get("Nflow-Wid-1");
    if (!wid && text) {
      try {
        wid = JSON.parse(text).wid;
      } catch {
        /* not JSON */
      }
    }
    if (wid) {
      this.result.prepend(
        el("button", { class: "open-trace", text: `Show the trace of run ${wid}`, onclick: () => this.handlers.showTrace() }),
      );
      await this.handlers.sent(String(wid));
    }
  }

  async showResponse(url, response) {
    clear(this.result);
    if (response.type === "opaqueredirect") {
      this.result.append(el("p", { class: "status", text: "redirect (the browser does not show its target to the page)" }));
      return "";
    }
    const text = await response.text();
    const type = response.headers.get("Content-Type") || "";
    this.result.append(
      el("p", { class: "status", dataset: { status: response.status }, text: `${response.status} ${response.statusText}` }),
      el(
        "details",
        { class: "headers" },
        [el("summary", { text: "headers" }), ...[...response.headers].map(([k, v]) => el("div", { text: `${k}: ${v}` }))],
      ),
    );
    let shown = text;
    if (type.includes("json")) {
      try {
        shown = JSON.parse(text);
      } catch {
        /* shown as text */
      }
    }
    this.result.append(jsonView(shown, { label: "body" }));
    if (type.includes("html")) {
      formsOf(text).forEach((form, i) => {
        this.result.append(
          el("button", {
            class: "next-form",
            text: `Fill the next request from form ${i + 1} (${form.method} ${form.action || url})`,
            onclick: () => this.useForm(form, url),
          }),
        );
      });
    }
    return text;
  }
}
