// board.js: the board's page. Hash routes: #/ lists the pipelines,
// #/p/<id> shows one (launch form, plan, DAG, runs, comparison) and
// #/p/<id>/run/<run> follows one of its runs over server-sent events.
// Everything is built with DOM calls (no innerHTML); drawing is in draw.js.
"use strict";

const TOKEN = document.querySelector('meta[name="lathe-token"]').content;
const app = document.getElementById("app");
const crumbs = document.getElementById("crumbs");

// h creates an element: attrs may hold class, text, on<event> handlers and
// any other attribute.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

// api fetches a JSON endpoint; with a body it POSTs with the token. It
// returns {status, data} and throws on errors that carry no plan.
async function api(path, body) {
  const opt = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Lathe-Token": TOKEN },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, opt);
  const ct = r.headers.get("Content-Type") || "";
  const data = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok && !(data && typeof data === "object" && "command" in data)) {
    throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  }
  return { status: r.status, data };
}

// fill replaces an element's children, skipping null and false (which
// replaceChildren would turn into text).
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// paragraphs renders a comment block: blank lines separate paragraphs,
// indented lines (examples, commands) keep their layout.
function paragraphs(text) {
  return (text || "").split(/\n\s*\n/).filter((p) => p.trim() !== "").map((p) =>
    /^\s/m.test(p) ? h("pre", { text: p }) : h("p", { text: p.replace(/\s*\n\s*/g, " ") }));
}

const q = (o) => new URLSearchParams(o).toString();
const enc = encodeURIComponent;

function fmtDuration(sec) {
  if (sec === undefined || sec === null) return "-";
  if (sec < 1) return `${Math.round(sec * 1000)}ms`;
  if (sec < 60) return `${sec.toFixed(1)}s`;
  const m = Math.floor(sec / 60), s = Math.round(sec % 60);
  if (m < 60) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const u = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return `${n.toFixed(1)} ${u[i]}`;
}

function countsText(c) {
  if (!c) return "-";
  const parts = [];
  for (const k of ["ran", "cached", "failed", "canceled", "running", "interrupted"]) {
    if (c[k]) parts.push(`${c[k]} ${k}`);
  }
  return parts.join(", ") || "-";
}

let page = null; // the current page: {destroy(), pid?, selectRun?}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts[0] === "p" && parts.length >= 2) {
    const runId = parts[2] === "run" ? parts[3] || null : null;
    if (page && page.pid === parts[1]) {
      page.selectRun(runId);
      return;
    }
    if (page) page.destroy();
    page = new PipelinePage(parts[1], runId);
    return;
  }
  const first = page === null;
  if (page) page.destroy();
  page = showPipelines(first);
}

function setCrumbs(...items) {
  crumbs.replaceChildren(...items.flatMap((it) => [h("span", { class: "sep", text: "/" }), it]));
}

function showPipelines(first) {
  setCrumbs(h("span", { text: "pipelines" }));
  const list = h("div", { class: "cards", id: "pipelines" });
  app.replaceChildren(h("section", { class: "panel wide" }, h("h2", { text: "Pipelines" }), list));
  api("/api/pipelines").then(({ data }) => {
    if (first && data.length === 1 && location.hash === "") {
      location.replace(`#/p/${enc(data[0].id)}`);
      return;
    }
    if (data.length === 0) {
      list.append(h("p", { class: "muted", text: "No pipeline.hcl here or in the subdirectories." }));
      return;
    }
    for (const p of data) {
      list.append(h("a", { class: "card", href: `#/p/${enc(p.id)}`, "data-pipeline": p.id },
        h("h3", { text: p.name }), h("code", { text: p.path }),
        ...paragraphs(p.description).slice(0, 1)));
    }
  }).catch((e) => list.append(h("p", { class: "error", text: e.message })));
  return { destroy() {} };
}

