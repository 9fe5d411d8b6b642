// draw.js: the board's SVG drawing, no libraries. drawDAG lays a pipeline's
// stages out left to right; lineChart draws metric series with smoothing.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

// svg creates an SVG element with attributes and children.
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

// layoutDAG assigns each step a column (its longest distance from a source)
// and a row (ordered by the mean row of its dependencies, then by plan
// order, to keep edges short).
function layoutDAG(steps) {
  const byAddr = new Map(steps.map((s, i) => [s.address, { step: s, index: i }]));
  const col = new Map();
  const colOf = (addr, seen) => {
    if (col.has(addr)) return col.get(addr);
    if (seen.has(addr)) return 0; // a cycle cannot happen in a plan; be safe
    seen.add(addr);
    let c = 0;
    for (const d of byAddr.get(addr).step.deps || []) {
      if (byAddr.has(d)) c = Math.max(c, colOf(d, seen) + 1);
    }
    col.set(addr, c);
    return c;
  };
  steps.forEach((s) => colOf(s.address, new Set()));
  const columns = [];
  steps.forEach((s) => {
    const c = col.get(s.address);
    (columns[c] = columns[c] || []).push(s.address);
  });
  const row = new Map();
  columns.forEach((addrs, c) => {
    const key = (a) => {
      const deps = (byAddr.get(a).step.deps || []).filter((d) => row.has(d));
      if (c === 0 || deps.length === 0) return byAddr.get(a).index;
      return deps.reduce((t, d) => t + row.get(d), 0) / deps.length;
    };
    addrs.sort((a, b) => key(a) - key(b) || byAddr.get(a).index - byAddr.get(b).index);
    addrs.forEach((a, r) => row.set(a, r));
  });
  return { col, row, columns };
}

const NODE_W = 200, NODE_H = 58, GAP_X = 70, GAP_Y = 22, PAD = 16;

// drawDAG draws steps ({address, kind, deps}) into the SVG element. state
// maps an address to {state, label, progress (0..1 or null)}; onSelect is
// called with an address when a stage is clicked.
function drawDAG(el, steps, state, selected, onSelect) {
  clear(el);
  if (!steps || steps.length === 0) {
    el.setAttribute("viewBox", "0 0 400 60");
    el.appendChild(svg("text", { x: 12, y: 34, class: "empty" }, "No stages."));
    return;
  }
  const { col, row, columns } = layoutDAG(steps);
  const maxRows = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + maxRows * NODE_H + (maxRows - 1) * GAP_Y;
  el.setAttribute("viewBox", `0 0 ${width} ${height}`);
  el.setAttribute("width", width);
  el.setAttribute("height", height);
  const pos = (a) => {
    const c = col.get(a), n = columns[c].length;
    const off = ((maxRows - n) * (NODE_H + GAP_Y)) / 2; // centre short columns
    return { x: PAD + c * (NODE_W + GAP_X), y: PAD + off + row.get(a) * (NODE_H + GAP_Y) };
  };
  el.appendChild(svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  const edges = svg("g", { class: "edges" });
  const nodes = svg("g", { class: "nodes" });
  el.appendChild(edges);
  el.appendChild(nodes);
  for (const s of steps) {
    const to = pos(s.address);
    for (const d of s.deps || []) {
      if (!col.has(d)) continue;
      const from = pos(d);
      const x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2, x2 = to.x - 2, y2 = to.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      edges.appendChild(svg("path", {
        d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
        class: "edge", "data-from": d, "data-to": s.address, "marker-end": "url(#arrow)",
      }));
    }
  }
  for (const s of steps) {
    const p = pos(s.address);
    const st = state[s.address] || { state: "unknown", label: "" };
    const g = svg("g", {
      class: `node state-${st.state}` + (selected === s.address ? " selected" : ""),
      "data-addr": s.address, "data-state": st.state, transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button",
    });
    g.appendChild(svg("title", {}, `${s.address} (${s.kind}): ${st.label || st.state}`));
    g.appendChild(svg("rect", { class: "box", width: NODE_W, height: NODE_H, rx: 8, ry: 8 }));
    g.appendChild(svg("text", { class: "addr", x: 10, y: 22 }, ellipsize(s.address, 26)));
    g.appendChild(svg("text", { class: "sub", x: 10, y: 40 }, ellipsize(`${s.kind} · ${st.label || st.state}`, 32)));
    if (st.progress !== null && st.progress !== undefined) {
      g.appendChild(svg("rect", { class: "track", x: 10, y: NODE_H - 9, width: NODE_W - 20, height: 4, rx: 2 }));
      g.appendChild(svg("rect", { class: "bar", x: 10, y: NODE_H - 9, width: Math.max(0, Math.min(1, st.progress)) * (NODE_W - 20), height: 4, rx: 2 }));
    }
    g.addEventListener("click", () => onSelect(s.address));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") onSelect(s.address); });
    nodes.appendChild(g);
  }
}

function ellipsize(s, n) {
  return s.length <= n ? s : s.slice(0, n - 1) + "…";
}

// smooth is TensorBoard's debiased exponential moving average.
function smooth(points, weight) {
  if (!weight) return points;
  let last = 0, n = 0;
  return points.map(([x, y]) => {
    last = last * weight + (1 - weight) * y;
    n++;
    return [x, last / (1 - Math.pow(weight, n))];
  });
}

// niceTicks returns about n round tick values covering [lo, hi], each with
// its label written to the precision the step needs.
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) return [{ v: lo, label: fmtNum(lo) }];
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const big = Math.max(Math.abs(lo), Math.abs(hi));
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  const out = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) {
    const v = i * step;
    let label;
    if (big >= 1e5 || (big < 1e-3 && v !== 0)) label = v.toExponential(Math.max(0, Math.floor(Math.log10(big)) - Math.floor(Math.log10(step))));
    else label = v.toFixed(digits);
    out.push({ v, label });
  }
  return out;
}

