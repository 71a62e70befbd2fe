// edgenet UI: talks to /api/v1 only. No inline script (the CSP forbids it); every value from the API is
// put into the page with textContent, never as HTML.
"use strict";

let csrfToken = "";

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    opts.headers["X-CSRF-Token"] = csrfToken;
  }
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch (e) { data = null; }
  }
  if (res.status === 401 && !path.endsWith("/login")) {
    location.href = "/login";
  }
  return { status: res.status, data, retryAfter: res.headers.get("Retry-After") };
}

function errorMessage(r) {
  if (r.data && r.data.error) return r.data.error.message;
  return "HTTP " + r.status;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = c instanceof Node ? (() => { const t = document.createElement("td"); t.appendChild(c); return t; })() : el("td", c);
    tr.appendChild(td);
  }
  return tr;
}

async function loadSession() {
  const r = await api("GET", "/api/v1/session");
  if (r.status === 200 && r.data) csrfToken = r.data.csrfToken || "";
  return r.data;
}

function wireLogout() {
  const f = document.getElementById("logout-form");
  if (!f) return;
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await api("POST", "/api/v1/logout");
    location.href = "/login";
  });
}

// --- login and first start ---

function initLogin() {
  const form = document.getElementById("login-form");
  const err = document.getElementById("form-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const r = await api("POST", "/api/v1/login", { password: document.getElementById("password").value });
    if (r.status === 200) { location.href = "/overview"; return; }
    let msg = errorMessage(r);
    if (r.status === 429 && r.retryAfter) msg += " (in " + r.retryAfter + " s)";
    err.textContent = msg;
  });
}

function initSetup() {
  const form = document.getElementById("setup-form");
  const err = document.getElementById("form-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const p1 = document.getElementById("password").value, p2 = document.getElementById("password2").value;
    if (p1 !== p2) { err.textContent = "The two passwords differ."; return; }
    const r = await api("POST", "/api/v1/setup", { password: p1 });
    if (r.status === 201) { location.href = "/overview"; return; }
    if (r.status === 409) { location.href = "/login"; return; }
    err.textContent = errorMessage(r);
  });
}

// --- overview ---

async function refreshOverview() {
  const r = await api("GET", "/api/v1/overview");
  const errEl = document.getElementById("load-error");
  if (r.status !== 200) { errEl.textContent = errorMessage(r); return; }
  errEl.textContent = "";
  const o = r.data;
  const fill = (id, rows) => {
    const tb = document.querySelector("#" + id + " tbody");
    tb.replaceChildren(...rows);
  };
  fill("nodes", o.nodes.map((n) => {
    const tr = row([n.name, n.ips.join(", "), el("span", n.ready ? "Ready" : "NotReady", n.ready ? "yes" : "no")]);
    tr.dataset.node = n.name;
    return tr;
  }));
  fill("services", o.services.map((s) => {
    const ext = s.externalIPs.length ? s.externalIPs.join(", ") : (s.pending ? "<pending>" : "");
    const by = Object.entries(s.announcedBy || {}).map(([ip, node]) => node + " (" + ip + ")").join(", ");
    const tr = row([s.namespace + "/" + s.name, s.type, s.clusterIP, ext, by, s.ports.join(", "), s.readyEndpoints]);
    tr.dataset.service = s.namespace + "/" + s.name;
    tr.children[3].className = "external-ip" + (s.pending ? " pending" : "");
    if (s.pending) tr.children[3].title = s.pending;
    return tr;
  }));
  fill("pools", o.pools.map((p) => row([p.name, p.addresses.join(", "), p.used, p.free,
    el("span", p.ready ? "Ready" : (p.message || "not ready"), p.ready ? "yes" : "no")])));
  const pods = document.getElementById("pods");
  pods.replaceChildren(...o.podsByNode.map((g) => {
    const sec = document.createElement("div");
    sec.appendChild(el("h3", (g.node || "(not scheduled)") + " · " + g.pods.length + " pods"));
    const t = document.createElement("table");
    t.appendChild(row(["Pod", "IP", "Phase"]));
    for (const p of g.pods) t.appendChild(row([p.namespace + "/" + p.name, p.ip, p.phase]));
    sec.appendChild(t);
    return sec;
  }));
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
}

function initOverview() {
  wireLogout();
  refreshOverview();
  setInterval(refreshOverview, 2000);
}

// --- compute network ---

let stored = null;       // GET /api/v1/computenetwork
let previewedSpec = "";  // JSON of the spec the shown preview is for

function specFromForm() {
  const spec = {};
  for (const input of document.querySelectorAll("[data-field]")) {
    const name = input.dataset.field.replace(/^spec\./, "");
    const v = input.value.trim();
    if (input.hasAttribute("data-list")) {
      spec[name] = v === "" ? [] : v.split(",").map((x) => x.trim()).filter((x) => x !== "");
    } else if (input.type === "number") {
      spec[name] = v === "" ? 0 : Number(v);
    } else {
      spec[name] = v;
    }
  }
  if (spec.upstreamDNS.length === 0) delete spec.upstreamDNS;
  return spec;
}

function fillForm(spec) {
  for (const input of document.querySelectorAll("[data-field]")) {
    const v = spec[input.dataset.field.replace(/^spec\./, "")];
    input.value = Array.isArray(v) ? v.join(", ") : (v === undefined || v === null ? "" : String(v));
  }
}

