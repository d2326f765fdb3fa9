// The Squall console: a page that calls the server's own APIs (Lambda, CloudWatch Logs,
// CloudWatch metrics, /squall/*), each request SigV4-signed here with the credentials of whoever
// signed in. The server grants the console nothing of its own: what a user may see is what
// their policies allow.

import { awsEncode, signatureHeaders } from "./sigv4.js";

const STORE = "squall.console.credentials";
const LOGS_EVERY_MS = 2000;
const METRICS_EVERY_MS = 15000;
const AUTH_ERRORS = new Set(["UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
  "MissingAuthenticationTokenException", "IncompleteSignatureException", "InvalidClientTokenId", "ExpiredToken"]);

const state = { config: { region: "us-east-1", authentication: true }, skewMs: 0, timers: [], view: 0 };

// ---- DOM helpers (no innerHTML: every value is text) ---------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null) node.setAttribute(key, value);
  for (const child of children.flat()) if (child != null) node.append(child instanceof Node ? child : String(child));
  return node;
}

const main = () => document.getElementById("main");

function show(...children) {
  const target = main();
  target.replaceChildren(...children.flat().filter(Boolean));
}

function panel(title, id, ...body) {
  return el("section", { class: "panel", id }, el("h2", { text: title }), ...body);
}

function kv(rows) {
  const list = el("dl", { class: "kv" });
  for (const [key, value] of rows) {
    if (value == null || value === "") continue;
    list.append(el("dt", { text: key }), el("dd", {}, value));
  }
  return list;
}

function table(columns, rows, empty = "None.") {
  if (!rows.length) return el("p", { class: "muted", text: empty });
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { text: c })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => el("td", {}, cell ?? ""))))));
}

function errorBox(error) {
  const code = error && error.code ? `${error.code}: ` : "";
  return el("p", { class: "error" }, code + (error && error.message ? error.message : String(error)));
}