// Stage states of a run, from its events.
const STATE_LABEL = { waiting: "waiting", running: "running", cached: "cached", done: "done", failed: "failed", canceled: "canceled", skipped: "skipped" };
// Stage states of a plan, from its actions.
const ACTION_STATE = { cached: ["cached", "cached"], run: ["torun", "will run"], pending: ["pending", "pending upstream"], pull: ["pull", "pull from remote"], skip: ["skipped", "not targeted"] };
const METRIC_ORDER = ["loss", "eval_loss", "lr", "grad_norm"];

class PipelinePage {
  constructor(pid, runId) {
    this.pid = pid;
    this.info = null;
    this.plan = null;
    this.planSeq = 0;
    this.run = null;
    this.selected = null;
    this.records = new Map(); // key -> record promise
    this.compare = new Map(); // run id -> metrics
    this.timers = [];
    this.smoothing = 0.6;
    this.build();
    this.load().then(() => this.selectRun(runId));
    this.timers.push(setInterval(() => this.refreshRuns(), 3000));
  }

  destroy() {
    this.timers.forEach(clearInterval);
    if (this.run && this.run.es) this.run.es.close();
    clearTimeout(this.planTimer);
    clearTimeout(this.drawTimer);
  }

  build() {
    const p = this.pid;
    setCrumbs(h("a", { href: `#/p/${enc(p)}`, text: p === "." ? "(this directory)" : p }));
    this.el = {
      desc: h("div", { class: "desc" }),
      form: h("form", { id: "vars", onsubmit: (e) => e.preventDefault() }),
      loadErrors: h("pre", { class: "errors", id: "load-errors", hidden: true }),
      planErrors: h("pre", { class: "errors", id: "plan-errors", hidden: true }),
      planSummary: h("p", { id: "plan-summary", class: "muted" }),
      planList: h("ul", { id: "plan", class: "plan" }),
      command: h("pre", { id: "command", class: "command" }),
      start: h("button", { id: "start", class: "primary", type: "button", onclick: () => this.start(), text: "Start run" }),
      startMsg: h("span", { id: "start-msg", class: "muted" }),
      runbar: h("div", { id: "runbar", class: "runbar" }),
      dag: document.createElementNS(SVGNS, "svg"),
      stage: h("section", { id: "stage", class: "panel", hidden: true }),
      charts: h("div", { id: "charts", class: "charts" }),
      runs: h("tbody"),
      compareMetric: h("select", { id: "compare-metric", onchange: () => this.drawCompare() }),
      compareChart: document.createElementNS(SVGNS, "svg"),
      source: h("a", { href: `/api/source?${q({ p, path: "pipeline.hcl" })}`, target: "_blank", rel: "noopener", text: "pipeline.hcl" }),
    };
    this.el.dag.setAttribute("id", "dag");
    this.el.dag.setAttribute("class", "dag");
    this.el.compareChart.setAttribute("id", "compare-chart");
    this.el.compareChart.setAttribute("class", "chart hidden");
    const smoothing = h("input", { id: "smoothing", type: "range", min: 0, max: 0.99, step: 0.01, value: this.smoothing,
      oninput: (e) => { this.smoothing = +e.target.value; this.drawCharts(); this.drawCompare(); } });
    app.replaceChildren(h("div", { class: "pipeline" },
      h("aside", { class: "panel launch" },
        h("h2", { text: "Variables" }), this.el.desc, this.el.loadErrors, this.el.form,
        h("h2", { text: "Plan" }), this.el.planErrors, this.el.planSummary, this.el.planList,
        h("h3", { text: "Preview command" }), this.el.command,
        h("div", { class: "actions" }, this.el.start, this.el.startMsg),
        h("p", { class: "muted small" }, "Source: ", this.el.source)),
      h("div", { class: "view" },
        this.el.runbar,
        h("section", { class: "panel dagpanel" }, this.el.dag),
        this.el.stage,
        h("section", { class: "panel" },
          h("div", { class: "row" }, h("h2", { text: "Metrics" }), h("label", { class: "muted" }, "smoothing ", smoothing)),
          this.el.charts),
        h("section", { class: "panel" }, h("h2", { text: "Runs" }),
          h("table", { id: "runs", class: "runs" },
            h("thead", {}, h("tr", {}, ...["compare", "run", "status", "started", "duration", "stages", ""].map((t) => h("th", { text: t })))),
            this.el.runs)),
        h("section", { class: "panel", id: "compare" },
          h("div", { class: "row" }, h("h2", { text: "Compare runs" }), h("label", { class: "muted" }, "metric ", this.el.compareMetric)),
          h("p", { class: "muted small", text: "Tick runs in the table to overlay one metric across them." }),
          this.el.compareChart))));
  }

