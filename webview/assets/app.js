// yedge web view: plain JS, no build step. Every text from the server is
// set with textContent (never as HTML). The pages poll the JSON API; tile
// images refresh one after another while the page is visible, so the
// daemon encodes images only while someone looks.
"use strict";

const $ = (id) => document.getElementById(id);
const api = (path) => fetch(path, { cache: "no-store" }).then((r) => {
  if (!r.ok) throw new Error(r.status + " " + r.statusText);
  return r.json();
});
const enc = encodeURIComponent;
const fmt = (v, d = 1) => (v === undefined || v === null || isNaN(v) ? "–" : Number(v).toFixed(d));
const pct = (v) => (v === undefined || v === null ? "–" : (100 * v).toFixed(1) + "%");

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function paused() {
  const p = $("pause");
  return (p && p.checked) || document.hidden;
}

function every(ms, fn) {
  let stopped = false;
  const tick = async () => {
    if (!paused()) {
      try { await fn(); } catch (e) { /* shown by the next successful poll */ }
    }
    if (!stopped) setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; };
}

function setBadge(b, health) {
  b.textContent = health;
  b.className = "badge " + health;
  b.setAttribute("data-health", health);
}

function fact(dl, key, label) {
  let dd = dl.querySelector(`dd[data-key="${key}"]`);
  if (!dd) {
    dl.append(el("dt", { text: label }));
    dd = el("dd", { "data-key": key });
    dl.append(dd);
  }
  return dd;
}

// refreshImage keeps img showing the latest snapshot: the next request
// goes out once the previous image arrived (or failed).
function refreshImage(img, url) {
  let timer = 0;
  const next = (ms) => { clearTimeout(timer); timer = setTimeout(load, ms); };
  function load() {
    if (!img.isConnected) return;
    if (paused()) { next(500); return; }
    img.src = url + "?t=" + Date.now();
  }
  img.addEventListener("load", () => next(200));
  img.addEventListener("error", () => next(1500));
  load();
}

// ---- index: one tile per stream ----
function indexPage() {
  const tiles = $("tiles");
  const byName = new Map();
  every(1000, async () => {
    const data = await api("/api/streams");
    const seen = new Set();
    let up = 0;
    for (const s of data.streams) {
      seen.add(s.name);
      if (s.up) up++;
      let t = byName.get(s.name);
      if (!t) {
        const img = el("img", { alt: "live view of " + s.name, "data-role": "live", width: "768", height: "576" });
        const link = el("a", { class: "frame", href: s.links.page, "aria-label": "open stream " + s.name }, img);
        const badge = el("span", { class: "badge" });
        const dl = el("dl", { class: "facts" });
        const art = el("article", { class: "tile", "data-stream": s.name, "aria-label": "stream " + s.name },
          el("header", {}, el("h2", {}, el("a", { href: s.links.page, text: s.name })), badge), link, dl);
        tiles.append(art);
        t = { art, img, badge, dl };
        byName.set(s.name, t);
        refreshImage(img, s.links.snapshot);
      }
      setBadge(t.badge, s.health);
      fact(t.dl, "fps", "fps").textContent = fmt(s.fps);
      fact(t.dl, "latency", "latency").textContent = s.fps > 0 ? fmt(s.latency_ms) + " ms" : "–";
      t.art.classList.toggle("noimage", !s.up);
      fact(t.dl, "model", "model").textContent = `${s.precision} · ${s.model} · ${s.provider}`;
      const ag = fact(t.dl, "agreement", "vs FP32");
      ag.textContent = s.agreement.frames > 0
        ? `F1 ${pct(s.agreement_f1)} (P ${pct(s.agreement.precision)}, R ${pct(s.agreement.recall)}, ${s.agreement.frames} frames)`
        : "no shadowed frame yet";
      ag.replaceChildren(ag.textContent, " ", el("a", { href: s.links.compare_page, text: "compare" }));
      const er = fact(t.dl, "error", "last error");
      er.textContent = s.last_error || "none";
      er.className = s.last_error ? "err" : "";
      t.art.setAttribute("data-health", s.health);
    }
    for (const [name, t] of byName) {
      if (!seen.has(name)) { t.art.remove(); byName.delete(name); }
    }
    $("summary").textContent = `${data.streams.length} streams, ${up} up`;
  });
}

// ---- stream page ----
function streamName() {
  return decodeURIComponent(location.pathname.split("/")[2] || "");
}

const stages = [
  ["read_ms", "read", "s-read"], ["preprocess_ms", "preprocess", "s-preprocess"], ["infer_ms", "infer", "s-infer"],
  ["postprocess_ms", "postprocess", "s-postprocess"], ["fp32_infer_ms", "FP32 shadow infer", "s-fp32"],
];

function drawChart(box, hist, seconds) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 220, L = 40, B = 18, T = 8, R = 8;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const now = Math.floor(Date.now() / 1000);
  const t0 = now - seconds;
  let ymax = 1;
  for (const p of hist) for (const [k] of stages) if (p[k] > ymax) ymax = p[k];
  ymax = Math.ceil(ymax * 1.1);
  const x = (t) => L + ((t - t0) / seconds) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const line = (x1, y1, x2, y2) => {
    const l = document.createElementNS(NS, "line");
    Object.entries({ x1, y1, x2, y2, class: "axis" }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const label = (tx, ty, s, anchor = "end") => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("text-anchor", anchor);
    t.textContent = s;
    svg.append(t);
  };
  for (const f of [0, 0.5, 1]) { line(L, y(ymax * f), W - R, y(ymax * f)); label(L - 4, y(ymax * f) + 4, fmt(ymax * f, 0)); }
  label(L + 4, H - 4, `-${seconds / 60} min`, "start");
  label(W - R, H - 4, "now");
  for (const [k, , cls] of stages) {
    let d = "", prev = -10;
    for (const p of hist) {
      if (!(k in p) || p[k] === undefined || (k !== "fp32_infer_ms" && !p.frames)) continue;
      d += (p.t - prev > 3 ? "M" : "L") + x(p.t).toFixed(1) + " " + y(p[k]).toFixed(1) + " ";
      prev = p.t;
    }
    if (!d) continue;
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", cls);
    path.setAttribute("data-stage", k);
    svg.append(path);
  }
  box.replaceChildren(svg);
}

