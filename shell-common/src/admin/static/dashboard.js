// The anpx admin dashboard: receivers and routes polled from
// /api/overview, requests from /api/requests then live from /api/events.
// Every value is set as text, never as HTML: hosts, paths and headers come
// from the internet.
"use strict";

const rows = new Map();
let chosen = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function fill(tbody, list, cells) {
  tbody.replaceChildren(...list.map((item) => {
    const tr = el("tr");
    for (const c of cells(item)) tr.append(el("td", c));
    return tr;
  }));
}

async function overview() {
  try {
    const r = await fetch("/api/overview");
    const o = await r.json();
    fill(document.querySelector("#receivers tbody"), o.receivers, (x) => [
      x.id, x.identity, x.address || "", x.routes.join(", "), x.features, x.in_flight,
      bytes(x.request_bytes) + " / " + bytes(x.response_bytes), x.uptime_secs + " s",
    ]);
    fill(document.querySelector("#routes tbody"), o.routes, (x) => [x.route, x.receivers.join(", ")]);
    document.getElementById("cluster").textContent = o.cluster
      ? "node " + o.cluster.node + "; peers: " + (o.cluster.peers.join(", ") || "none heard")
      : "not in a cluster";
    const i = o.inspector;
    document.getElementById("inspector-bounds").textContent = i.requests === 0
      ? "(capture off: gateway.inspector.requests = 0)"
      : "(last " + i.requests + ", at most " + bytes(i.max_bytes) + "; holding " + i.kept + ", " + bytes(i.bytes) + "; bodies " + (i.bodies ? "on" : "off") + ")";
    document.getElementById("summary").textContent = o.receivers.length + " receivers, " + o.in_flight + " in flight";
  } catch (e) {
    document.getElementById("summary").textContent = "overview unavailable: " + e;
  }
}

function row(r) {
  const tr = el("tr");
  tr.dataset.id = r.id;
  const time = new Date(r.time_ms).toLocaleTimeString();
  const path = r.path + (r.query ? "?" + r.query : "");
  const cells = [
    r.id + (r.replay_of ? " (replay of " + r.replay_of + ")" : ""), time, r.client, r.method, r.host, path,
    r.status === null ? "" : r.status,
    r.duration_ms === null ? "" : r.duration_ms.toFixed(1) + " ms",
    bytes(r.request_bytes) + " / " + bytes(r.response_bytes), r.receiver,
    r.ending === null ? "in flight" : r.ending + (r.error ? ": " + r.error : ""),
  ];
  cells.forEach((c, i) => {
    const td = el("td", c);
    if (i === 6 && r.status) td.className = "s" + String(r.status)[0];
    if (i === 10) td.className = "ending";
    tr.append(td);
  });
  if (chosen === r.id) tr.classList.add("chosen");
  tr.addEventListener("click", () => choose(r.id));
  return tr;
}

function upsert(r) {
  const tbody = document.querySelector("#requests tbody");
  const fresh = row(r);
  const old = rows.get(r.id);
  if (old) old.replaceWith(fresh); else tbody.prepend(fresh);
  rows.set(r.id, fresh);
  // The server keeps a bounded list; the page keeps no more than it does.
  while (rows.size > 1000) {
    const first = rows.keys().next().value;
    rows.get(first).remove();
    rows.delete(first);
  }
  if (chosen === r.id && r.ending !== null) choose(r.id);
}

function headerTable(table, pairs) {
  table.replaceChildren(...(pairs || []).map(([n, v]) => {
    const tr = el("tr");
    tr.append(el("th", n), el("td", v));
    return tr;
  }));
}

function bodyText(b, captured) {
  if (!captured) return "(not captured: set gateway.inspector.bodies = true)";
  if (!b) return "";
  return b.text + (b.total > b.shown ? "\n… " + b.shown + " of " + b.total + " bytes shown" : "");
}

function frameText(frames) {
  if (!frames) return "(none)";
  return frames.map((f) => JSON.stringify(f)).join("\n");
}

async function choose(id) {
  chosen = id;
  for (const [k, tr] of rows) tr.classList.toggle("chosen", k === id);
  const r = await fetch("/api/requests/" + id);
  const section = document.getElementById("detail");
  if (!r.ok) {
    section.hidden = false;
    document.getElementById("detail-id").textContent = id + " (gone from the inspector)";
    return;
  }
  const d = await r.json();
  section.hidden = false;
  document.getElementById("detail-id").textContent = "#" + d.id + " " + d.method + " " + d.host + d.path;
  headerTable(document.getElementById("detail-request-headers"), d.request_headers);
  headerTable(document.getElementById("detail-response-headers"), d.response_head && d.response_head.headers);
  document.getElementById("detail-request-body").textContent = bodyText(d.request_body, d.bodies_captured);
  document.getElementById("detail-response-body").textContent = bodyText(d.response_body, d.bodies_captured);
  document.getElementById("detail-frames-out").textContent = frameText(d.frames_to_receiver);
  document.getElementById("detail-frames-in").textContent = frameText(d.frames_from_receiver);
  const button = document.getElementById("replay");
  button.disabled = !d.replayable;
  button.title = d.replayable ? "" : "the request was not captured whole";
}

async function replay() {
  if (chosen === null) return;
  const out = document.getElementById("replay-result");
  out.textContent = "replaying…";
  try {
    const r = await fetch("/api/requests/" + chosen + "/replay", {
      method: "POST", headers: { "x-anpx-admin": "1" },
    });
    const j = await r.json();
    out.textContent = r.ok ? "replayed as #" + j.id + ": " + j.status : "replay refused: " + j.error;
  } catch (e) {
    out.textContent = "replay failed: " + e;
  }
}

async function start() {
  document.getElementById("replay").addEventListener("click", replay);
  overview();
  setInterval(overview, 2000);
  const r = await fetch("/api/requests");
  for (const x of (await r.json()).requests) upsert(x);
  const live = document.getElementById("live");
  const feed = new EventSource("/api/events");
  feed.onopen = () => { live.textContent = "live"; live.className = "badge on"; };
  feed.onerror = () => { live.textContent = "reconnecting"; live.className = "badge off"; };
  feed.addEventListener("request", (e) => upsert(JSON.parse(e.data)));
}

start();
