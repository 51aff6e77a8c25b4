// The JS side of nflow's script API. Evaluated once per runtime, before any user code.
//
// Three jobs:
//  1. Lock the realm down: no eval/Function, frozen intrinsics, host entry points hidden in
//     this closure, so user code reaches the host only through the functions defined here.
//  2. Give scripts the nFlow globals (payload, next, c, header, ...) backed by a per-request
//     record R that is replaced wholesale between requests, so nothing leaks across them.
//  3. Compile each step once per runtime (define) and run it (run), returning next+payload.
//
// __NF_TOKEN__, __NF_NAMES__ and __NF_AWAITABLE__ are substituted by the host; the token never appears in a
// function that guests can call .toString() on.
(function () {
  "use strict";
  const TOKEN = __NF_TOKEN__;
  const HOST_NAMES = __NF_NAMES__;
  const G = globalThis;
  // Builtins the functions below use when called, bound now: the global bindings end up on
  // the global object's prototype, which a script may swap for the rest of its own run.
  const { Array, ArrayBuffer, Date, Math, Number, RangeError, TypeError, Uint8Array, isNaN, parseInt } =
    G;
  const REQ = G.__h_req;
  const ERR = G.__h_err;
  const ASYNC_START = G.__h_async;
  const SETTLED = G.__h_settled;
  // Tells the host which node of a compiled flow runs now (see flow() below).
  const AT = G.__h_at;
  delete G.__h_req;
  delete G.__h_err;
  delete G.__h_async;
  delete G.__h_settled;
  delete G.__h_at;
  // Host functions are bound one by one as "__h:<name>"; keep them here, out of reach.
  const HOST = Object.create(null);
  for (const name of HOST_NAMES) {
    HOST[name] = G["__h:" + name];
    delete G["__h:" + name];
  }

  const O = Object;
  const defineProperty = O.defineProperty;
  const freeze = O.freeze;
  const getOwnPropertyDescriptor = O.getOwnPropertyDescriptor;
  const getPrototypeOf = O.getPrototypeOf;
  const ownKeys = Reflect.ownKeys;
  const jsonParse = JSON.parse;
  const jsonStringify = JSON.stringify;
  const nativeAtob = G.atob;
  const nativeBtoa = G.btoa;
  const ErrorCtor = Error;
  const MapCtor = Map;
  const StringCtor = String;
  // nflow's globals and, at the end, every builtin live on GLOBALS, a frozen object between
  // the global object and its old prototype (see the end of this file).
  const GLOBALS = O.create(getPrototypeOf(G));
  function defineGlobal(name, desc) {
    delete G[name];
    desc.configurable = false;
    defineProperty(GLOBALS, name, desc);
  }

  // A host error a script may see (HostError) comes back with its message; anything else
  // (a kill, a limit, a bug) is rethrown as is, so it ends the run unless the script catches
  // it, and then only shows "host function failed".
  // In a compiled flow the host learns which node runs only when it needs to know: before a
  // host call or a console line of a node it was not told about yet (-1: it knows).
  // untoldAt: that node's place in the flow's run (a cycle may run a node twice).
  let untold = -1;
  let untoldAt = 0;
  function tell() {
    const index = untold;
    untold = -1;
    AT(index, untoldAt);
  }
  const nativeConsole = G.console;
  if (nativeConsole !== undefined) {
    const told = {};
    for (const name of O.keys(nativeConsole)) {
      const fn = nativeConsole[name];
      told[name] =
        typeof fn !== "function"
          ? fn
          : {
              [name]() {
                if (untold >= 0) tell();
                return fn.apply(nativeConsole, arguments);
              },
            }[name];
    }
    G.console = told;
  }

  function call(name, args) {
    if (untold >= 0) tell();
    const fn = HOST[name];
    try {
      return fn.apply(undefined, args);
    } catch (e) {
      const m = ERR();
      if (m !== null && m !== undefined) throw new ErrorCtor(m);
      throw e;
    }
  }

  // ---- the run's own randomness and clock --------------------------------------------
  // Math.random is a generator seeded per run (sfc32, seeded through splitmix32), so a
  // recorded run replays with the numbers it drew. Clock reads (Date.now(), new Date(),
  // performance.now()) are not host calls: scripts spin on them in loops. Each step keeps a
  // tape of what it read, run-length encoded as [value, times, value, times ...]; the host
  // collects it once when the step ends, and on replay hands it back to be read from.
  const nativeNow = Date.now;
  const perf = G.performance;
  const nativePerfNow = perf && typeof perf.now === "function" ? perf.now.bind(perf) : null;
  let ra = 0,
    rb = 0,
    rc = 0,
    rd = 0;
  function splitmix(x) {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return [x, (z ^ (z >>> 16)) >>> 0];
  }
  function seedRandom(hi, lo) {
    let s = splitmix(hi ^ 0x5bd1e995);
    ra = s[1];
    s = splitmix(s[0] ^ lo);
    rb = s[1];
    s = splitmix(s[0]);
    rc = s[1];
    s = splitmix(s[0]);
    rd = s[1];
    for (let i = 0; i < 12; i++) next32();
  }
  function next32() {
    const t = (((ra + rb) | 0) + rd) | 0;
    rd = (rd + 1) | 0;
    ra = rb ^ (rb >>> 9);
    rb = (rc + (rc << 3)) | 0;
    rc = (rc << 21) | (rc >>> 11);
    rc = (rc + t) | 0;
    return t >>> 0;
  }
  seedRandom(0, 0);
  // Seeding takes a few dozen generator rounds, more than a small step costs: a run's seed is
  // only noted, and the generator is seeded when the run first draws a number.
  let seedHi = 0,
    seedLo = 0,
    seeded = true;
  function seedLater(hi, lo) {
    seedHi = hi;
    seedLo = lo;
    seeded = false;
  }
  defineProperty(Math, "random", {
    value: function random() {
      if (!seeded) {
        seeded = true;
        seedRandom(seedHi, seedLo);
      }
      // 53 random bits, like the engines' own Math.random.
      return ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
    },
    writable: true,
    enumerable: false,
    configurable: true,
  });
  // 0: live; 1: live and taped; 2: read from REPLAY (then live) and taped.
  let clockMode = 0;
  let tape = [];
  let replayTape = null;
  let replayPos = 0;
  let replayLeft = 0;
  function clockRead(live) {
    let v;
    if (clockMode === 2 && replayPos < replayTape.length) {
      v = replayTape[replayPos];
      if (--replayLeft <= 0) {
        replayPos += 2;
        replayLeft = replayPos < replayTape.length ? replayTape[replayPos + 1] : 0;
      }
    } else {
      v = live();
    }
    const n = tape.length;
    if (n && tape[n - 2] === v) tape[n - 1]++;
    else tape.push(v, 1);
    return v;
  }
  function nowMs() {
    return clockMode === 0 ? nativeNow() : clockRead(nativeNow);
  }
  function perfLive() {
    // A tenth of a millisecond, as browsers coarsen it: a spin loop tapes a value per tick.
    return Math.round(nativePerfNow() * 10) / 10;
  }
  function setClock(clock) {
    tape = [];
    if (!clock) {
      clockMode = 0;
    } else if (clock === "r") {
      clockMode = 1;
    } else {
      clockMode = 2;
      replayTape = jsonParse(clock);
      replayPos = 0;
      replayLeft = replayTape.length ? replayTape[1] : 0;
    }
  }
  const NativeDate = Date;
  const dateConstruct = Reflect.construct;
  function DateShim(a, b, c, d, e, f, g) {
    if (new.target === undefined) return new NativeDate(nowMs()).toString();
    if (arguments.length === 0) return dateConstruct(NativeDate, [nowMs()], new.target);
    return dateConstruct(NativeDate, arguments, new.target);
  }
  defineProperty(DateShim, "name", { value: "Date" });
  defineProperty(DateShim, "length", { value: 7 });
  DateShim.prototype = NativeDate.prototype;
  DateShim.now = function now() {
    return nowMs();
  };
  DateShim.parse = NativeDate.parse;
  DateShim.UTC = NativeDate.UTC;
  defineProperty(NativeDate.prototype, "constructor", {
    value: DateShim,
    writable: true,
    enumerable: false,
    configurable: true,
  });
  G.Date = DateShim;
  if (nativePerfNow !== null) {
    // The engine's performance.now cannot be redefined: a performance object of our own.
    G.performance = {
      now: function now() {
        return clockMode === 0 ? nativePerfNow() : clockRead(perfLive);
      },
      timeOrigin: perf.timeOrigin,
    };
  }

  function hostNow() {
    return new Date(Math.floor(Number(call("time_now_unix_nano", [])) / 1e6));
  }

  // ---- 1. lockdown --------------------------------------------------------------------
  function thrower(what) {
    return function () {
      try {
        if (untold >= 0) tell();
        HOST["security.blocked"](what);
      } catch (e) {
        // outside a run (or past a limit): the TypeError below still stops the script
      }
      throw new TypeError(what + " is disabled in nflow scripts");
    };
  }
  const FunctionProto = Function.prototype;
  const evalThrower = thrower("eval");
  const functionThrower = thrower("Function constructor");
  functionThrower.prototype = FunctionProto;
  const fnProtos = [
    FunctionProto,
    getPrototypeOf(async function () {}),
    getPrototypeOf(function* () {}),
    getPrototypeOf(async function* () {}),
  ];
  for (const proto of fnProtos) {
    defineProperty(proto, "constructor", {
      value: functionThrower,
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }
  defineGlobal("eval", { value: evalThrower, writable: false, enumerable: false });
  defineGlobal("Function", { value: functionThrower, writable: false, enumerable: false });
  for (const name of ["WeakRef", "FinalizationRegistry", "SharedArrayBuffer", "Atomics", "queueMicrotask"]) {
    delete G[name];
  }

  // Native string searches are naive (length × pattern length) and run without checking the
  // interrupt: `("a".repeat(2**24)).indexOf("a".repeat(4096) + "b")` ran for 200 s past a
  // 0.5 s limit. Refuse searches and bulk rewrites big enough to outlast any step limit.
  const SEARCH_BUDGET = 1 << 27;
  const BULK_LIMIT = 1 << 23;
  const SP = String.prototype;
  function guardString(name, check) {
    const native = SP[name];
    defineProperty(SP, name, {
      value: {
        [name](a, b) {
          const str = typeof this === "string" || this === null || this === undefined ? this : StringCtor(this);
          if (typeof str === "string") check(str, a);
          return native.apply(str, arguments);
        },
      }[name],
      writable: true,
      enumerable: false,
      configurable: true,
    });
  }
  function searchBudget(str, pattern) {
    if (typeof pattern === "string" && pattern.length > 1 && str.length * pattern.length > SEARCH_BUDGET) {
      throw new RangeError("string search too large: " + str.length + " x " + pattern.length + " characters");
    }
  }
  function bulkLimit(str, pattern) {
    searchBudget(str, pattern);
    if (str.length > BULK_LIMIT) {
      throw new RangeError("string of " + str.length + " characters is over the " + BULK_LIMIT + " limit for this operation");
    }
  }
  for (const name of ["indexOf", "lastIndexOf", "includes", "split", "replace", "startsWith", "endsWith"]) {
    guardString(name, searchBudget);
  }
  for (const name of ["replaceAll", "normalize"]) guardString(name, bulkLimit);

  // Frozen prototypes make `obj.toString = f` fail silently in sloppy code (the "override
  // mistake"). Turn the properties people commonly override into accessors whose setter
  // defines an own property on the receiver instead.
  function enableOverride(obj, name) {
    const desc = getOwnPropertyDescriptor(obj, name);
    if (!desc || !("value" in desc) || !desc.configurable) return;
    const value = desc.value;
    defineProperty(obj, name, {
      get() {
        return value;
      },
      set(v) {
        if (this === obj) throw new TypeError("cannot assign to read only property '" + StringCtor(name) + "'");
        defineProperty(this, name, { value: v, writable: true, enumerable: true, configurable: true });
      },
      enumerable: desc.enumerable,
      configurable: false,
    });
  }
  for (const n of ["toString", "valueOf", "constructor", "hasOwnProperty", "toLocaleString", "isPrototypeOf"]) {
    enableOverride(O.prototype, n);
  }
  const errorCtors = [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError];
  if (typeof AggregateError === "function") errorCtors.push(AggregateError);
  if (typeof InternalError === "function") errorCtors.push(InternalError);
  for (const E of errorCtors) {
    for (const n of ["name", "message", "toString", "constructor"]) enableOverride(E.prototype, n);
  }
  for (const n of ["toString", "constructor", "push", "length"]) enableOverride(Array.prototype, n);
  enableOverride(FunctionProto, "toString");

  const seen = new Set([G]);
  function deepFreeze(root) {
    const stack = [root];
    while (stack.length) {
      const obj = stack.pop();
      if ((typeof obj !== "object" && typeof obj !== "function") || obj === null || seen.has(obj)) continue;
      seen.add(obj);
      freeze(obj);
      stack.push(getPrototypeOf(obj));
      for (const key of ownKeys(obj)) {
        const desc = getOwnPropertyDescriptor(obj, key);
        if (!desc) continue;
        if ("value" in desc) stack.push(desc.value);
        else {
          stack.push(desc.get);
          stack.push(desc.set);
        }
      }
    }
  }
  // Intrinsics that no global name reaches directly.
  const hidden = [
    getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map().entries()),
    getPrototypeOf(new Set().values()),
    getPrototypeOf(""[Symbol.iterator]()),
    getPrototypeOf(/a/[Symbol.matchAll]("")),
    getPrototypeOf((function* () {})()),
    getPrototypeOf((async function* () {})()),
    getPrototypeOf(Int8Array),
  ].concat(fnProtos);

  // ---- 2. per-request state -----------------------------------------------------------
  let R = O.create(null); // nflow's per-request values (payload, next, header...)
  let rid = 0; // incremented per request, so a stale closure can tell it is stale
  let touched = false; // the running step reached a promise API (see "Promise jobs" below)

  function lazy(name) {
    if (!(name in R)) {
      if (untold >= 0) tell();
      R[name] = REQ(name);
    }
    return R[name];
  }
  // Globals scripts may read and assign; stored in R so a new request starts clean.
  // The node's data and outputs are parsed from their JSON only if the script reads them.
  function nodeData() {
    if (R.nflow_data === undefined) R.nflow_data = jsonParse(R.__node[0]);
    return R.nflow_data;
  }
  const REQUEST_GLOBALS = {
    payload: null,
    next: null,
    nflow_data: nodeData,
    dromedary_data: nodeData,
    __outputs: function () {
      if (R.__outputs === undefined) R.__outputs = jsonParse(R.__node[1]);
      return R.__outputs;
    },
    __flow_name: null,
    __flow_app: null,
    current_box: null,
    prev_box: null,
    profile: null,
    auth_flag: null,
    url_access: null,
    header: lazy,
    form: lazy,
    post_data: lazy,
    vars: lazy,
    path_vars: lazy,
    nflow_endpoint: lazy,
    wid: lazy,
    env: lazy,
    url_base: lazy,
  };
  for (const name of O.keys(REQUEST_GLOBALS)) {
    const loader = REQUEST_GLOBALS[name];
    defineGlobal(name, {
      get: loader
        ? function () {
            return loader(name);
          }
        : function () {
            return R[name];
          },
      set(v) {
        R[name] = v;
      },
      enumerable: true,
    });
  }

  // ---- the c object (Echo context) ----------------------------------------------------
  function code(n) {
    return typeof n === "number" ? n : parseInt(n, 10);
  }
  function toBytes(data) {
    if (typeof data === "string") return data;
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (Array.isArray(data)) return new Uint8Array(data);
    return StringCtor(data);
  }
  const requestInfo = {
    method() {
      return lazy("__request").method;
    },
    userAgent() {
      return lazy("__request").user_agent;
    },
    host() {
      return lazy("__request").host;
    },
    remoteAddr() {
      return lazy("__request").remote_addr;
    },
    requestURI() {
      return lazy("__request").uri;
    },
    referer() {
      return lazy("__request").referer;
    },
    contentLength() {
      return lazy("__request").content_length;
    },
  };
  const c = {
    JSON(status, data) {
      call("c.write_json", [code(status), data === undefined ? null : data, ""]);
    },
    JSONPretty(status, data, indent) {
      call("c.write_json", [code(status), data === undefined ? null : data, typeof indent === "string" ? indent : "  "]);
    },
    JSONP(status, callback, data) {
      call("c.write_jsonp", [code(status), StringCtor(callback), data === undefined ? null : data]);
    },
    JSONBlob(status, bytes) {
      call("c.write", [code(status), "application/json", toBytes(bytes)]);
    },
    String(status, s) {
      call("c.write", [code(status), "text/plain; charset=UTF-8", StringCtor(s)]);
    },
    HTML(status, html) {
      call("c.write", [code(status), "text/html; charset=UTF-8", StringCtor(html)]);
    },
    HTMLBlob(status, bytes) {
      call("c.write", [code(status), "text/html; charset=UTF-8", toBytes(bytes)]);
    },
    XMLBlob(status, bytes) {
      call("c.write", [code(status), "application/xml; charset=UTF-8", toBytes(bytes)]);
    },
    Blob(status, contentType, bytes) {
      call("c.write", [code(status), StringCtor(contentType), toBytes(bytes)]);
    },
    NoContent(status) {
      call("c.write", [code(status), "", ""]);
    },
    Redirect(status, url) {
      call("c.redirect", [code(status), StringCtor(url)]);
    },
    Error(err) {
      call("c.error", [err && err.message ? StringCtor(err.message) : StringCtor(err)]);
    },
    File() {
      throw new TypeError("c.File is disabled: scripts cannot read server files");
    },
    Attachment() {
      throw new TypeError("c.Attachment is disabled: scripts cannot read server files");
    },
    Inline() {
      throw new TypeError("c.Inline is disabled: scripts cannot read server files");
    },
    Stream() {
      throw new TypeError("c.Stream is not supported; use c.Blob");
    },
    QueryParam(name) {
      const q = lazy("__query");
      const v = q[StringCtor(name)];
      return v && v.length ? v[0] : "";
    },
    QueryParams() {
      return lazy("__query");
    },
    QueryString() {
      return lazy("__request").query_string;
    },
    FormValue(name) {
      const f = lazy("form");
      const v = f[StringCtor(name)];
      return v && v.length ? v[0] : "";
    },
    FormParams() {
      return lazy("form");
    },
    MultipartForm() {
      return { value: lazy("form"), file: {} };
    },
    FormFile() {
      throw new TypeError("c.FormFile is not supported");
    },
    Param(name) {
      if (StringCtor(name) === "*") return lazy("__request").path.replace(/^\//, "");
      return "";
    },
    ParamNames() {
      return ["*"];
    },
    ParamValues() {
      return [lazy("__request").path.replace(/^\//, "")];
    },
    Path() {
      return "/*";
    },
    GetHeader(name) {
      return call("c.get_header", [StringCtor(name)]);
    },
    SetHeader(name, value) {
      call("c.set_header", [StringCtor(name), StringCtor(value)]);
    },
    Cookie(name) {
      const v = lazy("__cookies")[StringCtor(name)];
      if (v === undefined) throw new ErrorCtor("http: named cookie not present");
      return { name: StringCtor(name), value: v, Name: StringCtor(name), Value: v };
    },
    Cookies() {
      const all = lazy("__cookies");
      return O.keys(all).map((k) => ({ name: k, value: all[k], Name: k, Value: all[k] }));
    },
    SetCookie(cookie) {
      call("c.set_cookie", [cookie]);
    },
    RealIP() {
      return lazy("__request").real_ip;
    },
    Scheme() {
      return lazy("__request").scheme;
    },
    IsTLS() {
      return lazy("__request").scheme === "https";
    },
    IsWebSocket() {
      return false;
    },
    Request() {
      return requestInfo;
    },
    Get(key) {
      const store = R.__store || (R.__store = new MapCtor());
      return store.get(StringCtor(key));
    },
    Set(key, value) {
      const store = R.__store || (R.__store = new MapCtor());
      store.set(StringCtor(key), value);
    },
    Bind() {
      return undefined;
    },
    Validate() {
      throw new ErrorCtor("validator not registered");
    },
    Render() {
      throw new ErrorCtor("renderer not registered");
    },
  };

  // ---- plain helpers (pure JS, no host) -----------------------------------------------
  function find_element(path, obj) {
    let cur = obj;
    for (const part of StringCtor(path).split(".")) {
      if (cur === null || cur === undefined) throw new ErrorCtor("find_element: no element at '" + path + "'");
      if (Array.isArray(cur)) {
        const i = parseInt(part, 10);
        if (isNaN(i) || i < 0 || i >= cur.length) throw new ErrorCtor("find_element: no element at '" + path + "'");
        cur = cur[i];
      } else if (typeof cur === "object") {
        if (!O.prototype.hasOwnProperty.call(cur, part)) throw new ErrorCtor("find_element: no element at '" + path + "'");
        cur = cur[part];
      } else {
        throw new ErrorCtor("find_element: no element at '" + path + "'");
      }
    }
    return cur;
  }
  function url_values_to_map(values) {
    const out = {};
    if (values && typeof values === "object") {
      for (const k of O.keys(values)) {
        const v = values[k];
        out[k] = Array.isArray(v) ? v.slice() : [StringCtor(v)];
      }
    }
    return out;
  }
  function clean_json(s) {
    let t = StringCtor(s).trim();
    if (t.startsWith("```json")) t = t.slice(7);
    else if (t.startsWith("```")) t = t.slice(3);
    if (t.endsWith("```")) t = t.slice(0, -3);
    return t.trim();
  }
  const pad = (n) => n;
  const globals = {
    c: c,
    echo_context: c,
    find_element: find_element,
    url_values_to_map: url_values_to_map,
    new_map: function () {
      return {};
    },
    clean_json: clean_json,
    atob: function (s) {
      try {
        return nativeAtob(StringCtor(s));
      } catch (e) {
        return "";
      }
    },
    btoa: function (s) {
      return nativeBtoa(StringCtor(s));
    },
    // The clock is read through the host, like any other outside value, so a recorded run
    // replays with the times it saw.
    time_now_unix: function () {
      return Math.floor(Number(call("time_now_unix_nano", [])) / 1e9);
    },
    time_now_unix_nano: function () {
      return call("time_now_unix_nano", []);
    },
    time_now_day: () => pad(hostNow().getDate()),
    time_now_month: () => pad(hostNow().getMonth() + 1),
    time_now_year: () => hostNow().getFullYear(),
    time_now_hour: () => hostNow().getHours(),
    time_now_minute: () => hostNow().getMinutes(),
    time_now_second: () => hostNow().getSeconds(),
    time_now_weekday: () => hostNow().getDay(),
    config: {},
    ctx: {},
    require: function (name) {
      if (name === "console") return G.console;
      try {
        if (untold >= 0) tell();
        HOST["security.blocked"]("require");
      } catch (e) {
        // the error below is what the script sees
      }
      throw new ErrorCtor("require('" + StringCtor(name) + "') is not allowed in nflow scripts");
    },
  };
  // Host-backed functions named by the host (sessions, users, tokens, templates, plugins...).
  // go-redis command objects: the host returns {val, err}; Go-era scripts call
  // redis_hget(k, f).val().
  function redisCmd(r) {
    const v = r === null || r === undefined ? null : r.val;
    const e = r === null || r === undefined ? null : r.err;
    return {
      val: function () {
        return v;
      },
      err: function () {
        return e;
      },
      result: function () {
        if (e !== null && e !== undefined) throw new ErrorCtor(e);
        return v;
      },
      string: function () {
        return v === null || v === undefined ? "" : StringCtor(v);
      },
      toString: function () {
        return v === null || v === undefined ? "" : StringCtor(v);
      },
      toJSON: function () {
        return v;
      },
    };
  }
  for (const name of HOST_NAMES) {
    if (name.indexOf(".") >= 0 || name in globals) continue;
    globals[name] = name.startsWith("redis_")
      ? function () {
          return redisCmd(call(name, Array.prototype.slice.call(arguments)));
        }
      : function () {
          return call(name, Array.prototype.slice.call(arguments));
        };
  }
  // <name>_async(...) starts host function <name> and returns a Promise of its result, so
  // a step can wait on several at once (Promise.all). The host settles the promises (see
  // settle below) as the calls return. Starting one that cannot start (too many in flight)
  // throws at once.
  const AWAITABLE = __NF_AWAITABLE__;
  const PromiseNew = G.Promise;
  const awaiting = new MapCtor(); // call id -> [resolve, reject, is a redis call]
  function startAwaited(name, args, redis) {
    let id;
    try {
      id = ASYNC_START(name, args);
    } catch (e) {
      const m = ERR();
      if (m !== null && m !== undefined) throw new ErrorCtor(m);
      throw e;
    }
    touched = true;
    return new PromiseNew(function (resolve, reject) {
      awaiting.set(id, [resolve, reject, redis]);
    });
  }
  for (const name of AWAITABLE) {
    const redis = name.startsWith("redis_");
    globals[name + "_async"] = function () {
      return startAwaited(name, Array.prototype.slice.call(arguments), redis);
    };
  }
  for (const name of O.keys(globals)) {
    defineGlobal(name, { value: globals[name], writable: false, enumerable: false });
  }

  // Promise jobs are the only code that can run after main() returns. A step whose source
  // has no async/await/import and that never reaches a promise API cannot have queued one,
  // so run() returns its result at once, without the drain and the take() that follow
  // (most steps). These are the only ways to a promise without those keywords; each one
  // marks the step, which then takes the drained path. WeakRef, FinalizationRegistry,
  // Atomics and queueMicrotask, the other job sources, are gone (above).
  const PromiseG = G.Promise;
  const AsyncStackG = G.AsyncDisposableStack;
  function marking(value) {
    deepFreeze(value);
    return {
      get: function () {
        touched = true;
        return value;
      },
      enumerable: false,
    };
  }
  defineGlobal("Promise", marking(PromiseG));
  if (AsyncStackG !== undefined) defineGlobal("AsyncDisposableStack", marking(AsyncStackG));
  const nativeFromAsync = Array.fromAsync;
  if (nativeFromAsync !== undefined) {
    defineProperty(Array, "fromAsync", {
      value: function fromAsync() {
        touched = true;
        return nativeFromAsync.apply(this, arguments);
      },
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }

  // Freeze everything reachable from the globals that exist now (builtins, c, helpers), then
  // move every global binding onto GLOBALS, a frozen object between the global object and
  // its old prototype. Name lookups still find them there; a script can neither reassign
  // nor delete them. The global object keeps only what the engine made permanent itself,
  // so the only state a script can leave behind is a global it adds, which reset() finds
  // by a cheap count of the few own keys left (listing 160 bindings cost ~20 us a step).
  for (const key of ownKeys(G)) {
    const desc = getOwnPropertyDescriptor(G, key);
    if ("value" in desc) deepFreeze(desc.value);
    else {
      deepFreeze(desc.get);
      deepFreeze(desc.set);
    }
    if (!desc.configurable) continue;
    if ("value" in desc) desc.writable = false;
    defineGlobal(key, desc);
  }
  deepFreeze(GLOBALS);
  O.setPrototypeOf(G, GLOBALS);
  for (const h of hidden) deepFreeze(h);
  deepFreeze(REQUEST_GLOBALS);
  deepFreeze(requestInfo);

  // ---- 3. step compilation and running ------------------------------------------------
  const PromiseCtor = PromiseG;
  const PromiseResolve = PromiseG.resolve;
  const PromiseThen = PromiseG.prototype.then;
  const NEVER = new PromiseCtor(function () {});
  // An async main() (or auth()) settles while the host drains the job queue; until then
  // take() has no result. A rejection is rethrown by take().
  function thenable(out) {
    return out !== null && (typeof out === "object" || typeof out === "function") && typeof out.then === "function";
  }
  function watch(rec, out, isThenable) {
    if (isThenable) {
      rec.__pending = true;
      PromiseThen.call(
        PromiseResolve.call(PromiseCtor, out),
        function () {
          rec.__pending = false;
        },
        function (e) {
          rec.__pending = false;
          rec.__err = e;
          rec.__failed = true;
        }
      );
    }
  }
  function finish() {
    let p = R.payload;
    // A payload that is not a plain object becomes {} (the original crashed the server).
    if (p === null || typeof p !== "object" || Array.isArray(p)) p = {};
    const next = R.next;
    const out = [next === undefined || next === null ? "" : StringCtor(next), jsonStringify(p)];
    if (clockMode !== 0) out.push(tape);
    return out;
  }
  const steps = new MapCtor();
  const nodes = new MapCtor();
  // Compiled flows: the js nodes of an app version that run one after another inside one
  // evaluation (see flow()). Each entry is a table of [step function, node values, node id,
  // {output: index of the target in this table}].
  const flows = new MapCtor();
  // Own properties only, whatever the key: "__proto__" and the names of Object.prototype's
  // (frozen) properties are defined, as a plain assignment would not make them own.
  function put(obj, key, value) {
    if (key in ObjectProto) {
      defineProperty(obj, key, { value: value, writable: true, enumerable: true, configurable: true });
    } else {
      obj[key] = value;
    }
  }
  // A finished step's result, plus (for a compiled flow) the JSON of the payloads of the
  // nodes before it, merged in order, for the form session ("" when there were none).
  function finishFlow() {
    return flowDone(finish());
  }
  function flowDone(out) {
    untold = -1;
    const cur = unfinished();
    if (cur !== null) recorded(cur, out);
    if (out.length < 3) out.push(null);
    out.push(R.__delta === null ? "" : jsonStringify(R.__delta), R.__marks, R.__overran, R.__recChars);
    return out;
  }
  // A recorded node's payload after and clock tape; the characters kept so far this run are
  // counted, so the host can stop a long run from filling the heap with them.
  // The node of a recorded run's last chain that has not finished (it failed, or it waited
  // for a promise and take() finishes it), or null.
  function unfinished() {
    const chains = R.__chains;
    if (chains === undefined || chains.length === 0) return null;
    const last = chains[chains.length - 1];
    const cur = last.length ? last[last.length - 1] : null;
    return cur !== null && cur[1] === null ? cur : null;
  }
  function recorded(cur, out) {
    cur[1] = out[1];
    R.__recChars += out[1].length;
    if (clockMode !== 0) cur[2] = tape;
  }
  const ObjectProto = O.prototype;
  const hasOwn = ObjectProto.hasOwnProperty;
  // Forget the previous request: new records for nflow's globals and the request's
  // implicit globals, and delete any global property it added. Every global that existed at
  // start is permanent, so an unchanged count means nothing was added. A property a script
  // made permanent itself cannot be deleted: return false so the host discards this runtime.
  function reset() {
    R = O.create(null);
    rid++;
    awaiting.clear();
    untold = -1;
    // A script may also have sealed the global object or swapped its prototype (which is
    // where lookups of undeclared names go): both would reach the next request.
    if (getPrototypeOf(G) !== BASE_PROTO || !O.isExtensible(G)) return false;
    const keys = ownKeys(G);
    if (keys.length === BASE.size) return true;
    for (const key of keys) {
      if (!BASE.has(key)) {
        try {
          delete G[key];
        } catch (e) {
          return false;
        }
      }
    }
    return ownKeys(G).length === BASE.size;
  }
  const nf = {
    define(token, key, fn) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      steps.set(key, fn);
    },
    node(token, key, data, outputs, flow, app, box) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      nodes.set(key, [data, outputs, flow, app, box]);
    },
    // fresh: 1 starts a new request (reset first), 0 continues the current one.
    // preset: JSON of extra request values (auth trigger globals), or "".
    // sync: 1 when the step's source cannot create a promise job by syntax (no async,
    // await or import); its result then comes back at once unless it reached a promise API.
    // hi, lo: the run's random seed (used when fresh); clock: see setClock.
    run(token, fresh, key, nodeKey, payload, prev, preset, sync, hi, lo, clock) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      if (fresh && !reset()) return null;
      if (fresh) seedLater(hi, lo);
      setClock(clock);
      if (preset) {
        const p = jsonParse(preset);
        for (const k of O.keys(p)) R[k] = p[k];
      }
      const fn = steps.get(key);
      const n = nodes.get(nodeKey);
      R.payload = payload ? jsonParse(payload) : {};
      R.next = "output_1";
      R.__node = n;
      R.nflow_data = undefined;
      R.__outputs = undefined;
      R.__flow_name = n[2];
      R.__flow_app = n[3];
      R.current_box = n[4];
      R.prev_box = prev;
      touched = false;
      const out = fn();
      const pending = thenable(out);
      if (sync && !touched && !pending) return finish();
      watch(R, out, pending);
      // Never settles: the host runs the job queue until it is empty, inside this evaluation
      // and under its time limit, so no job of this step (an awaited main(), a stray .then)
      // can run later, during another request. take() then reads the result.
      return NEVER;
    },
    // The awaited host calls that returned (the host's batch): settle their promises;
    // the host then runs the jobs that follow, as for run().
    settle(token) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      const batch = SETTLED();
      for (let i = 0; i < batch.length; i++) {
        const item = batch[i];
        const w = awaiting.get(item[0]);
        if (w === undefined) continue;
        awaiting.delete(item[0]);
        if (item[1]) w[0](w[2] ? redisCmd(item[2]) : item[2]);
        else w[1](new ErrorCtor(item[2]));
      }
      return NEVER;
    },
    take(token) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      if (R.__failed) throw R.__err;
      if (R.__pending) return null;
      if (R.__auth) {
        R.__auth = false;
        const next = R.next;
        return next === undefined || next === null ? "" : StringCtor(next);
      }
      if (R.__flowPending) {
        R.__flowPending = false;
        return finishFlow();
      }
      return finish();
    },
    // Define a compiled flow from its steps and nodes (already defined by define/node):
    // spec is the JSON of [[step key, node key, node id, {output: table index}, 1 when the
    // step's source names the clock (taped in a recorded run)], ...].
    chain(token, key, spec) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      const table = [];
      for (const e of jsonParse(spec)) table.push([steps.get(e[0]), nodes.get(e[1]), e[2], e[3], e[4]]);
      flows.set(key, table);
    },
    // Run the compiled flow key from table index entry: each node as run() would run it, then,
    // while the node's output leads to another node of the table, that node, with the payload
    // the engine's loop would give it (the node's payload, plus what the form session holds
    // beyond it, "break" and the journey aside). At most budget nodes; a node that ran past
    // limitMs, or past the run's time (leftMs from now), ends the flow.
    // Returns [next, payload JSON, null, form delta JSON, marks, overran, characters a recorded
    // run keeps (undefined when not recorded)] of the last node run
    // (see finishFlow), or NEVER when that node reached a promise (then take() returns it).
    // marks: [start time, then per next node: its index, the output that led there, time].
    flow(token, fresh, key, entry, payload, prev, form, budget, limitMs, leftMs, hi, lo, rec) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      if (fresh && !reset()) return null;
      if (fresh) seedLater(hi, lo);
      setClock(0);
      const table = flows.get(key);
      // A recorded run (rec): each node's payload JSON before and after and its clock tape,
      // kept here for the host to read only if the run fails (see record()).
      let nodesRec = null;
      if (rec) {
        if (R.__chains === undefined) {
          R.__chains = [];
          R.__recChars = 0;
        }
        nodesRec = [];
        R.__chains.push(nodesRec);
      }
      const session = form ? jsonParse(form) : O.create(null);
      let sessionSize = form ? O.keys(session).length : 0;
      let started = nativePerfNow();
      const deadlineMs = started + leftMs;
      const marks = [started];
      R.__marks = marks;
      R.__overran = 0;
      R.__delta = null;
      let delta = null;
      let index = entry;
      let input = payload ? jsonParse(payload) : {};
      let before = prev;
      let inputJson = null; // the entry's payload is the host's own
      for (let count = 1; ; count++) {
        const e = table[index];
        const n = e[1];
        if (nodesRec !== null) {
          // Taped as the same node run on its own would be: only a source naming the clock.
          if (e[4]) {
            clockMode = 1;
            tape = [];
          } else {
            clockMode = 0;
          }
          nodesRec.push([inputJson, null, null]);
        }
        R.payload = input;
        R.next = "output_1";
        R.__node = n;
        R.nflow_data = undefined;
        R.__outputs = undefined;
        R.__flow_name = n[2];
        R.__flow_app = n[3];
        R.current_box = n[4];
        R.prev_box = before;
        touched = false;
        const out = e[0]();
        const pending = thenable(out);
        if (touched || pending) {
          watch(R, out, pending);
          R.__flowPending = true;
          return NEVER;
        }
        const result = finish();
        if (nodesRec !== null) recorded(nodesRec[nodesRec.length - 1], result);
        const next = result[0];
        if (count >= budget || next === "") return flowDone(result);
        const target = e[3][next];
        if (target === undefined) return flowDone(result);
        const output = jsonParse(result[1]);
        const brk = output["break"];
        if (brk === true || brk === "true") return flowDone(result);
        const now = nativePerfNow();
        if (now - started > limitMs) {
          R.__overran = 1;
          return flowDone(result);
        }
        if (now >= deadlineMs) return flowDone(result);
        // The loop updates the form session with each payload, and the next node gets the
        // payload plus what the session holds beyond it.
        // shared: the output holds an object the session holds too.
        const keys = O.keys(output);
        const size = keys.length;
        let shared = false;
        if (size) {
          if (delta === null) R.__delta = delta = O.create(null);
          for (let i = 0; i < size; i++) {
            const k = keys[i];
            const v = output[k];
            if (!hasOwn.call(session, k)) sessionSize++;
            if (v !== null && typeof v === "object") shared = true;
            put(session, k, v);
            put(delta, k, v);
          }
        }
        let extra = false;
        if (sessionSize > size) {
          for (const k of O.keys(session)) {
            if (k === "break" || k === "nflow_journey" || hasOwn.call(output, k)) continue;
            const v = session[k];
            if (v !== null && typeof v === "object") shared = true;
            put(output, k, v);
            extra = true;
          }
        }
        // Each node gets a payload of its own, as when the engine hands it over as JSON. The
        // output parsed from the node's JSON is one when it shares nothing with the session
        // (its values are strings, numbers, booleans or null): no second parse.
        const json = extra && (shared || nodesRec !== null) ? jsonStringify(output) : result[1];
        input = shared ? jsonParse(json) : output;
        if (nodesRec !== null) {
          inputJson = json;
          if (extra) R.__recChars += json.length;
        }
        before = e[2];
        index = target;
        untold = target;
        untoldAt = count;
        started = now;
        marks.push(target, next, now);
      }
    },
    // What a recorded run's chain number k of this run kept per node: [payload JSON before
    // (null for its first node), payload JSON after (null if it failed), clock tape or null].
    // The node that failed gets the tape it read so far. Node i of the chain, or (i = -1)
    // how many nodes it kept: one node at a time crosses to the host.
    record(token, k, i) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      const chains = R.__chains;
      if (chains === undefined || k >= chains.length) return null;
      const cur = unfinished();
      if (cur !== null && clockMode !== 0) cur[2] = tape;
      return i < 0 ? chains[k].length : chains[k][i];
    },
    // The marks of the flow that ran last (read after it failed).
    marks(token) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      return R.__marks === undefined ? null : R.__marks;
    },
    auth(token, key, preset, hi, lo, clock) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      if (!reset()) return null;
      seedLater(hi, lo);
      setClock(clock);
      const p = jsonParse(preset);
      for (const k of O.keys(p)) R[k] = p[k];
      R.__auth = true;
      const out = steps.get(key)();
      watch(R, out, thenable(out));
      return NEVER;
    },
    end(token) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      return reset();
    },
    // The clock tape of the step that just ran (read after a step failed, or after auth).
    clock(token) {
      if (token !== TOKEN) throw new TypeError("not allowed");
      return tape;
    },
  };
  freeze(nf);
  defineProperty(G, "__nf", { value: nf, writable: false, enumerable: false, configurable: false });

  const BASE = new Set(ownKeys(G));
  const BASE_PROTO = getPrototypeOf(G);
})();
0;