  async load() {
    try {
      const { data } = await api(`/api/pipeline?${q({ p: this.pid })}`);
      this.info = data;
    } catch (e) {
      this.el.loadErrors.hidden = false;
      this.el.loadErrors.textContent = e.message;
      return;
    }
    const info = this.info;
    fill(this.el.desc, paragraphs(info.description));
    if (info.errors) {
      this.el.loadErrors.hidden = false;
      this.el.loadErrors.textContent = info.errors;
    }
    if (info.variables.length === 0) this.el.form.append(h("p", { class: "muted", text: "This pipeline declares no variables." }));
    for (const v of info.variables) this.el.form.append(this.field(v));
    this.renderRunbar();
    this.refreshRuns();
    await this.doPlan();
  }

  field(v) {
    const id = `var-${v.name}`;
    const onchange = () => this.schedulePlan();
    let control;
    if (v.input === "bool") {
      control = h("select", { id, name: v.name, onchange },
        h("option", { value: "true", text: "true" }), h("option", { value: "false", text: "false" }));
      control.value = v.default || "false";
    } else if (v.input === "expr") {
      control = h("textarea", { id, name: v.name, rows: 3, spellcheck: "false", oninput: onchange, value: v.default });
    } else {
      control = h("input", { id, name: v.name, type: "text", spellcheck: "false", autocomplete: "off",
        inputmode: v.input === "number" ? "decimal" : null, oninput: onchange, value: v.default,
        placeholder: v.required ? "required" : null });
    }
    return h("div", { class: "field", "data-var": v.name },
      h("label", { for: id }, h("span", { class: "name", text: v.name }), h("span", { class: "type", text: v.type }),
        v.required ? h("span", { class: "req", text: "required" }) : null,
        v.validations ? h("span", { class: "type", text: `${v.validations} rule${v.validations > 1 ? "s" : ""}` }) : null),
      control,
      v.description ? h("div", { class: "hint", text: v.description }) : null,
      h("div", { class: "err", id: `err-${v.name}`, hidden: true }));
  }

  // vars returns the form's values that differ from the defaults.
  vars() {
    const out = {};
    if (!this.info) return out;
    for (const v of this.info.variables) {
      const el = this.el.form.elements.namedItem(v.name);
      if (!el) continue;
      if (v.required ? el.value !== "" : el.value !== v.default) out[v.name] = el.value;
    }
    return out;
  }

  schedulePlan() {
    clearTimeout(this.planTimer);
    this.planTimer = setTimeout(() => this.doPlan(), 250);
  }

  async doPlan() {
    const seq = ++this.planSeq;
    this.el.planSummary.textContent = "planning…";
    let res;
    try {
      res = await api("/api/plan", { p: this.pid, vars: this.vars() });
    } catch (e) {
      if (seq !== this.planSeq) return;
      this.showPlanErrors({ ok: false, errors: e.message, command: this.el.command.textContent });
      return;
    }
    if (seq !== this.planSeq) return; // a newer plan is on its way
    this.showPlan(res.data);
  }