function fmtNum(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return String(+v.toPrecision(4));
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d", "#4b5563", "#ca8a04"];

// lineChart draws series [{name, points: [[step, value]...]}] into the SVG
// element: the raw values faint, their smoothed curve on top, axes with
// round ticks and a legend when there is more than one series.
function lineChart(el, title, series, smoothing) {
  clear(el);
  const W = 420, H = 230, L = 52, R = 12, T = 26, B = 28;
  el.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const all = series.flatMap((s) => s.points);
  el.setAttribute("data-points", all.length);
  el.appendChild(svg("text", { class: "title", x: L, y: 16 }, title));
  if (all.length === 0) {
    el.appendChild(svg("text", { class: "empty", x: L, y: H / 2 }, "no points yet"));
    return;
  }
  let x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
  let y0 = Math.min(...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1]));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  // A range that is tiny next to the values (a learning rate that barely
  // moves) is widened, so that ticks need no more than a few digits.
  const minRange = Math.max(Math.abs(y0), Math.abs(y1)) * 0.005 || 1;
  if (y1 - y0 < minRange) { const mid = (y0 + y1) / 2; y0 = mid - minRange / 2; y1 = mid + minRange / 2; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const axes = svg("g", { class: "axes" });
  for (const t of niceTicks(y0, y1, 4)) {
    axes.appendChild(svg("line", { class: "grid", x1: L, x2: W - R, y1: sy(t.v), y2: sy(t.v) }));
    axes.appendChild(svg("text", { class: "tick", x: L - 6, y: sy(t.v) + 4, "text-anchor": "end" }, t.label));
  }
  for (const t of niceTicks(x0, x1, 5)) {
    if (t.v !== Math.round(t.v)) continue; // steps are whole
    axes.appendChild(svg("text", { class: "tick", x: sx(t.v), y: H - 10, "text-anchor": "middle" }, t.label));
  }
  axes.appendChild(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  axes.appendChild(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  el.appendChild(axes);
  const pts = (ps) => ps.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const sorted = [...s.points].sort((a, b) => a[0] - b[0]);
    el.appendChild(svg("polyline", { class: "raw", points: pts(sorted), stroke: color }));
    el.appendChild(svg("polyline", { class: "smooth", points: pts(smooth(sorted, smoothing)), stroke: color, "data-series": s.name }));
    if (sorted.length === 1) {
      el.appendChild(svg("circle", { class: "dot", cx: sx(sorted[0][0]), cy: sy(sorted[0][1]), r: 3, fill: color }));
    }
  });
  if (series.length > 1) {
    const legend = svg("g", { class: "legend" });
    const names = series.map((s) => ellipsize(s.name, 28));
    const lx = W - R - 14 - 5.8 * Math.max(...names.map((n) => n.length));
    series.forEach((s, i) => {
      const y = T + 4 + i * 13;
      legend.appendChild(svg("rect", { x: lx, y: y - 8, width: 8, height: 8, fill: s.color || PALETTE[i % PALETTE.length] }));
      legend.appendChild(svg("text", { x: lx + 12, y }, names[i]));
    });
    el.appendChild(legend);
  }
  const last = series.length === 1 && series[0].points.length ? series[0].points[series[0].points.length - 1] : null;
  if (last) el.appendChild(svg("text", { class: "last", x: W - R, y: 16, "text-anchor": "end" }, `step ${last[0]}: ${fmtNum(last[1])}`));
}
