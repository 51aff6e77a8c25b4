// Versions of the open app: the list, the difference between two, the release (weights per
// version) and rollback.

import { api } from "./api.js";
import { clear, el, notify } from "./dom.js";

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value) ?? "";
  return text.length > 300 ? text.slice(0, 299) + "…" : text;
}

export class VersionsView {
  /** handlers: released() after a release or rollback (the page reloads the app). */
  constructor(host, handlers) {
    this.host = host;
    this.handlers = handlers;
    this.app = null;
  }

  async load(app) {
    this.app = app;
    clear(this.host).append(el("p", { text: "loading versions…" }));
    let versions;
    let release;
    try {
      [versions, release] = await Promise.all([api.versions(app), api.release(app)]);
    } catch (err) {
      clear(this.host).append(el("p", { class: "error", text: `versions: ${err.message}` }));
      return;
    }
    this.render(versions, release);
  }

  render(versions, release) {
    clear(this.host);
    const weights = release?.weights || {};
    const from = el("select", { name: "diff-from", "aria-label": "from version" });
    const to = el("select", { name: "diff-to", "aria-label": "to version" });
    for (const v of versions) {
      from.append(el("option", { value: v.version, text: v.version.slice(0, 12) }));
      to.append(el("option", { value: v.version, text: v.version.slice(0, 12) }));
    }
    if (versions.length > 1) from.selectedIndex = 1;
    const diffBox = el("div", { class: "diff-box" });
    const inputs = new Map();
    const table = el("table", { class: "versions" }, [
      el("tr", {}, ["version", "created", "source", "note", "weight %"].map((h) => el("th", { text: h }))),
    ]);
    for (const v of versions) {
      const weight = el("input", {
        type: "number",
        min: 0,
        max: 100,
        name: `weight-${v.version}`,
        "aria-label": `weight of ${v.version}`,
      });
      weight.value = String(weights[v.version] ?? 0);
      inputs.set(v.version, weight);
      table.append(
        el("tr", { class: v.current ? "version current" : "version", dataset: { version: v.version } }, [
          el("td", { class: "id", text: v.version.slice(0, 12) + (v.current ? " (current)" : "") }),
          el("td", { text: (v.created_at || "").replace("T", " ").slice(0, 19) }),
          el("td", { text: v.source || "" }),
          el("td", { text: v.note || "" }),
          el("td", {}, [weight]),
        ]),
      );
    }
    const releaseButton = el("button", {
      text: "Release",
      name: "release",
      onclick: async () => {
        const chosen = {};
        for (const [version, input] of inputs) {
          const n = Number(input.value);
          if (n > 0) chosen[version] = n;
        }
        await this.act(() => api.setRelease(this.app, chosen), "released");
      },
    });
    const rollbackButton = el("button", {
      text: "Rollback",
      name: "rollback",
      onclick: () => this.act(() => api.rollback(this.app), "rolled back"),
    });
    const diffButton = el("button", {
      text: "Diff",
      name: "diff",
      onclick: async () => {
        clear(diffBox);
        try {
          const { changes } = await api.diff(this.app, from.value, to.value);
          if (!changes.length) diffBox.append(el("p", { text: "no difference" }));
          for (const c of changes) {
            diffBox.append(
              el("div", { class: "change" }, [
                el("p", { class: "what", text: `${c.tab ?? ""} ${c.node ?? ""}: ${c.what}` }),
                c.before !== undefined && c.before !== null ? el("pre", { class: "before", text: short(c.before) }) : null,
                c.after !== undefined && c.after !== null ? el("pre", { class: "after", text: short(c.after) }) : null,
              ]),
            );
          }
        } catch (err) {
          diffBox.append(el("p", { class: "error", text: err.message }));
        }
      },
    });
    this.host.append(
      table,
      el("div", { class: "buttons" }, [releaseButton, rollbackButton]),
      el("p", {
        class: "release-now",
        text: `Served now: ${Object.entries(weights).map(([v, w]) => `${v.slice(0, 12)} ${w}%`).join(", ") || "-"}`,
      }),
      el("h4", { text: "Difference" }),
      el("div", { class: "filters" }, [from, to, diffButton]),
      diffBox,
    );
  }

  async act(work, done) {
    try {
      const release = await work();
      notify(`${this.app}: ${done}`, "ok");
      this.render(await api.versions(this.app), release);
      await this.handlers.released();
    } catch (err) {
      notify(err.message, "error");
    }
  }
}