function streamPage() {
  const name = streamName();
  const base = "/api/streams/" + enc(name);
  document.title = "yedge: " + name;
  $("name").textContent = name;
  $("compare-link").href = "/streams/" + enc(name) + "/compare";
  const img = $("live");
  // After the load event: an MJPEG image never finishes loading, and
  // would hold the page's load event forever.
  const start = () => { img.src = base + "/mjpeg?fps=10"; };
  if (document.readyState === "complete") start(); else window.addEventListener("load", start);
  img.alt = "live annotated view of " + name;
  $("legend").replaceChildren(...stages.map(([, l, c]) => el("li", {}, el("span", { class: "swatch " + c }), l)));
  every(1000, async () => {
    const s = await api(base);
    setBadge($("health"), s.health);
    $("live-caption").textContent = `${fmt(s.fps)} fps · ${fmt(s.latency_ms)} ms end to end · ` +
      `read ${fmt(s.stages_ms.read)} / preprocess ${fmt(s.stages_ms.preprocess)} / infer ${fmt(s.stages_ms.infer)} / postprocess ${fmt(s.stages_ms.postprocess)} ms`;
    const dl = $("model");
    fact(dl, "serving", "serving").textContent = `${s.precision} · ${s.model}`;
    fact(dl, "provider", "provider").textContent = `${s.provider} · ${s.threads} threads · batch ${s.batch}`;
    fact(dl, "sha", "sha256").textContent = (s.model_sha256 || "").slice(0, 16) + "…";
    fact(dl, "shadow", "shadow").textContent = s.shadow.enabled
      ? `${s.shadow_model}, every ${s.shadow.every_n} frames${s.shadow.budget ? `, budget ${pct(s.shadow.budget)}` : ""}, ${s.shadow_frames} frames`
      : "off";
    fact(dl, "agreement", "agreement").textContent = s.agreement.frames > 0
      ? `F1 ${pct(s.agreement_f1)} · precision ${pct(s.agreement.precision)} · recall ${pct(s.agreement.recall)} · mean IoU ${fmt(s.agreement.mean_iou, 3)}`
      : "no shadowed frame yet";
    fact(dl, "source", "source").textContent = s.source;
    drawChart($("chart"), s.history, s.history_seconds);
    const ol = $("errors");
    const errs = (s.errors || []).slice().reverse();
    ol.replaceChildren(...(errs.length ? errs.map((e) => el("li", { class: "err" },
      el("time", { datetime: e.at, text: new Date(e.at).toLocaleTimeString() }), " ", e.error)) : [el("li", { text: "none" })]));
  });
}

// ---- compare page ----
function comparePage() {
  const name = streamName();
  const base = "/api/streams/" + enc(name);
  document.title = "yedge: " + name + " int8 vs FP32";
  $("name").textContent = name;
  $("stream-link").href = "/streams/" + enc(name);
  const img = $("compare");
  let url = "";
  const set = (id, attr, v) => { const b = $(id); b.textContent = v; b.setAttribute(attr, v); };
  every(1000, async () => {
    const r = await fetch(base + "/compare.jpg", { cache: "no-store" });
    if (!r.ok) return;
    const h = r.headers;
    const blob = await r.blob();
    const next = URL.createObjectURL(blob);
    await new Promise((ok) => { img.onload = ok; img.onerror = ok; img.src = next; });
    if (url) URL.revokeObjectURL(url);
    url = next;
    if (h.get("X-Yedge-Matched") !== null) {
      set("n-matched", "data-matched", h.get("X-Yedge-Matched"));
      set("n-int8", "data-int8-only", h.get("X-Yedge-Int8-Only"));
      set("n-fp32", "data-fp32-only", h.get("X-Yedge-FP32-Only"));
      set("n-dis", "data-disagreement", h.get("X-Yedge-Disagreement"));
    }
    set("n-frame", "data-frame", h.get("X-Yedge-Frame") || "");
  });
  let ids = "";
  every(2000, async () => {
    const w = await api(base + "/worst");
    const key = w.frames.map((f) => f.id).join(",");
    if (key === ids) return;
    ids = key;
    $("worst").replaceChildren(...w.frames.map((f) => el("li", { "data-id": String(f.id) }, el("figure", {},
      el("img", { src: f.url, alt: `frame ${f.frame}: ${f.matched} matched, ${f.int8_only} int8 only, ${f.fp32_only} FP32 only`, loading: "lazy" }),
      el("figcaption", { text: `frame ${f.frame} · 1−F1 ${fmt(f.disagreement, 2)} · ${f.matched} matched, ` +
        `${f.int8_only} int8 only, ${f.fp32_only} FP32 only · ${new Date(f.at).toLocaleTimeString()}` })))));
  });
}

const page = document.body.getAttribute("data-page");
if (page === "index") indexPage();
else if (page === "stream") streamPage();
else if (page === "compare") comparePage();