function fmtTime(value) {
  if (!value) return "";
  const date = typeof value === "number" ? new Date(value) : new Date(String(value).replace(/\+0000$/, "Z"));
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtNumber(value, digits = 0) {
  if (value == null || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function badge(text) {
  const kind = String(text || "").toLowerCase();
  return el("span", { class: `badge badge-${kind.replace(/[^a-z]/g, "")}`, text: text || "—" });
}

// ---- credentials -------------------------------------------------------------------------------------
function credentials() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (stored && stored.expiration && Date.parse(stored.expiration) <= Date.now()) {
      sessionStorage.removeItem(STORE);
      return null;
    }
    return stored;
  } catch {
    return null;
  }
}

function saveCredentials(value) {
  sessionStorage.setItem(STORE, JSON.stringify(value));
}

function signOut(message) {
  sessionStorage.removeItem(STORE);
  stopTimers();
  renderSignIn(message);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

class SignInNeeded extends Error {}

// ---- the API -------------------------------------------------------------------------------------------
function encodePath(segments) {
  return "/" + segments.map((s) => awsEncode(String(s))).join("/");
}

async function call(service, method, path, { query = [], headers = {}, body = null } = {}) {
  const sent = { ...headers };
  if (state.config.authentication) {
    const creds = credentials();
    if (!creds) throw new SignInNeeded("Sign in to continue.");
    Object.assign(sent, await signatureHeaders({
      method, path, query, host: location.host, body, service, region: creds.region || state.config.region,
      credentials: creds, now: new Date(Date.now() + state.skewMs),
    }));
  }
  const search = query.length ? "?" + query.map(([k, v]) => `${awsEncode(k)}=${awsEncode(String(v))}`).join("&") : "";
  const response = await fetch(path + search, { method, headers: sent, body, cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    let document = {};
    try {
      document = await response.clone().json();
    } catch { /* not JSON */ }
    const code = String(response.headers.get("x-amzn-errortype") || document.__type || document.Type || document.code || "")
      .split(":")[0].split("#").pop();
    const error = new ApiError(response.status, code, document.message || document.Message || response.statusText);
    if (AUTH_ERRORS.has(code) && state.config.authentication) {
      signOut(`${code}: ${error.message}`);
      throw new SignInNeeded(error.message);
    }
    throw error;
  }
  return response;
}

async function lambda(method, segments, query = []) {
  const response = await call("lambda", method, encodePath(segments), { query });
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

async function squall(path, query = []) {
  const response = await call("lambda", "GET", path, { query });
  return response.json();
}

async function logs(operation, params) {
  const response = await call("logs", "POST", "/", {
    headers: { "X-Amz-Target": `Logs_20140328.${operation}`, "Content-Type": "application/x-amz-json-1.1" },
    body: JSON.stringify(params),
  });
  return response.json();
}

async function metrics(operation, params) {
  const response = await call("monitoring", "POST", "/", {
    headers: { "X-Amz-Target": `GraniteServiceVersion20100801.${operation}`, "Content-Type": "application/x-amz-json-1.0" },
    body: JSON.stringify(params),
  });
  return response.json();
}

async function listFunctions() {
  const found = [];
  let marker = null;
  do {
    const page = await lambda("GET", ["2015-03-31", "functions"], marker ? [["Marker", marker]] : []);
    found.push(...(page.Functions || []));
    marker = page.NextMarker;
  } while (marker);
  return found;
}

// ---- timers (stopped when the view changes) ----------------------------------------------------------
function every(ms, fn) {
  const view = state.view;
  let stopped = false;
  const tick = async () => {
    if (stopped || view !== state.view) return;
    try {
      await fn();
    } catch (error) {
      if (error instanceof SignInNeeded) return;
    }
    if (!stopped && view === state.view) state.timers.push(setTimeout(tick, ms));
  };
  tick();
  return () => { stopped = true; };
}

function stopTimers() {
  state.view += 1;
  for (const timer of state.timers) clearTimeout(timer);
  state.timers = [];
}

// ---- sign-in -------------------------------------------------------------------------------------------
function renderSignIn(message) {
  stopTimers();
  setHeader([]);
  const keyId = el("input", { id: "access-key-id", name: "access-key-id", autocomplete: "username", required: true, spellcheck: "false", placeholder: "AKIA…" });
  const secret = el("input", { id: "secret-access-key", name: "secret-access-key", type: "password", autocomplete: "current-password", required: true });
  const token = el("input", { id: "session-token", name: "session-token", autocomplete: "off", spellcheck: "false" });
  const region = el("input", { id: "region", name: "region", value: state.config.region, required: true, spellcheck: "false" });
  const status = el("p", { class: "error", role: "alert" }, message || "");
  if (!message) status.hidden = true;
  const form = el("form", { class: "sign-in", id: "sign-in" },
    el("h1", { text: "Sign in to Squall" }),
    el("p", { class: "muted" }, "Use an access key Squall issued (", el("code", { text: "squall credentials" }),
      " prints the administrator's), or open the one-time link ", el("code", { text: "squall console" }), " prints."),
    el("label", { for: "access-key-id", text: "Access key ID" }), keyId,
    el("label", { for: "secret-access-key", text: "Secret access key" }), secret,
    el("details", {}, el("summary", { text: "Session token and region" }),
      el("label", { for: "session-token", text: "Session token (temporary credentials only)" }), token,
      el("label", { for: "region", text: "Region" }), region),
    status,
    el("button", { type: "submit", class: "primary", id: "sign-in-button", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.hidden = true;
    saveCredentials({
      accessKeyId: keyId.value.trim(), secretAccessKey: secret.value.trim(), sessionToken: token.value.trim() || null,
      region: region.value.trim() || state.config.region,
    });
    try {
      await lambda("GET", ["2015-03-31", "functions"], [["MaxItems", "1"]]);
      if (!location.hash || location.hash === "#" || location.hash.startsWith("#code=")) location.hash = "#/";  // hashchange routes
      else route();
    } catch (error) {
      sessionStorage.removeItem(STORE);
      status.textContent = error instanceof ApiError ? `${error.code || error.status}: ${error.message}` : String(error.message || error);
      status.hidden = false;
    }
  });
  show(form);
  keyId.focus();
}

async function exchangeCode(code) {
  history.replaceState(null, "", location.pathname + "#/");  // the code is single use: off the address bar
  const response = await fetch("session", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
    cache: "no-store", credentials: "omit",
  });
  const document = await response.json().catch(() => ({}));
  if (!response.ok) {
    sessionStorage.removeItem(STORE);
    renderSignIn(document.Message || "This sign-in link is invalid, expired or already used.");
    return false;
  }
  saveCredentials({
    accessKeyId: document.AccessKeyId, secretAccessKey: document.SecretAccessKey, sessionToken: document.SessionToken,
    expiration: document.Expiration, identity: document.Identity, region: document.Region || state.config.region,
  });
  return true;
}

// ---- header --------------------------------------------------------------------------------------------
function setHeader(crumbs) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...crumbs.map((c) => (c.href ? el("a", { href: c.href, text: c.text }) : el("span", { text: c.text }))));
  const who = document.getElementById("who");
  const button = document.getElementById("sign-out");
  const creds = credentials();
  if (!state.config.authentication) {
    who.textContent = "authentication off";
    button.hidden = true;
  } else if (creds) {
    who.textContent = creds.identity ? creds.identity.replace(/^arn:aws:(iam|sts)::\d+:/, "") : creds.accessKeyId;
    who.title = creds.expiration ? `${creds.accessKeyId}, until ${fmtTime(creds.expiration)}` : creds.accessKeyId;
    button.hidden = false;
  } else {
    who.textContent = "";
    button.hidden = true;
  }
}

// ---- the list of functions -------------------------------------------------------------------------------
async function renderList() {
  setHeader([{ text: "Functions" }]);
  const filter = el("input", { type: "search", id: "filter", placeholder: "Filter by name", "aria-label": "Filter functions" });
  const holder = el("div", { id: "functions" }, el("p", { class: "muted", text: "Loading functions…" }));
  const refresh = el("button", { type: "button", class: "quiet", text: "Refresh", onclick: () => load() });
  show(el("div", { class: "page-head" }, el("h1", { text: "Functions" }), filter, refresh), el("section", { class: "panel wide" }, holder));
  let all = [];
  const paint = () => {
    const needle = filter.value.trim().toLowerCase();
    const rows = all.filter((f) => f.FunctionName.toLowerCase().includes(needle));
    const body = rows.map((f) => {
      const stateCell = el("td", { class: "state" }, badge(f.State || "…"));
      if (!f.State) {
        lambda("GET", ["2015-03-31", "functions", f.FunctionName, "configuration"]).then((c) => {
          f.State = c.State;
          stateCell.replaceChildren(badge(c.State));
        }).catch(() => stateCell.replaceChildren(badge("?")));
      }
      return el("tr", { "data-function": f.FunctionName },
        el("td", {}, el("a", { href: `#/functions/${encodeURIComponent(f.FunctionName)}`, class: "fn-link", text: f.FunctionName })),
        el("td", { text: f.Runtime || f.PackageType || "" }),
        el("td", { class: "num", text: `${f.MemorySize} MB` }),
        el("td", { text: fmtTime(f.LastModified) }),
        stateCell);
    });
    holder.replaceChildren(rows.length
      ? el("table", { class: "functions" },
        el("thead", {}, el("tr", {}, ["Name", "Runtime", "Memory", "Last modified", "State"].map((c) => el("th", { text: c })))),
        el("tbody", {}, body))
      : el("p", { class: "muted" }, all.length ? "No function matches." : "No functions yet. Deploy one with ",
        all.length ? null : el("code", { text: "squall deploy" }), all.length ? null : "."));
  };
  const load = async () => {
    try {
      all = (await listFunctions()).sort((a, b) => a.FunctionName.localeCompare(b.FunctionName));
      paint();
    } catch (error) {
      if (!(error instanceof SignInNeeded)) holder.replaceChildren(errorBox(error));
    }
  };
  filter.addEventListener("input", paint);
  await load();
}

// ---- one function -----------------------------------------------------------------------------------------
async function renderFunction(name) {
  setHeader([{ text: "Functions", href: "#/" }, { text: name }]);
  const head = el("div", { class: "page-head" }, el("h1", { text: name }));
  const charts = el("div", { class: "charts", id: "charts" });
  const left = el("div", { class: "column" });
  const right = el("div", { class: "column side" });
  show(head, charts, el("div", { class: "columns" }, left, right));

  let config;
  try {
    config = await lambda("GET", ["2015-03-31", "functions", name, "configuration"]);
  } catch (error) {
    if (!(error instanceof SignInNeeded)) show(head, errorBox(error), el("p", {}, el("a", { href: "#/", text: "Back to the functions" })));
    return;
  }
  head.append(badge(config.State), el("span", { class: "muted", text: `${config.Runtime || config.PackageType} · ${config.MemorySize} MB · ${config.Timeout} s` }));

  left.append(invokePanel(name), logsPanel(name));
  const sections = {
    config: panel("Configuration", "configuration", configView(config)),
    versions: panel("Versions and aliases", "versions", loading()),
    triggers: panel("Triggers", "triggers", loading()),
    url: panel("Function URL", "function-url", loading()),
    concurrency: panel("Concurrency", "concurrency", loading()),
    mappings: panel("Event source mappings", "event-source-mappings", loading()),
    queue: panel("Async queue", "async-queue", loading()),
  };
  right.append(...Object.values(sections));
  metricsCharts(name, charts);
  fill(sections.versions, versionsView(name));
  fill(sections.triggers, triggersView(name));
  fill(sections.url, urlView(name));
  fill(sections.concurrency, concurrencyView(name));
  fill(sections.mappings, mappingsView(name, config.FunctionArn));
  fill(sections.queue, queueView(name));
}

function loading() {
  return el("p", { class: "muted loading", text: "Loading…" });
}

async function fill(section, promise) {
  let content;
  try {
    content = await promise;
  } catch (error) {
    if (error instanceof SignInNeeded) return;
    content = errorBox(error);
  }
  const title = section.querySelector("h2");
  section.replaceChildren(title, ...[content].flat());
}

function configView(c) {
  const env = Object.keys((c.Environment && c.Environment.Variables) || {});
  return kv([
    ["Runtime", c.Runtime || c.PackageType],
    ["Handler", c.Handler],
    ["Memory", `${c.MemorySize} MB`],
    ["Timeout", `${c.Timeout} s`],
    ["Ephemeral storage", c.EphemeralStorage ? `${c.EphemeralStorage.Size} MB` : null],
    ["Architecture", (c.Architectures || []).join(", ")],
    ["Role", c.Role],
    ["State", c.StateReason ? `${c.State}: ${c.StateReason}` : c.State],
    ["Last update", c.LastUpdateStatus],
    ["Last modified", fmtTime(c.LastModified)],
    ["Code", c.CodeSize != null ? `${fmtNumber(c.CodeSize / 1024, 1)} KB, sha256 ${String(c.CodeSha256 || "").slice(0, 12)}…` : null],
    ["Layers", (c.Layers || []).map((l) => l.Arn.split(":").slice(-2).join(":")).join(", ")],
    ["Environment", env.length ? env.join(", ") : null],
    ["Description", c.Description],
    ["ARN", c.FunctionArn],
  ]);
}

async function versionsView(name) {
  const [versions, aliases] = await Promise.all([
    lambda("GET", ["2015-03-31", "functions", name, "versions"]),
    lambda("GET", ["2015-03-31", "functions", name, "aliases"]),
  ]);
  return [
    el("h3", { text: "Versions" }),
    table(["Version", "Last modified", "Description"],
      (versions.Versions || []).map((v) => [v.Version, fmtTime(v.LastModified), v.Description || ""])),
    el("h3", { text: "Aliases" }),
    table(["Alias", "Version", "Routing"], (aliases.Aliases || []).map((a) => [a.Name, a.FunctionVersion,
      Object.entries((a.RoutingConfig && a.RoutingConfig.AdditionalVersionWeights) || {}).map(([v, w]) => `${v}: ${Math.round(w * 100)}%`).join(", ")]),
    "No aliases."),
  ];
}

function summary(value) {
  if (value == null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function triggersView(name) {
  const found = (await squall("/squall/triggers", [["function", name]])).triggers || [];
  return table(["Kind", "Source", "Detail"], found.map((t) => [
    t.kind || t.Kind || t.type || "",
    t.source || t.Source || t.id || t.TriggerId || "",
    summary(t.detail || t.state || t.rule || t.schedule || ""),
  ]), "No triggers.");
}

async function urlView(name) {
  try {
    const url = await lambda("GET", ["2021-10-31", "functions", name, "url"]);
    return kv([
      ["URL", el("a", { href: url.FunctionUrl, target: "_blank", rel: "noopener noreferrer", text: url.FunctionUrl })],
      ["Auth type", url.AuthType],
      ["Invoke mode", url.InvokeMode],
      ["CORS", url.Cors ? JSON.stringify(url.Cors) : null],
    ]);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return el("p", { class: "muted", text: "No function URL." });
    throw error;
  }
}

async function concurrencyView(name) {
  const [reserved, provisioned] = await Promise.all([
    lambda("GET", ["2019-09-30", "functions", name, "concurrency"]),
    lambda("GET", ["2019-09-30", "functions", name, "provisioned-concurrency"], [["List", "ALL"]]),
  ]);
  const configs = provisioned.ProvisionedConcurrencyConfigs || [];
  return [
    kv([["Reserved", reserved.ReservedConcurrentExecutions != null ? String(reserved.ReservedConcurrentExecutions) : "unreserved (the account's pool)"]]),
    el("h3", { text: "Provisioned" }),
    table(["Qualifier", "Requested", "Allocated", "Available", "Status"], configs.map((p) => [
      String(p.FunctionArn || "").split(":").pop(), p.RequestedProvisionedConcurrentExecutions,
      p.AllocatedProvisionedConcurrentExecutions, p.AvailableProvisionedConcurrentExecutions,
      p.StatusReason ? `${p.Status}: ${p.StatusReason}` : p.Status,
    ]), "No provisioned concurrency."),
  ];
}

async function mappingsView(name, arn) {
  const listed = await lambda("GET", ["2015-03-31", "event-source-mappings"], [["FunctionName", name]]);
  const mappings = listed.EventSourceMappings || [];
  let live = [];
  try {
    const report = await squall("/squall/event-sources");
    live = (report.mappings || []).filter((m) => JSON.stringify(m).includes(arn) || JSON.stringify(m).includes(`"${name}"`));
  } catch (error) {
    if (error instanceof SignInNeeded) throw error;
  }
  const byUuid = new Map(live.map((m) => [m.uuid || m.UUID, m]));
  return table(["Source", "State", "Batch", "Last result", "Now"], mappings.map((m) => {
    const now = byUuid.get(m.UUID);
    return [m.EventSourceArn || summary(m.SelfManagedEventSource || m.Topics), m.State, m.BatchSize,
      m.LastProcessingResult || "", now ? summary(now.state || now.consumer || now.last_result || now) : ""];
  }), "No event source mappings.");
}

async function queueView(name) {
  const report = await squall("/squall/queue", [["function", name]]);
  const rows = [];
  const mine = Array.isArray(report.functions) ? report.functions.find((f) => f.function === name) : null;
  if (Array.isArray(report.functions)) {
    delete report.functions;
    if (mine) { delete mine.function; Object.assign(report, mine); }
  }
  const walk = (prefix, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix} · ${k}` : k, v);
    } else {
      rows.push([prefix.replace(/_/g, " "), Array.isArray(value) ? (value.length ? JSON.stringify(value) : "none") : String(value)]);
    }
  };
  walk("", report);
  return rows.length ? kv(rows.slice(0, 30)) : el("p", { class: "muted", text: "Nothing queued." });
}

// ---- invoke --------------------------------------------------------------------------------------------
function invokePanel(name) {
  const key = `squall.console.payload.${name}`;
  const editor = el("textarea", { id: "payload", spellcheck: "false", rows: "4", "aria-label": "Payload (JSON)" });
  editor.value = sessionStorage.getItem(key) || '{\n  "hello": "world"\n}';
  const validity = el("span", { class: "validity", id: "payload-validity" });
  const qualifier = el("input", { id: "qualifier", placeholder: "$LATEST", size: "10", "aria-label": "Version or alias", spellcheck: "false" });
  const button = el("button", { type: "button", class: "primary", id: "invoke", text: "Invoke" });
  const result = el("div", { id: "invoke-result", class: "result" });
  const check = () => {
    try {
      JSON.parse(editor.value || "null");
      validity.textContent = "valid JSON";
      validity.className = "validity ok";
      button.disabled = false;
      return true;
    } catch (error) {
      validity.textContent = error.message;
      validity.className = "validity bad";
      button.disabled = true;
      return false;
    }
  };
  editor.addEventListener("input", () => { sessionStorage.setItem(key, editor.value); check(); });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) button.click();
  });
  button.addEventListener("click", async () => {
    if (!check()) return;
    button.disabled = true;
    result.replaceChildren(el("p", { class: "muted", text: "Invoking…" }));
    const started = performance.now();
    try {
      const query = qualifier.value.trim() ? [["Qualifier", qualifier.value.trim()]] : [];
      const response = await call("lambda", "POST", encodePath(["2015-03-31", "functions", name, "invocations"]), {
        query, body: editor.value || "null",
        headers: { "Content-Type": "application/json", "X-Amz-Log-Type": "Tail", "X-Amz-Invocation-Type": "RequestResponse" },
      });
      const elapsed = performance.now() - started;
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* as is */ }
      const functionError = response.headers.get("x-amz-function-error");
      const tail = decodeBase64(response.headers.get("x-amz-log-result"));
      result.replaceChildren(
        el("div", { class: "result-head" },
          el("span", { class: functionError ? "badge badge-failed" : "badge badge-active", id: "invoke-status",
            text: functionError ? `Function error: ${functionError}` : `${response.status} OK` }),
          el("span", { class: "muted", text: `version ${response.headers.get("x-amz-executed-version") || "?"} · ${Math.round(elapsed)} ms round trip` })),
        el("h3", { text: "Response" }),
        el("pre", { class: "payload", id: "invoke-payload", text: shown }),
        tail ? el("h3", { text: "Log tail" }) : null,
        tail ? el("pre", { class: "log-tail", id: "invoke-log", text: tail }) : null);
      setTimeout(() => document.dispatchEvent(new CustomEvent("squall:invoked")), 300);
    } catch (error) {
      if (!(error instanceof SignInNeeded)) result.replaceChildren(errorBox(error));
    } finally {
      button.disabled = !check();
    }
  });
  check();
  return panel("Invoke", "invoke-panel",
    editor,
    el("div", { class: "toolbar" }, button, qualifier, validity, el("span", { class: "muted hint", text: "Ctrl+Enter" })),
    result);
}

function decodeBase64(value) {
  if (!value) return "";
  try {
    const raw = atob(value);
    return new TextDecoder().decode(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
  } catch {
    return "";
  }
}

// ---- live logs ------------------------------------------------------------------------------------------
function logsPanel(name) {
  const group = `/aws/lambda/${name}`;
  const list = el("ol", { class: "logs", id: "live-logs" });
  const status = el("span", { class: "muted", id: "logs-status", text: "" });
  const pause = el("input", { type: "checkbox", id: "logs-follow", checked: true });
  const seen = new Set();
  let since = Date.now() - 15 * 60 * 1000;
  const clear = el("button", { type: "button", class: "quiet", text: "Clear", onclick: () => list.replaceChildren() });
  const poll = async () => {
    if (!pause.checked) return;
    let token;
    let added = 0;
    const follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    try {
      do {
        const page = await logs("FilterLogEvents", { logGroupName: group, startTime: since, ...(token ? { nextToken: token } : {}) });
        for (const event of page.events || []) {
          const id = event.eventId || `${event.logStreamName}/${event.timestamp}/${event.message}`;
          if (seen.has(id)) continue;
          seen.add(id);
          added += 1;
          list.append(el("li", {},
            el("time", { text: new Date(event.timestamp).toLocaleTimeString() }),
            el("span", { class: "message", text: String(event.message).replace(/\n$/, "") })));
          since = Math.max(since, event.timestamp);
        }
        token = page.nextToken;
      } while (token);
      status.textContent = `following ${group}`;
      status.className = "muted";
    } catch (error) {
      if (error instanceof SignInNeeded) throw error;
      if (error instanceof ApiError && error.code === "ResourceNotFoundException") {
        status.textContent = "no logs yet";
      } else {
        status.textContent = `${error.code || ""} ${error.message}`;
        status.className = "error-text";
      }
    }
    while (list.children.length > 500) list.firstElementChild.remove();
    if (added && follow) list.scrollTop = list.scrollHeight;
  };
  every(LOGS_EVERY_MS, poll);
  const view = state.view;
  document.addEventListener("squall:invoked", () => { if (view === state.view) poll().catch(() => {}); });
  return panel("Live logs", "logs-panel",
    el("div", { class: "toolbar" }, el("label", { class: "inline" }, pause, " Follow"), clear, status),
    list);
}

// ---- metrics --------------------------------------------------------------------------------------------
const CHARTS = [
  { id: "invocations", title: "Invocations", metric: "Invocations", stat: "Sum", unit: "" },
  { id: "errors", title: "Errors", metric: "Errors", stat: "Sum", unit: "" },
  { id: "throttles", title: "Throttles", metric: "Throttles", stat: "Sum", unit: "" },
];

function metricQuery(id, name, metric, stat) {
  return { Id: id, MetricStat: { Metric: { Namespace: "AWS/Lambda", MetricName: metric, Dimensions: [{ Name: "FunctionName", Value: name }] }, Period: 60, Stat: stat } };
}

function seriesOf(result, start) {
  // 60 one-minute buckets, oldest first
  const values = new Array(60).fill(null);
  const stamps = result ? result.Timestamps || [] : [];
  stamps.forEach((stamp, i) => {
    const ms = typeof stamp === "number" ? (stamp < 1e12 ? stamp * 1000 : stamp) : Date.parse(stamp);
    const bucket = Math.floor((ms - start) / 60000);
    if (bucket >= 0 && bucket < 60) values[bucket] = (values[bucket] || 0) + Number(result.Values[i]);
  });
  return values;
}

function metricsCharts(name, holder) {
  const cards = {};
  for (const chart of [...CHARTS, { id: "duration", title: "Duration", unit: "ms" }]) {
    const number = el("span", { class: "big", text: "–" });
    const note = el("span", { class: "muted small" });
    const box = el("div", { class: "chart-box" });
    cards[chart.id] = { number, note, box, card: el("figure", { class: "chart", id: `chart-${chart.id}`, "data-total": "" },
      el("figcaption", {}, el("span", { text: chart.title }), number), box, note) };
    holder.append(cards[chart.id].card);
  }
  let percentiles = true;
  const refresh = async () => {
    const end = Math.ceil(Date.now() / 60000) * 60000;
    const start = end - 60 * 60000;
    const window = { StartTime: Math.floor(start / 1000), EndTime: Math.floor(end / 1000) };
    try {
      const counts = await metrics("GetMetricData", { MetricDataQueries: CHARTS.map((c) => metricQuery(c.id, name, c.metric, c.stat)), ...window });
      const byId = Object.fromEntries((counts.MetricDataResults || []).map((r) => [r.Id, r]));
      for (const chart of CHARTS) {
        const values = seriesOf(byId[chart.id], start);
        const total = values.reduce((sum, v) => sum + (v || 0), 0);
        const card = cards[chart.id];
        card.card.setAttribute("data-total", String(total));
        card.number.textContent = fmtNumber(total);
        card.note.textContent = "last hour, per minute (Sum)";
        card.box.replaceChildren(barChart(values, start, chart.id === "errors" || chart.id === "throttles" ? "bad" : "good"));
      }
    } catch (error) {
      if (error instanceof SignInNeeded) throw error;
      for (const chart of CHARTS) cards[chart.id].box.replaceChildren(errorBox(error));
    }
    const card = cards.duration;
    let lines = null;
    if (percentiles) {
      try {
        const d = await metrics("GetMetricData", { MetricDataQueries: [metricQuery("p50", name, "Duration", "p50"), metricQuery("p99", name, "Duration", "p99")], ...window });
        const byId = Object.fromEntries((d.MetricDataResults || []).map((r) => [r.Id, r]));
        lines = [{ label: "p50", values: seriesOf(byId.p50, start), cls: "line-a" }, { label: "p99", values: seriesOf(byId.p99, start), cls: "line-b" }];
      } catch (error) {
        if (error instanceof SignInNeeded) throw error;
        percentiles = false;  // an older server: Average and Maximum instead
      }
    }
    if (!lines) {
      try {
        const d = await metrics("GetMetricData", { MetricDataQueries: [metricQuery("avg", name, "Duration", "Average"), metricQuery("max", name, "Duration", "Maximum")], ...window });
        const byId = Object.fromEntries((d.MetricDataResults || []).map((r) => [r.Id, r]));
        lines = [{ label: "avg", values: seriesOf(byId.avg, start), cls: "line-a" }, { label: "max", values: seriesOf(byId.max, start), cls: "line-b" }];
      } catch (error) {
        if (error instanceof SignInNeeded) throw error;
        card.box.replaceChildren(errorBox(error));
        return;
      }
    }
    const latest = (values) => [...values].reverse().find((v) => v != null);
    const last = lines.map((l) => `${l.label} ${latest(l.values) != null ? fmtNumber(latest(l.values), 1) + " ms" : "–"}`);
    card.number.textContent = latest(lines[0].values) != null ? `${fmtNumber(latest(lines[0].values), 1)} ms` : "–";
    card.note.textContent = `${last.join(" · ")}${percentiles ? "" : " (percentiles unavailable)"}`;
    card.card.setAttribute("data-stats", lines.map((l) => l.label).join(","));
    card.box.replaceChildren(lineChart(lines, start));
  };
  every(METRICS_EVERY_MS, refresh);
  const view = state.view;
  document.addEventListener("squall:invoked", () => { if (view === state.view) refresh().catch(() => {}); });
}

const W = 300, H = 96, PAD_L = 30, PAD_R = 6, PAD_B = 16, PAD_T = 6;

function axes(max, start, unit = "") {
  const x0 = PAD_L, y0 = H - PAD_B;
  const group = svg("g", { class: "axes" },
    svg("line", { x1: x0, y1: y0, x2: W - PAD_R, y2: y0 }),
    svg("text", { x: x0 - 4, y: PAD_T + 8, "text-anchor": "end" }, fmtNumber(max, max < 10 ? 1 : 0) + unit),
    svg("text", { x: x0 - 4, y: y0, "text-anchor": "end" }, "0"),
    svg("text", { x: x0, y: H - 3 }, new Date(start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
    svg("text", { x: W - PAD_R, y: H - 3, "text-anchor": "end" }, "now"));
  return group;
}

function barChart(values, start, tone) {
  const max = Math.max(1, ...values.map((v) => v || 0));
  const width = (W - PAD_L - PAD_R) / 60;
  const plot = H - PAD_B - PAD_T;
  const bars = values.map((v, i) => {
    if (!v) return null;
    const h = Math.max(1.5, (v / max) * plot);
    return svg("rect", { class: `bar ${tone}`, x: (PAD_L + i * width + 0.5).toFixed(1), y: (H - PAD_B - h).toFixed(1), width: Math.max(1, width - 1).toFixed(1), height: h.toFixed(1) },
      svg("title", {}, `${new Date(start + i * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${fmtNumber(v, 2)}`));
  });
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "none" }, axes(max, start), bars);
}

function lineChart(lines, start) {
  const max = Math.max(1, ...lines.flatMap((l) => l.values.map((v) => v || 0)));
  const step = (W - PAD_L - PAD_R) / 59;
  const plot = H - PAD_B - PAD_T;
  const paths = lines.map((line) => {
    const points = line.values.map((v, i) => (v == null ? null : [PAD_L + i * step, H - PAD_B - (v / max) * plot]));
    let d = "";
    let pen = false;
    for (const p of points) {
      if (!p) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)} `;
      pen = true;
    }
    const dots = points.filter(Boolean).map((p) => svg("circle", { class: line.cls, cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: "1.8" }));
    return svg("g", {}, svg("path", { class: `line ${line.cls}`, d: d.trim() || "M0,0" }), dots);
  });
  const legend = svg("g", { class: "legend" }, lines.map((l, i) =>
    svg("text", { x: W - PAD_R - 10 - (lines.length - 1 - i) * 30, y: PAD_T + 8, "text-anchor": "end", class: l.cls }, l.label)));
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "none" }, axes(max, start), paths, legend);
}

// ---- routing ---------------------------------------------------------------------------------------------
async function route() {
  stopTimers();
  if (state.config.authentication && !credentials()) {
    renderSignIn();
    return;
  }
  const hash = location.hash.replace(/^#/, "");
  const match = hash.match(/^\/functions\/(.+)$/);
  try {
    if (match) await renderFunction(decodeURIComponent(match[1]));
    else await renderList();
  } catch (error) {
    if (!(error instanceof SignInNeeded)) show(errorBox(error));
  }
}

async function start() {
  try {
    const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    state.config = await response.json();
    const served = Date.parse(response.headers.get("date") || "");
    if (!Number.isNaN(served) && Math.abs(served - Date.now()) > 60000) state.skewMs = served - Date.now();
  } catch { /* defaults: us-east-1, authentication on */ }
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  const code = (location.hash.match(/^#code=([^&]+)/) || [])[1];
  if (code && state.config.authentication) {
    if (!(await exchangeCode(decodeURIComponent(code)))) return;
  } else if (code) {
    history.replaceState(null, "", location.pathname + "#/");
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();