  showPlanErrors(resp) {
    for (const el of this.el.form.querySelectorAll(".err")) { el.hidden = true; el.textContent = ""; }
    for (const el of this.el.form.querySelectorAll(".field")) el.classList.remove("invalid");
    for (const [name, msgs] of Object.entries(resp.var_errors || {})) {
      const err = document.getElementById(`err-${name}`);
      if (!err) continue;
      err.hidden = false;
      err.textContent = msgs.join("\n");
      err.parentElement.classList.add("invalid");
    }
    this.el.planErrors.hidden = !resp.errors;
    this.el.planErrors.textContent = resp.errors || "";
    this.el.command.textContent = resp.command || "";
    this.el.start.disabled = !resp.ok;
    if (!resp.ok) {
      this.el.planSummary.textContent = "Fix the errors to see the plan.";
      this.el.planList.replaceChildren();
      this.el.planList.classList.add("stale");
    }
  }

  showPlan(resp) {
    this.showPlanErrors(resp);
    if (!resp.ok) return;
    this.plan = resp;
    this.el.planList.classList.remove("stale");
    const c = resp.counts || {};
    this.el.planSummary.textContent = `${c.run || 0} to run, ${c.pending || 0} pending on upstream results, ${c.cached || 0} cached` +
      (c.pull ? `, ${c.pull} to pull` : "") + (c.skip ? `, ${c.skip} not targeted` : "") + ".";
    this.el.planList.replaceChildren(...resp.steps.map((s) =>
      h("li", { "data-addr": s.address, "data-action": s.action, class: `action-${s.action}`, onclick: () => this.select(s.address) },
        h("span", { class: "badge", text: s.action }), h("code", { text: s.address }), h("span", { class: "reason", text: s.reason }))));
    if (!this.run) this.drawDAG();
    if (this.selected) this.renderStage(true);
  }

  async start() {
    this.el.start.disabled = true;
    this.el.startMsg.textContent = "starting…";
    try {
      const { status, data } = await api("/api/runs", { p: this.pid, vars: this.vars() });
      if (status !== 200) {
        this.showPlanErrors(data);
        this.el.startMsg.textContent = "not started";
        return;
      }
      this.el.startMsg.textContent = "";
      location.hash = `#/p/${enc(this.pid)}/run/${enc(data.run)}`;
    } catch (e) {
      this.el.startMsg.textContent = e.message;
    } finally {
      this.el.start.disabled = !(this.plan && this.plan.ok);
    }
  }

  async cancelRun(id) {
    const btn = document.getElementById("cancel");
    if (btn && this.run && this.run.id === id) { btn.disabled = true; btn.textContent = "canceling…"; }
    try {
      await api("/api/runs/cancel", { p: this.pid, run: id });
    } catch (e) {
      alert(e.message);
    }
    this.refreshRuns();
  }

  // selectRun follows a run (null: back to the plan of the form).
  async selectRun(runId) {
    if (this.run && this.run.id === runId) return;
    if (this.run && this.run.es) this.run.es.close();
    this.run = null;
    if (runId) {
      const run = { id: runId, steps: null, states: {}, metrics: {}, logs: { "": [] }, status: "running", active: false, es: null };
      this.run = run;
      this.renderRunbar();
      try {
        const { data } = await api(`/api/run?${q({ p: this.pid, run: runId })}`);
        if (this.run !== run) return;
        run.detail = data;
        run.active = data.active;
        run.started = Date.parse(data.started);
        run.steps = (data.plan && data.plan.steps) || [];
        for (const s of run.steps) {
          run.states[s.address] = s.action === "skip" ? { state: "skipped", label: "not targeted" } : { state: "waiting", label: "waiting" };
        }
      } catch (e) {
        run.error = e.message;
      }
      this.follow(run);
    }
    this.renderRunbar();
    this.drawDAG();
    this.drawCharts();
    this.renderStage(true);
  }

