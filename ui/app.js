// SPDX-License-Identifier: BSD-2-Clause
// hoptrace web UI. Every name, attribute and value shown here comes from traffic someone
// else controls: text goes in with textContent and createElement only, never as markup
// (no innerHTML, no string-built HTML); links are never made from data.
"use strict";

(function () {
  const VERDICTS = ["ok", "forwarded", "restarted", "dropped", "invalid"];
  const PALETTE = ["#2e90fa", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#15b79e",
    "#6172f3", "#fb6514", "#0ba5ec", "#a15c07", "#4e5ba6", "#c11574"];
  const state = { traces: [], sort: "start", current: null, searches: 0 };

  // ---- DOM helpers (text only) -----------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // One colour per service: the services listed by the API take the palette in order (so
  // colours stay the same across views), others the next free one.
  const colorIndex = new Map();
  function serviceColor(name) {
    if (!colorIndex.has(name)) colorIndex.set(name, colorIndex.size);
    return PALETTE[colorIndex.get(name) % PALETTE.length];
  }

  function fmtDuration(us) {
    if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
    if (us >= 1e3) return (us / 1e3).toFixed(2) + " ms";
    return Math.round(us) + " µs";
  }

  function fmtTime(us) { return new Date(us / 1000).toISOString().replace("T", " ").replace("Z", ""); }

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const k of Object.keys(params || {})) {
      if (params[k] !== "" && params[k] !== undefined && params[k] !== null) q.set(k, params[k]);
    }
    const qs = q.toString();
    const resp = await fetch(path + (qs ? "?" + qs : ""), { credentials: "same-origin" });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok || !body) {
      const msg = body && body.errors && body.errors.length ? body.errors[0].msg : resp.statusText;
      throw new Error(String(msg || ("HTTP " + resp.status)));
    }
    return body;
  }

  // ---- the Jaeger model, read ---------------------------------------------------------------
  function tagValue(tags, key) {
    for (const t of tags || []) if (t.key === key) return t.value;
    return undefined;
  }

  function isError(span) {
    const v = tagValue(span.tags, "error");
    return v === true || v === "true";
  }

  function parentOf(span) {
    for (const r of span.references || []) if (r.refType === "CHILD_OF") return r.spanID;
    return null;
  }

  // The spans of a trace in tree order with their depth (a span whose parent is not in the
  // trace is a root); children by start time.
  function treeOrder(trace) {
    const byId = new Map();
    for (const s of trace.spans) byId.set(s.spanID, s);
    const children = new Map();
    const roots = [];
    for (const s of trace.spans) {
      const p = parentOf(s);
      if (p && byId.has(p) && p !== s.spanID) {
        if (!children.has(p)) children.set(p, []);
        children.get(p).push(s);
      } else {
        roots.push(s);
      }
    }
    const byStart = (a, b) => a.startTime - b.startTime;
    roots.sort(byStart);
    const out = [];
    const seen = new Set();
    const stack = roots.slice().reverse().map((s) => [s, 0]);
    while (stack.length) {
      const [s, depth] = stack.pop();
      if (seen.has(s.spanID)) continue; // a cycle in hostile data
      seen.add(s.spanID);
      out.push({ span: s, depth: depth });
      const kids = (children.get(s.spanID) || []).slice().sort(byStart);
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
    }
    return out;
  }

  function summarize(trace) {
    let start = Infinity, end = 0, errors = 0;
    const services = new Set();
    for (const s of trace.spans) {
      start = Math.min(start, s.startTime);
      end = Math.max(end, s.startTime + s.duration);
      if (isError(s)) errors++;
      const p = trace.processes[s.processID];
      if (p) services.add(p.serviceName);
    }
    const order = treeOrder(trace);
    const root = order.length ? order[0].span : null;
    const rootProc = root ? trace.processes[root.processID] : null;
    return {
      trace: trace, id: trace.traceID, start: start, duration: end - start, errors: errors,
      spans: trace.spans.length, services: Array.from(services).sort(),
      root: root ? (rootProc ? rootProc.serviceName + ": " : "") + root.operationName : "",
    };
  }

  // ---- search ----------------------------------------------------------------------------
  // "key=value key2=value2" (as the Jaeger UI takes tags) into the API's JSON object.
  function parseTags(text) {
    const out = {};
    for (const part of text.trim().split(/\s+/)) {
      if (!part) continue;
      const eq = part.indexOf("=");
      if (eq <= 0) throw new Error("tags are key=value pairs: " + part);
      out[part.slice(0, eq)] = part.slice(eq + 1).replace(/^"(.*)"$/, "$1");
    }
    return out;
  }

  const LOOKBACK_US = { "5m": 300e6, "1h": 3600e6, "6h": 21600e6, "24h": 86400e6, "7d": 604800e6 };

  async function loadServices() {
    try {
      const body = await api("/api/services");
      const sel = $("f-service");
      const keep = sel.value;
      while (sel.options.length > 1) sel.remove(1);
      for (const name of body.data || []) {
        const o = el("option", null, name);
        o.value = name;
        sel.appendChild(o);
        serviceColor(name);
      }
      sel.value = keep;
    } catch (e) {
      $("search-status").textContent = "cannot list services: " + e.message;
    }
  }

  async function loadOperations() {
    const sel = $("f-operation");
    while (sel.options.length > 1) sel.remove(1);
    const svc = $("f-service").value;
    if (!svc) return;
    try {
      const body = await api("/api/services/" + encodeURIComponent(svc) + "/operations");
      for (const name of body.data || []) {
        const o = el("option", null, name);
        o.value = name;
        sel.appendChild(o);
      }
    } catch (e) {
      $("search-status").textContent = "cannot list operations: " + e.message;
    }
  }

  async function search(ev) {
    if (ev) ev.preventDefault();
    const status = $("search-status");
    let tags;
    try {
      tags = parseTags($("f-tags").value);
    } catch (e) {
      status.textContent = e.message;
      return;
    }
    if ($("f-errors").checked) tags.error = "true";
    const lookback = $("f-lookback").value;
    const end = Date.now() * 1000;
    const params = {
      service: $("f-service").value,
      operation: $("f-operation").value,
      minDuration: $("f-min").value.trim(),
      maxDuration: $("f-max").value.trim(),
      limit: $("f-limit").value,
      lookback: lookback,
      start: Math.floor(end - LOOKBACK_US[lookback]),
      end: Math.floor(end),
      tags: Object.keys(tags).length ? JSON.stringify(tags) : "",
    };
    status.textContent = "searching…";
    try {
      const body = await api("/api/traces", params);
      state.traces = (body.data || []).map(summarize);
      status.textContent = state.traces.length + " trace" + (state.traces.length === 1 ? "" : "s");
      renderList();
    } catch (e) {
      status.textContent = "search failed: " + e.message;
    }
    status.dataset.searches = String(++state.searches); // searches answered (for tests)
  }

  function sortTraces() {
    const t = state.traces.slice();
    if (state.sort === "duration") t.sort((a, b) => b.duration - a.duration);
    else if (state.sort === "errors") t.sort((a, b) => b.errors - a.errors || b.duration - a.duration);
    else t.sort((a, b) => b.start - a.start);
    return t;
  }

  function renderList() {
    const body = $("trace-list").tBodies[0];
    clear(body);
    $("sort-duration").classList.toggle("active", state.sort === "duration");
    $("sort-errors").classList.toggle("active", state.sort === "errors");
    for (const t of sortTraces()) {
      const tr = el("tr", "trace-row");
      tr.dataset.traceId = t.id;
      tr.dataset.duration = String(t.duration);
      tr.dataset.errors = String(t.errors);
      tr.appendChild(el("td", "mono", t.id));
      tr.appendChild(el("td", null, t.root));
      const svc = el("td");
      for (const s of t.services) {
        const chip = el("span", "svc-chip");
        chip.style.backgroundColor = serviceColor(s);
        svc.appendChild(chip);
        svc.appendChild(document.createTextNode(s + " "));
      }
      tr.appendChild(svc);
      tr.appendChild(el("td", null, t.spans));
      tr.appendChild(el("td", "errors" + (t.errors ? " has" : ""), t.errors));
      tr.appendChild(el("td", "duration", fmtDuration(t.duration)));
      tr.appendChild(el("td", null, fmtTime(t.start)));
      tr.addEventListener("click", () => { location.hash = "#/trace/" + t.id; });
      body.appendChild(tr);
    }
  }

  // ---- one trace -------------------------------------------------------------------------
  async function showTrace(id) {
    $("trace-title").textContent = "Trace " + id;
    $("trace-summary").textContent = "loading…";
    clear($("waterfall"));
    clear($("analysis-body"));
    resetDetail();
    let trace = null;
    for (const t of state.traces) if (t.id === id) trace = t.trace;
    try {
      if (!trace) {
        const body = await api("/api/traces/" + encodeURIComponent(id));
        trace = body.data && body.data[0];
      }
    } catch (e) {
      $("trace-summary").textContent = "cannot load the trace: " + e.message;
      return;
    }
    if (!trace) return;
    state.current = trace;
    renderWaterfall(trace);
    showAnalysis(trace.traceID);
  }

  // ---- the analysis of one trace (hoptrace analyze) --------------------------------------
  function fmtNs(ns) { return fmtDuration(ns / 1000); }

  function refText(r) {
    return r ? r.service + " " + r.name + (r.kind ? " (" + r.kind + ")" : "") : "?";
  }

  function analysisItem(list, text, cls) {
    const li = el("li", cls || null, text);
    list.appendChild(li);
    return li;
  }

  function analysisSection(body, title, id) {
    const h = el("h4", null, title);
    const ul = el("ul", "analysis-list");
    ul.id = id;
    body.appendChild(h);
    body.appendChild(ul);
    return ul;
  }

  async function showAnalysis(id) {
    const body = $("analysis-body");
    clear(body);
    body.appendChild(el("p", "hint", "analysing…"));
    let doc;
    try {
      doc = (await api("/api/hoptrace/analyze/" + encodeURIComponent(id))).data;
    } catch (e) {
      clear(body);
      body.appendChild(el("p", "hint", "no analysis: " + e.message));
      return;
    }
    if (!state.current || state.current.traceID !== id) return; // another trace by now
    clear(body);
    const t = doc && doc.traces && doc.traces[0];
    if (!t) {
      body.appendChild(el("p", "hint", "nothing to analyse"));
      return;
    }
    if (!t.complete) {
      body.appendChild(el("p", "warn", "incomplete trace: parents not seen " +
        (t.missing_parents || []).join(", ")));
    }
    const slow = t.slowest_hop;
    const p = el("p", "slowest-hop");
    p.id = "slowest-hop";
    p.textContent = slow ? "Slowest hop: " + refText(slow) + ", " + fmtNs(slow.self_on_path_ns) +
      " of its own on the critical path (" + Math.round((100 * slow.self_on_path_ns) / Math.max(t.duration_ns, 1)) + "%)" : "No slowest hop.";
    body.appendChild(p);
    const path = analysisSection(body, "Critical path (own time of each span on it)", "critical-path");
    const onPath = new Set();
    for (const c of t.critical_path || []) {
      onPath.add(c.span_id);
      analysisItem(path, fmtNs(c.self_on_path_ns) + "  " + refText(c),
        slow && c.span_id === slow.span_id ? "slowest" : null);
    }
    for (const row of $("waterfall").querySelectorAll(".wf-row")) {
      row.classList.toggle("on-path", onPath.has(row.dataset.spanId));
      row.classList.toggle("slowest", !!slow && row.dataset.spanId === slow.span_id);
    }
    const seq = analysisSection(body, "Sequential calls that could run in parallel", "sequential-calls");
    for (const s of t.sequential_calls || []) {
      const li = analysisItem(seq, refText(s.parent) + " made " + s.calls + " calls one after another to " +
        s.endpoints + " endpoints: " + fmtNs(s.sequential_ns) + "; in parallel " + fmtNs(s.parallel_ns) +
        " (saves " + fmtNs(s.saved_ns) + ")");
      const sub = el("ul");
      for (const c of s.spans || []) sub.appendChild(el("li", "mono", fmtNs(c.duration_ns) + "  " + c.endpoint));
      li.appendChild(sub);
    }
    if (!(t.sequential_calls || []).length) analysisItem(seq, "none", "hint");
    const n1 = analysisSection(body, "N+1 calls", "n-plus-one");
    for (const n of t.n_plus_one || []) {
      analysisItem(n1, refText(n.parent) + " called " + n.endpoint + " " + n.calls + " times (" + fmtNs(n.duration_ns) + ")");
    }
    if (!(t.n_plus_one || []).length) analysisItem(n1, "none", "hint");
    const errs = analysisSection(body, "Where errors originated", "error-origins");
    for (const o of (t.errors && t.errors.origins) || []) {
      const li = analysisItem(errs, "origin: " + refText(o) + (o.status_code ? ", status " + o.status_code : "") +
        (o.callee_not_seen ? " (callee not seen)" : ""), "error-origin");
      const sub = el("ul");
      for (const by of o.propagated_by || []) {
        sub.appendChild(el("li", null, "propagated by " + refText(by) + (by.status_code ? ", status " + by.status_code : "")));
      }
      li.appendChild(sub);
    }
    if (!((t.errors && t.errors.origins) || []).length) analysisItem(errs, "none", "hint");
  }

  function renderWaterfall(trace) {
    const sum = summarize(trace);
    const order = treeOrder(trace);
    const wf = $("waterfall");
    $("trace-summary").textContent = sum.spans + " spans, " + sum.services.length + " services, " +
      sum.errors + " with errors, " + fmtDuration(sum.duration) + ", started " + fmtTime(sum.start);
    const head = el("div", "wf-head");
    head.appendChild(el("div", "wf-label", "Service: operation"));
    const ticks = el("div", "wf-ticks");
    for (let i = 0; i <= 4; i++) {
      const tk = el("span", null, fmtDuration((sum.duration * i) / 4));
      tk.style.left = i * 25 + "%";
      if (i === 4) tk.className = "last";
      ticks.appendChild(tk);
    }
    head.appendChild(ticks);
    wf.appendChild(head);
    const total = Math.max(sum.duration, 1);
    for (const { span, depth } of order) {
      const proc = trace.processes[span.processID] || { serviceName: "?", tags: [] };
      const err = isError(span);
      const row = el("div", "wf-row" + (err ? " error" : ""));
      row.dataset.spanId = span.spanID;
      row.dataset.depth = String(depth);
      row.dataset.service = proc.serviceName;
      const label = el("div", "wf-label");
      label.style.paddingLeft = 4 + depth * 16 + "px";
      const chip = el("span", "svc-chip");
      chip.style.backgroundColor = serviceColor(proc.serviceName);
      label.appendChild(chip);
      if (err) {
        const mark = el("span", "err-mark", "!");
        mark.title = "error";
        label.appendChild(mark);
      }
      label.appendChild(el("b", null, proc.serviceName));
      label.appendChild(document.createTextNode(" " + span.operationName));
      label.title = proc.serviceName + " " + span.operationName;
      row.appendChild(label);
      const track = el("div", "wf-track");
      const left = ((span.startTime - sum.start) / total) * 100;
      const width = Math.max((span.duration / total) * 100, 0.2);
      const bar = el("div", "wf-bar" + (err ? " error" : ""));
      bar.dataset.spanId = span.spanID;
      bar.dataset.depth = String(depth);
      bar.style.left = left + "%";
      bar.style.width = width + "%";
      bar.style.backgroundColor = serviceColor(proc.serviceName);
      track.appendChild(bar);
      for (const log of span.logs || []) {
        // a span event (a log line with --capture-logs) where it happened
        const tick = el("span", "wf-event");
        tick.style.left = ((log.timestamp - sum.start) / total) * 100 + "%";
        tick.title = fmtTime(log.timestamp);
        track.appendChild(tick);
      }
      const dur = el("span", "wf-dur", fmtDuration(span.duration));
      if (left + width > 85) {
        dur.style.right = 100 - left - width + 0.5 + "%"; // inside the bar's end
        dur.className = "wf-dur inside";
      } else {
        dur.style.left = left + width + 0.5 + "%";
      }
      track.appendChild(dur);
      row.appendChild(track);
      row.addEventListener("click", () => {
        for (const r of wf.querySelectorAll(".wf-row.selected")) r.classList.remove("selected");
        row.classList.add("selected");
        showDetail(trace, span, proc);
      });
      wf.appendChild(row);
    }
  }

  function resetDetail() {
    const d = $("span-detail");
    clear(d);
    d.appendChild(el("p", "hint", "Select a span to see its attributes."));
  }

  function kvTable(rows) {
    const t = el("table", "kv");
    for (const [k, v] of rows) {
      const tr = el("tr");
      tr.appendChild(el("td", "mono", k));
      tr.appendChild(el("td", "mono", typeof v === "object" ? JSON.stringify(v) : v));
      t.appendChild(tr);
    }
    return t;
  }

  function showDetail(trace, span, proc) {
    const d = $("span-detail");
    clear(d);
    d.dataset.spanId = span.spanID;
    const h = el("h3", null, span.operationName);
    d.appendChild(h);
    d.appendChild(kvTable([
      ["service", proc.serviceName],
      ["span id", span.spanID],
      ["parent", parentOf(span) || "(root)"],
      ["start", fmtTime(span.startTime)],
      ["duration", fmtDuration(span.duration)],
    ]));
    d.appendChild(el("h4", null, "Attributes"));
    d.appendChild(kvTable((span.tags || []).map((t) => [t.key, t.value])));
    d.appendChild(el("h4", null, "Resource"));
    d.appendChild(kvTable((proc.tags || []).map((t) => [t.key, t.value])));
    d.appendChild(el("h4", null, "Events"));
    if (!span.logs || !span.logs.length) d.appendChild(el("p", "hint", "none"));
    for (const log of span.logs || []) {
      d.appendChild(el("div", "mono", fmtTime(log.timestamp)));
      d.appendChild(kvTable((log.fields || []).map((f) => [f.key, f.value])));
    }
    d.appendChild(el("h4", null, "Links"));
    const links = (span.references || []).filter((r) => r.refType !== "CHILD_OF");
    if (!links.length) d.appendChild(el("p", "hint", "none"));
    for (const r of links) d.appendChild(el("div", "mono", r.refType + " " + r.traceID + " / " + r.spanID));
  }

  // ---- service map -----------------------------------------------------------------------
  function verdictClass(p) {
    if ((p.dropped || 0) + (p.invalid || 0) > 0) return "v-bad";
    if ((p.restarted || 0) > 0) return "v-warn";
    if ((p.ok || 0) + (p.forwarded || 0) > 0) return "v-good";
    return "v-none";
  }

  function verdictText(p) {
    const parts = [];
    for (const v of VERDICTS) if (p[v]) parts.push(v + " " + p[v]);
    return parts.length ? parts.join(" · ") : "not classified";
  }

  // Services in columns by their depth from the callers that nobody calls.
  function layout(edges) {
    const names = new Set();
    for (const e of edges) { names.add(e.parent); names.add(e.child); }
    const level = new Map();
    for (const n of names) level.set(n, 0);
    for (let round = 0; round < names.size; round++) {
      let changed = false;
      for (const e of edges) {
        if (e.parent === e.child) continue;
        const want = level.get(e.parent) + 1;
        if (want > level.get(e.child) && want < names.size) { level.set(e.child, want); changed = true; }
      }
      if (!changed) break;
    }
    const cols = new Map();
    for (const n of Array.from(names).sort()) {
      const l = level.get(n);
      if (!cols.has(l)) cols.set(l, []);
      cols.get(l).push(n);
    }
    const pos = new Map();
    const colW = 440, rowH = 120;
    let maxRows = 1;
    for (const [l, list] of cols) {
      maxRows = Math.max(maxRows, list.length);
      list.forEach((n, i) => pos.set(n, { x: 30 + l * colW, y: 30 + i * rowH }));
    }
    return { pos: pos, width: 60 + Math.max(0, ...cols.keys()) * colW + 180, height: 40 + maxRows * rowH };
  }

  async function showMap(ev) {
    if (ev) ev.preventDefault();
    const status = $("map-status");
    const map = $("map");
    const tbody = $("edge-table").tBodies[0];
    status.textContent = "loading…";
    let edges;
    try {
      const body = await api("/api/hoptrace/dependencies", { endTs: Date.now(), lookback: $("m-lookback").value });
      edges = body.data || [];
    } catch (e) {
      status.textContent = "cannot load the dependencies: " + e.message;
      return;
    }
    status.textContent = edges.length + " edge" + (edges.length === 1 ? "" : "s");
    clear(map);
    clear(tbody);
    const lay = layout(edges);
    const W = 180, H = 36;
    const svg = svgEl("svg", { viewBox: "0 0 " + lay.width + " " + lay.height, width: lay.width, height: lay.height, role: "img" });
    const defs = svgEl("defs");
    const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    marker.appendChild(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#667085" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    edges.forEach((e, i) => {
      const a = lay.pos.get(e.parent), b = lay.pos.get(e.child);
      const p = e.propagation || {};
      const g = svgEl("g", { class: "edge " + verdictClass(p), "data-parent": e.parent, "data-child": e.child });
      let d, lx, ly;
      if (e.parent === e.child) {
        d = "M " + (a.x + W - 20) + " " + a.y + " c 40 -40 60 10 20 " + H;
        lx = a.x + W + 10; ly = a.y - 8;
      } else {
        const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
        const back = x2 <= x1;
        const bend = back ? 60 + i * 8 : 0;
        d = "M " + x1 + " " + y1 + " C " + (x1 + 60) + " " + (y1 + bend) + ", " + (x2 - 60) + " " + (y2 + bend) + ", " + x2 + " " + y2;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 6 + bend * 0.75;
      }
      g.appendChild(svgEl("path", { d: d, "marker-end": "url(#arrow)" }));
      const label = svgEl("text", { x: lx, y: ly - 14, "text-anchor": "middle", class: "edge-label" });
      const l1 = svgEl("tspan", { x: lx, dy: 0 });
      l1.textContent = e.callCount + " calls" + (e.errorCount ? ", " + e.errorCount + " failed" : "");
      const l2 = svgEl("tspan", { x: lx, dy: 14, class: "edge-verdicts" });
      l2.textContent = verdictText(p);
      label.appendChild(l1);
      label.appendChild(l2);
      g.appendChild(label);
      const title = svgEl("title");
      title.textContent = e.parent + " → " + e.child + ": " + verdictText(p);
      g.appendChild(title);
      svg.appendChild(g);
      const tr = el("tr", "edge-row");
      tr.dataset.parent = e.parent;
      tr.dataset.child = e.child;
      tr.appendChild(el("td", null, e.parent));
      tr.appendChild(el("td", null, e.child));
      tr.appendChild(el("td", null, e.callCount));
      tr.appendChild(el("td", null, e.errorCount || 0));
      for (const v of VERDICTS) tr.appendChild(el("td", "v-" + v, p[v] || 0));
      tbody.appendChild(tr);
    });
    for (const [name, at] of lay.pos) {
      const g = svgEl("g", { class: "node", "data-service": name });
      g.appendChild(svgEl("rect", { x: at.x, y: at.y, width: W, height: H, rx: 6, stroke: serviceColor(name) }));
      const t = svgEl("text", { x: at.x + W / 2, y: at.y + H / 2 + 4, "text-anchor": "middle" });
      t.textContent = name.length > 26 ? name.slice(0, 25) + "…" : name;
      g.appendChild(t);
      const title = svgEl("title");
      title.textContent = name;
      g.appendChild(title);
      svg.appendChild(g);
    }
    map.appendChild(svg);
  }

  // ---- views -----------------------------------------------------------------------------
  function route() {
    const h = location.hash || "#/search";
    const m = /^#\/trace\/([0-9a-fA-F]{1,32})$/.exec(h);
    $("view-search").hidden = !!m || h.startsWith("#/map");
    $("view-trace").hidden = !m;
    $("view-map").hidden = !h.startsWith("#/map");
    $("nav-search").classList.toggle("active", !$("view-search").hidden);
    $("nav-map").classList.toggle("active", !$("view-map").hidden);
    if (m) showTrace(m[1].toLowerCase());
    else if (h.startsWith("#/map")) showMap();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("search-form").addEventListener("submit", search);
    $("map-form").addEventListener("submit", showMap);
    $("f-service").addEventListener("change", loadOperations);
    $("sort-duration").addEventListener("click", () => { state.sort = state.sort === "duration" ? "start" : "duration"; renderList(); });
    $("sort-errors").addEventListener("click", () => { state.sort = state.sort === "errors" ? "start" : "errors"; renderList(); });
    window.addEventListener("hashchange", route);
    loadServices();
    route();
  });
})();