function showFieldErrors(errors) {
  for (const p of document.querySelectorAll("[data-error-for]")) p.textContent = "";
  for (const i of document.querySelectorAll("[data-field]")) i.classList.remove("invalid");
  const other = [];
  for (const e of errors || []) {
    const base = e.field.replace(/\[\d+\]$/, "");
    const p = document.querySelector('[data-error-for="' + CSS.escape(base) + '"]');
    const text = (base !== e.field ? e.field.slice(base.length) + " " : "") + e.reason;
    if (p) {
      p.textContent += (p.textContent ? "\n" : "") + text;
      const input = document.querySelector('[data-field="' + CSS.escape(base) + '"]');
      if (input) input.classList.add("invalid");
    } else {
      other.push(e.field + ": " + e.reason);
    }
  }
  document.getElementById("form-error").textContent = other.join("\n");
}

let validateTimer = null;
async function validateNow() {
  const r = await api("POST", "/api/v1/computenetwork/validate", { spec: specFromForm() });
  const state = document.getElementById("valid-state");
  if (r.status !== 200) { state.textContent = errorMessage(r); return; }
  showFieldErrors(r.data.errors);
  state.textContent = r.data.valid ? "valid" : r.data.errors.length + " problem(s)";
  state.className = r.data.valid ? "ok" : "error";
}

function formChanged() {
  document.getElementById("apply-button").disabled = true;
  document.getElementById("apply-result").textContent = "";
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateNow, 250);
}

function renderPreview(p) {
  const body = document.getElementById("preview-body");
  const parts = [];
  if (p.refusals.length) {
    parts.push(el("h3", "Refused"));
    const ul = el("ul", null, "error refusals");
    for (const e of p.refusals) ul.appendChild(el("li", e.field + ": " + e.reason));
    parts.push(ul);
  }
  parts.push(el("h3", "Fields changed"));
  if (p.changes.length === 0) parts.push(el("p", "No change.", "hint"));
  else {
    const t = el("table", null, "changes");
    t.appendChild(row(["Field", "Now", "After"]));
    for (const c of p.changes) t.appendChild(row([c.field, c.from, c.to]));
    parts.push(t);
  }
  parts.push(el("h3", "External service IP pool"));
  parts.push(el("p", "Size " + p.pool.sizeBefore + " → " + p.pool.sizeAfter + " addresses; " +
    p.pool.usedAfter + " in use, " + p.pool.freeAfter + " free after the change.", "pool-change"));
  if (p.servicesOutside.length) {
    parts.push(el("h3", "Services whose EXTERNAL-IP falls outside the new ranges"));
    const ul = el("ul", null, "error services-outside");
    for (const s of p.servicesOutside) ul.appendChild(el("li", s.service + " keeps " + s.ip + " but is flagged until moved"));
    parts.push(ul);
  }
  if (p.pendingServices.length) {
    parts.push(el("h3", "Services waiting for an external IP"));
    parts.push(el("p", p.pendingServices.join(", ") + (p.pool.freeAfter > 0 ? " (addresses will be free for them)" : " (still no free address)"), "pending-services"));
  }
  body.replaceChildren(...parts);
  document.getElementById("preview").hidden = false;
}

async function preview() {
  const spec = specFromForm();
  const r = await api("POST", "/api/v1/computenetwork/preview", { spec });
  if (r.status !== 200) { document.getElementById("form-error").textContent = errorMessage(r); return; }
  renderPreview(r.data);
  showFieldErrors(r.data.refusals);
  previewedSpec = JSON.stringify(spec);
  document.getElementById("apply-button").disabled = !(r.data.applicable && r.data.changes.length > 0);
}

async function apply() {
  const spec = specFromForm();
  if (JSON.stringify(spec) !== previewedSpec) { await preview(); return; }
  const result = document.getElementById("apply-result");
  const r = await api("PUT", "/api/v1/computenetwork", { spec, resourceVersion: stored.resourceVersion });
  if (r.status !== 200) {
    result.className = "error";
    result.textContent = errorMessage(r);
    if (r.data && r.data.error && r.data.error.fields) showFieldErrors(r.data.error.fields);
    return;
  }
  showStored(r.data);
  document.getElementById("apply-button").disabled = true;
  document.getElementById("preview").hidden = true;
  result.className = "ok";
  result.textContent = "Applied (version " + r.data.resourceVersion + "). The controller and agents follow within seconds; see Overview.";
}

function showStored(v) {
  stored = v;
  fillForm(v.spec);
  document.getElementById("rv").textContent = v.resourceVersion;
  document.getElementById("vip").textContent = v.clusterVIP || "?";
  document.getElementById("cn-status").textContent = v.status.ready ? "in effect" : ("not ready: " + (v.status.message || "waiting for the controller"));
}

async function initNetwork() {
  wireLogout();
  const r = await api("GET", "/api/v1/computenetwork");
  if (r.status !== 200) { document.getElementById("form-error").textContent = errorMessage(r); return; }
  showStored(r.data);
  for (const input of document.querySelectorAll("[data-field]")) input.addEventListener("input", formChanged);
  document.getElementById("preview-button").addEventListener("click", preview);
  document.getElementById("apply-button").addEventListener("click", apply);
  document.getElementById("reset-button").addEventListener("click", () => { fillForm(stored.spec); formChanged(); });
  validateNow();
}

document.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  await loadSession();
  ({ login: initLogin, setup: initSetup, overview: initOverview, network: initNetwork })[page]();
});