  follow(run) {
    const es = new EventSource(`/api/events?${q({ p: this.pid, run: run.id })}`);
    run.es = es;
    es.onmessage = (m) => {
      if (this.run !== run) return;
      this.apply(run, JSON.parse(m.data));
      this.scheduleDraw();
    };
    es.addEventListener("end", () => {
      es.close();
      if (this.run !== run) return;
      for (const st of Object.values(run.states)) {
        if (st.state === "waiting" || st.state === "running") Object.assign(st, { state: "skipped", label: "did not run", progress: null });
      }
      run.ended = true;
      run.active = false;
      // The writer went away without finishing the run (a killed process).
      if (run.status === "running") run.status = "interrupted";
      this.scheduleDraw();
      this.refreshRuns();
      this.doPlan(); // what was cached has changed
    });
  }

  apply(run, ev) {
    const st = ev.stage ? (run.states[ev.stage] = run.states[ev.stage] || { state: "waiting" }) : null;
    switch (ev.type) {
      case "run-started":
        run.started = Date.parse(ev.time);
        break;
      case "stage-started":
        Object.assign(st, { state: "running", label: "running", key: ev.key, progress: 0, started: Date.parse(ev.time) });
        break;
      case "progress":
        st.state = "running";
        st.progress = ev.total ? (ev.done || 0) / ev.total : null;
        st.label = ev.total ? `${ev.done || 0}/${ev.total} ${ev.unit || ""}`.trim() : "running";
        break;
      case "stage-cached":
        Object.assign(st, { state: "cached", label: ev.message ? `cached (${ev.message})` : "cached", key: ev.key, progress: null });
        break;
      case "stage-finished":
        Object.assign(st, { state: "done", label: `done in ${fmtDuration((ev.duration || 0) / 1e9)}`, key: ev.key, progress: null });
        break;
      case "stage-failed":
        Object.assign(st, { state: "failed", label: "failed", error: ev.message, progress: null });
        break;
      case "stage-canceled":
        Object.assign(st, { state: "canceled", label: "canceled", progress: null });
        break;
      case "log": {
        const logs = run.logs[ev.stage || ""] = run.logs[ev.stage || ""] || [];
        logs.push(ev.message);
        if (logs.length > 500) logs.splice(0, logs.length - 500);
        break;
      }
      case "metrics": {
        const m = run.metrics[ev.stage] = run.metrics[ev.stage] || {};
        for (const [k, v] of Object.entries(ev.metrics || {})) (m[k] = m[k] || []).push([ev.step || 0, v]);
        break;
      }
      case "run-finished":
        run.status = ev.status;
        run.finished = Date.parse(ev.time);
        run.active = false;
        break;
    }
  }

  scheduleDraw() {
    if (this.drawTimer) return;
    this.drawTimer = setTimeout(() => {
      this.drawTimer = null;
      this.renderRunbar();
      this.drawDAG();
      this.drawCharts();
      this.renderStage(false);
    }, 150);
  }

  renderRunbar() {
    const bar = this.el.runbar;
    const run = this.run;
    if (!run) {
      bar.replaceChildren(h("span", { class: "muted", text: "Showing the plan for the variables on the left. Start a run, or pick one below." }));
      bar.dataset.mode = "plan";
      return;
    }
    bar.dataset.mode = "run";
    const end = run.finished || Date.now();
    const status = run.error ? "unknown" : run.status;
    fill(bar,
      h("span", {}, "Run ", h("code", { id: "run-id", text: run.id })),
      h("span", { id: "run-status", class: `badge status-${status}`, "data-status": status, text: status }),
      h("span", { id: "run-duration", class: "muted", text: run.started ? fmtDuration((end - run.started) / 1000) : "" }),
      run.active && !run.finished ? h("button", { id: "cancel", type: "button", class: "danger", onclick: () => this.cancelRun(run.id), text: "Cancel" }) : null,
      run.error ? h("span", { class: "error", text: run.error }) : null,
      h("a", { href: `#/p/${enc(this.pid)}`, class: "right", text: "back to the plan" }));
  }

  // dagState maps addresses to what the DAG shows.
  dagState() {
    const out = {};
    if (this.run) return this.run.states;
    for (const s of (this.plan && this.plan.steps) || []) {
      const [state, label] = ACTION_STATE[s.action] || [s.action, s.action];
      out[s.address] = { state, label };
    }
    return out;
  }

