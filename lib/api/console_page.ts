/**
 * The web console, served at `/console` by kvsz itself: one page of HTML,
 * CSS and JavaScript held here as a string (so the compiled binary carries
 * it; nothing is fetched but the API of the same listener). It asks for the
 * API token once (kept in the tab's sessionStorage) and shows the sources
 * with their state, lag, throughput and copy progress, each source's tables
 * (present, replicated) with the actions, the recent anomalies and errors,
 * and database mode's change log.
 */

/** The console page. */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvsz console</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --ok: #12805c; --warn: #b54708;
          --bad: #b42318; --accent: #2e5aac; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         background: #f8f9fb; }
  header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #fff;
           border-bottom: 1px solid var(--line); }
  header b { font-size: 16px; }
  header a { color: var(--muted); text-decoration: none; }
  header a.on { color: var(--fg); font-weight: 600; }
  header form { margin-left: auto; display: flex; gap: .4rem; }
  main { padding: 1rem 1.2rem; max-width: 1200px; }
  h2 { font-size: 16px; margin: 1.2rem 0 .5rem; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
           vertical-align: middle; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .state { font-weight: 600; }
  .streaming { color: var(--ok); } .lagging, .syncing, .waiting, .paused { color: var(--warn); }
  .disconnected { color: var(--bad); }
  .bar { width: 140px; height: 10px; background: var(--line); border-radius: 5px; overflow: hidden;
         display: inline-block; vertical-align: middle; }
  .bar > i { display: block; height: 100%; background: var(--accent); }
  button { font: inherit; padding: .15rem .55rem; border: 1px solid var(--line); border-radius: 4px;
           background: #fff; cursor: pointer; }
  button:hover { border-color: var(--accent); }
  input, select { font: inherit; padding: .15rem .4rem; border: 1px solid var(--line); border-radius: 4px; }
  #msg { margin: .6rem 0; min-height: 1.4em; }
  #msg.err { color: var(--bad); } #msg.ok { color: var(--ok); }
  .muted { color: var(--muted); }
  ul.events { margin: 0; padding-left: 1.2rem; }
</style>
</head>
<body>
<header>
  <b>kvsz</b>
  <a href="#/sources" id="nav-sources">Sources</a>
  <a href="#/map" id="nav-map">Map</a>
  <a href="#/changes" id="nav-changes">Changes</a>
  <form id="login"><input id="token" type="password" placeholder="API token" autocomplete="off">
    <button>Use token</button></form>
</header>
<main>
  <div id="msg"></div>
  <div id="view"></div>
</main>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
let last = new Map(); // source -> { at, ops } for throughput
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.onclick = v; else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function say(text, ok) { const m = $("#msg"); m.textContent = text || ""; m.className = ok ? "ok" : "err"; }
async function api(method, path) {
  const token = sessionStorage.getItem("kvsz-token");
  const r = await fetch(path, { method, headers: token ? { authorization: "Bearer " + token } : {} });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error) || r.statusText);
  return body;
}
const fmt = (n) => n === null || n === undefined ? "-" : Number(n).toLocaleString("en");
function bytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function bar(done, total) {
  const f = total > 0 ? Math.min(done / total, 1) : (done > 0 ? 1 : 0);
  return el("span", {}, el("span", { class: "bar", title: fmt(done) + " of ~" + fmt(total) },
    el("i", { style: "width:" + Math.round(f * 100) + "%" })), " " + fmt(done));
}
function act(label, method, path, done) {
  return el("button", { "data-action": label, onclick: async () => {
    try { await api(method, path); say(label + ": done", true); done && done(); render(); }
    catch (e) { say(label + ": " + e.message); }
  } }, label);
}
const enc = encodeURIComponent;
function opsOf(s) { return s.tables.reduce((n, t) => n + Object.values(t.operations).reduce((a, b) => a + b, 0), 0); }
function rate(s) {
  const key = s.database + "/" + s.sid, now = Date.now(), ops = opsOf(s), prev = last.get(key);
  last.set(key, { at: now, ops, rate: prev && now > prev.at ? (ops - prev.ops) * 1000 / (now - prev.at) : 0 });
  return last.get(key).rate;
}
async function sources() {
  const list = await api("GET", "/api/source");
  const rows = list.map((s) => el("tr", { "data-source": s.database + "/" + s.sid },
    el("td", {}, el("a", { href: "#/source/" + enc(s.database) + "/" + enc(s.sid) }, s.database), " ",
      el("span", { class: "muted" }, "sid " + s.sid)),
    el("td", { class: "state " + s.state }, s.state),
    el("td", { class: "n" }, bytes(s.lag_bytes)), el("td", { class: "n" }, s.lag_seconds.toFixed(1) + " s"),
    el("td", { class: "n" }, bytes(s.wal_retained_bytes)), el("td", { class: "n" }, rate(s).toFixed(1) + "/s"),
    el("td", {}, bar(s.copy.rows_copied, s.copy.rows_estimated)),
    el("td", { class: "n" }, fmt(s.anomalies)),
    el("td", { class: "muted" }, s.error || "")));
  const events = list.flatMap((s) => [...s.recent_errors, ...s.recent_anomalies].map((e) => ({ ...e, s })))
    .sort((a, b) => b.at.localeCompare(a.at)).slice(0, 20);
  return [el("h2", {}, "Sources (" + list.length + ")"),
    el("table", { id: "sources" }, el("tr", {}, ["source", "state", "lag", "lag time", "WAL retained",
      "changes", "copy", "anomalies", "last error"].map((h) => el("th", {}, h))), rows),
    el("h2", {}, "Recent anomalies and errors"),
    events.length ? el("ul", { class: "events" }, events.map((e) => el("li", {}, e.at + " " + e.s.database +
      "/" + e.s.sid + " " + e.kind + (e.table ? " " + e.table : "") + ": " + e.detail)))
      : el("p", { class: "muted" }, "none")];
}
async function source(database, sid) {
  const [s, map] = await Promise.all([
    api("GET", "/api/source/" + enc(database) + "/" + enc(sid)), api("GET", "/api/map")]);
  const base = "/api/source/" + enc(database) + "/" + enc(sid);
  const stats = new Map(s.tables.map((t) => [t.name, t]));
  const entries = map.filter((e) => e.db_name === database);
  const rows = entries.map((e) => {
    const name = e.schema === "public" ? e.name : e.schema + "." + e.name;
    const t = stats.get(name) || stats.get(e.schema + "." + e.name);
    const mode = el("select", { "data-type": name }, ["clone", "append", "history"].map((m) => el("option", {}, m)));
    return el("tr", { "data-table": name },
      el("td", {}, name), el("td", {}, e.replicated ? "yes" : "no"), el("td", {}, e.present ? "yes" : "no"),
      el("td", {}, e.type || "-"), el("td", {}, e.target || "-"),
      el("td", {}, t ? bar(t.rows_copied, t.copy_estimate) : "-"),
      el("td", { class: "n" }, t ? fmt(Object.values(t.operations).reduce((a, b) => a + b, 0)) : "-"),
      el("td", {}, e.replicated
        ? act("recopy", "POST", base + "/table/" + enc(name) + "/recopy")
        : [mode, " ", el("button", { "data-action": "clone", onclick: async () => {
            try { await api("POST", "/api/map/" + e.id + "/clone?type=" + mode.value); say("clone " + name + ": done", true); render(); }
            catch (x) { say("clone " + name + ": " + x.message); } } }, "clone"),
          e.present ? "" : [" ", act("create", "POST", "/api/map/" + e.id + "/create?type=clone")]]));
  });
  return [el("h2", {}, database + " sid " + sid + " ", el("span", { class: "state " + s.state }, s.state)),
    el("p", {}, "lag " + bytes(s.lag_bytes) + ", " + s.lag_seconds.toFixed(1) + " s; WAL retained " +
      bytes(s.wal_retained_bytes) + "; " + s.url + " ",
      s.state === "paused" ? [act("resume", "POST", base + "/resume"), " ", act("drop slot", "POST", base + "/drop")]
        : act("pause", "POST", base + "/pause")),
    el("table", { id: "tables" }, el("tr", {}, ["table", "replicated", "present", "type", "target", "copied",
      "changes", ""].map((h) => el("th", {}, h))), rows)];
}
async function mapPage() {
  const map = await api("GET", "/api/map");
  return [el("h2", {}, "Map (" + map.length + " tables)"), el("table", { id: "map" },
    el("tr", {}, ["id", "database", "table", "replicated", "present", "type", "target"].map((h) => el("th", {}, h))),
    map.map((e) => el("tr", {}, el("td", {}, e.id), el("td", {}, e.db_name), el("td", {}, e.schema + "." + e.name),
      el("td", {}, e.replicated ? "yes" : "no"), el("td", {}, e.present ? "yes" : "no"), el("td", {}, e.type || "-"),
      el("td", {}, e.target || "-"))))];
}
async function changes() {
  const list = await api("GET", "/api/changes");
  return [el("h2", {}, "Changes"), list.length ? el("table", { id: "changes" },
    el("tr", {}, ["when", "who", "what"].map((h) => el("th", {}, h))),
    list.map((c) => el("tr", {}, el("td", {}, c.at), el("td", {}, c.who), el("td", {}, c.what))))
    : el("p", { class: "muted" }, "no change (declarative mode, or none yet)")];
}
let rendering = false;
async function render() {
  if (rendering) return; rendering = true;
  try {
    const parts = location.hash.replace(/^#\\/?/, "").split("/").map(decodeURIComponent);
    for (const a of document.querySelectorAll("header a")) a.className = "";
    const nav = $("#nav-" + (parts[0] === "source" ? "sources" : parts[0] || "sources"));
    if (nav) nav.className = "on";
    const view = parts[0] === "source" ? await source(parts[1], parts[2])
      : parts[0] === "map" ? await mapPage() : parts[0] === "changes" ? await changes() : await sources();
    $("#view").replaceChildren(...view);
    if ($("#msg").className === "err" && /token|authorization/.test($("#msg").textContent)) say("");
  } catch (e) { say(e.message); } finally { rendering = false; }
}
$("#login").onsubmit = (e) => { e.preventDefault(); sessionStorage.setItem("kvsz-token", $("#token").value);
  $("#token").value = ""; say("token set", true); render(); };
window.onhashchange = render;
setInterval(render, 2000);
render();
</script>
</body>
</html>
`;