  drawDAG() {
    // A run without a recorded plan is drawn with the plan of the form.
    const planned = this.plan && this.plan.steps;
    const steps = this.run && this.run.steps && this.run.steps.length ? this.run.steps : planned;
    drawDAG(this.el.dag, steps || [], this.dagState(), this.selected, (a) => this.select(a));
  }

  select(addr) {
    this.selected = this.selected === addr ? null : addr;
    this.drawDAG();
    this.renderStage(true);
  }

  drawCharts() {
    const box = this.el.charts;
    const metrics = this.run ? this.run.metrics : {};
    const names = new Set();
    for (const m of Object.values(metrics)) Object.keys(m).forEach((k) => names.add(k));
    const ordered = [...names].sort((a, b) => {
      const ia = METRIC_ORDER.indexOf(a), ib = METRIC_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    if (ordered.length === 0) {
      box.replaceChildren(h("p", { class: "muted", text: this.run ? "No metrics in this run yet." : "Pick or start a run to see its metrics." }));
      return;
    }
    const existing = new Map([...box.querySelectorAll("svg.chart")].map((el) => [el.dataset.metric, el]));
    const charts = ordered.map((name) => {
      let el = existing.get(name);
      if (!el) {
        el = document.createElementNS(SVGNS, "svg");
        el.setAttribute("class", "chart");
        el.dataset.metric = name;
      }
      const series = Object.entries(metrics).filter(([, m]) => m[name]).map(([stage, m]) => ({ name: stage, points: m[name] }));
      lineChart(el, name, series, this.smoothing);
      return el;
    });
    box.replaceChildren(...charts);
  }

  stepOf(addr) {
    const from = (steps) => (steps || []).find((s) => s.address === addr);
    return { plan: from(this.plan && this.plan.steps), run: this.run && from(this.run.steps) };
  }

  // renderStage shows the selected stage; full re-renders everything,
  // else only the live parts (state, log) are updated.
  renderStage(full) {
    const panel = this.el.stage;
    const addr = this.selected;
    if (!addr) { panel.hidden = true; return; }
    panel.hidden = false;
    const { plan, run } = this.stepOf(addr);
    const step = plan || run || { address: addr, kind: "?" };
    const st = this.dagState()[addr] || { state: "unknown" };
    const key = (this.run && st.key && ["done", "cached"].includes(st.state)) ? st.key : (!this.run && plan && plan.action === "cached" ? plan.key : null);
    // In a run, the run's own plan says what it did; the arguments and key
    // come from the plan of the form, which may differ from the run's.
    const decided = this.run ? run : plan;
    const aside = plan && this.run && plan.key !== st.key ? " (for the variables on the left)" : "";
    const sig = `${addr}|${st.state}|${key}|${this.run && this.run.id}|${plan && plan.key}`;
    if (!full && panel.dataset.sig === sig) {
      this.updateLog(addr);
      return;
    }
    panel.dataset.sig = sig;
    panel.dataset.addr = addr;
    const logs = h("pre", { id: "stage-log", class: "log" });
    const artifacts = h("div", { id: "stage-artifacts" });
    fill(panel,
      h("div", { class: "row" },
        h("h2", {}, h("code", { text: addr }), " ", h("span", { class: "muted", text: step.kind })),
        h("span", { class: `badge state-${st.state}`, id: "stage-state", text: st.label || st.state }),
        h("button", { type: "button", class: "right", onclick: () => this.select(addr), text: "close" })),
      decided ? h("p", {}, h("strong", { text: `${this.run ? "in this run" : "plan"}: ${decided.action}` }), ` — ${decided.reason}`) : null,
      st.error ? h("pre", { class: "errors", text: st.error }) : null,
      plan && plan.args ? h("details", { open: true }, h("summary", { text: "Arguments" + aside }), h("pre", { class: "args", text: JSON.stringify(plan.args, null, 2) })) : null,
      plan && plan.explain ? h("details", {}, h("summary", { text: "Cache key" + aside }), h("pre", { class: "key", id: "stage-key", text: plan.explain })) : null,
      this.run ? h("div", {}, h("h3", { text: "Log" }), logs) : null,
      h("h3", { text: "Artifacts" }), artifacts);
    this.updateLog(addr);
    if (!key) {
      artifacts.append(h("p", { class: "muted", text: "No committed result for this stage yet." }));
      return;
    }
    this.record(key).then((rec) => {
      if (this.selected !== addr) return;
      this.renderArtifacts(artifacts, rec);
      if (rec.kind === "tokenize") {
        const box = h("div", { id: "preview" });
        panel.append(h("h3", { text: "Dataset preview" }),
          h("button", { type: "button", id: "preview-button", onclick: () => this.preview(box, key), text: "Show the first samples" }), box);
      }
    }).catch((e) => artifacts.replaceChildren(h("p", { class: "error", text: e.message })));
  }

  updateLog(addr) {
    const pre = document.getElementById("stage-log");
    if (!pre || !this.run) return;
    const lines = this.run.logs[addr] || [];
    const text = lines.slice(-200).join("\n") || "(no log lines)";
    if (pre.textContent !== text) {
      pre.textContent = text;
      pre.scrollTop = pre.scrollHeight;
    }
  }

  record(key) {
    if (!this.records.has(key)) {
      const p = api(`/api/record?${q({ p: this.pid, key })}`).then((r) => r.data);
      p.catch(() => this.records.delete(key));
      this.records.set(key, p);
    }
    return this.records.get(key);
  }

  renderArtifacts(box, rec) {
    box.replaceChildren();
    const names = Object.keys(rec.artifacts || {}).sort();
    const list = h("ul", { class: "artifacts" });
    for (const name of names) {
      const a = rec.artifacts[name];
      const files = h("div", { class: "files" });
      list.append(h("li", { "data-artifact": name },
        h("strong", { text: name }), " ", h("code", { title: a.digest, text: a.digest.slice(7, 19) }),
        h("span", { class: "muted", text: ` ${a.files} file${a.files === 1 ? "" : "s"}, ${fmtBytes(a.size)} ` }),
        h("button", { type: "button", class: "small", onclick: () => this.browse(files, a.digest, ""), text: "browse" }),
        files));
    }
    box.append(names.length ? list : h("p", { class: "muted", text: "This stage has no artifact outputs." }));
    const values = Object.entries(rec.values || {});
    if (values.length) {
      box.append(h("h3", { text: "Values" }), h("pre", { class: "args", text: values.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n") }));
    }
  }

  async browse(box, digest, path) {
    let data;
    try {
      ({ data } = await api(`/api/artifact?${q({ p: this.pid, digest, path })}`));
    } catch (e) {
      box.replaceChildren(h("p", { class: "error", text: e.message }));
      return;
    }
    const join = (n) => (path ? `${path}/${n}` : n);
    const rows = data.entries.map((e) => e.dir
      ? h("li", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); this.browse(box, digest, join(e.name)); }, text: `${e.name}/` }))
      : h("li", {}, h("code", { text: e.name }), h("span", { class: "muted", text: ` ${fmtBytes(e.size)} ` }),
        h("a", { href: `/api/artifact?${q({ p: this.pid, digest, path: join(e.name) })}`, target: "_blank", rel: "noopener", text: "view" }), " ",
        h("a", { class: "download", href: `/api/artifact?${q({ p: this.pid, digest, path: join(e.name), download: 1 })}`, text: "download" })));
    const up = path ? h("li", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); this.browse(box, digest, path.split("/").slice(0, -1).join("/")); }, text: "../" })) : null;
    box.replaceChildren(h("ul", { class: "listing" }, up, ...rows));
  }

  async preview(box, key) {
    box.replaceChildren(h("p", { class: "muted", text: "loading…" }));
    let data;
    try {
      ({ data } = await api(`/api/preview?${q({ p: this.pid, key, n: 5 })}`));
    } catch (e) {
      box.replaceChildren(h("p", { class: "error", text: e.message }));
      return;
    }
    const m = data.manifest;
    box.replaceChildren(
      h("p", { class: "muted", text: `${m.rows_read} rows read, ${m.samples_written} samples written, ${m.tokens} tokens (${m.trainable_tokens} trained), ${m.truncated} truncated; cutoff ${m.cutoff_len}${m.packing ? ", packed" : ""}${m.template ? ", template " + m.template : ""}. Trained tokens are highlighted.` }),
      ...data.samples.map((s) => h("div", { class: "sample" },
        h("div", { class: "muted small", text: `sample ${s.index}${s.label ? " " + s.label : ""}: ${s.tokens} tokens, ${s.trained} trained` }),
        h("pre", {}, ...s.spans.map((sp) => sp.trained ? h("mark", { class: "trained", text: sp.text }) : sp.text)))));
  }

  async refreshRuns() {
    let list;
    try {
      ({ data: list } = await api(`/api/runs?${q({ p: this.pid })}`));
    } catch (e) {
      return;
    }
    const checked = new Set(this.compare.keys());
    this.el.runs.replaceChildren(...list.map((r) => h("tr", { "data-run": r.id, "data-status": r.status, class: this.run && this.run.id === r.id ? "current" : null },
      h("td", {}, h("input", { type: "checkbox", class: "compare", checked: checked.has(r.id), onchange: (e) => this.toggleCompare(r.id, e.target.checked) })),
      h("td", {}, h("a", { href: `#/p/${enc(this.pid)}/run/${enc(r.id)}` }, h("code", { text: r.id }))),
      h("td", {}, h("span", { class: `badge status-${r.status}`, text: r.status })),
      h("td", { text: new Date(r.started).toLocaleString() }),
      h("td", { text: fmtDuration(r.duration_s) }),
      h("td", { text: countsText(r.stages) }),
      h("td", {}, r.active ? h("button", { type: "button", class: "danger small", onclick: () => this.cancelRun(r.id), text: "Cancel" }) : null))));
    if (list.length === 0) this.el.runs.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No runs yet." })));
    // Runs still going are refetched for the comparison.
    for (const r of list) {
      if (this.compare.has(r.id) && r.status === "running") this.toggleCompare(r.id, true);
    }
  }

  async toggleCompare(id, on) {
    if (!on) {
      this.compare.delete(id);
      this.drawCompare();
      return;
    }
    try {
      const { data } = await api(`/api/metrics?${q({ p: this.pid, run: id })}`);
      this.compare.set(id, data.stages);
    } catch (e) {
      this.compare.delete(id);
    }
    this.drawCompare();
  }

  drawCompare() {
    const names = new Set();
    for (const stages of this.compare.values()) for (const m of Object.values(stages)) Object.keys(m).forEach((k) => names.add(k));
    const sel = this.el.compareMetric;
    const want = sel.value || (names.has("loss") ? "loss" : [...names][0]);
    const opts = [...names].sort();
    if (opts.join("\n") !== [...sel.options].map((o) => o.value).join("\n")) {
      sel.replaceChildren(...opts.map((n) => h("option", { value: n, text: n })));
    }
    if (want) sel.value = want;
    const series = [];
    for (const [id, stages] of this.compare) {
      for (const [stage, m] of Object.entries(stages)) {
        if (m[sel.value]) series.push({ run: id, stage, points: m[sel.value] });
      }
    }
    // Name series by run, and by stage too when they differ.
    const oneStage = new Set(series.map((s) => s.stage)).size <= 1;
    for (const s of series) s.name = oneStage ? s.run : `${s.run.slice(-13)} ${s.stage}`;
    this.el.compareChart.classList.toggle("hidden", series.length === 0);
    lineChart(this.el.compareChart, sel.value, series, this.smoothing);
    this.el.compareChart.dataset.series = series.length;
  }
}

window.addEventListener("hashchange", route);
route();
