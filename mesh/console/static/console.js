// The mesh console's one script: pages from the JSON API, live updates from server-sent events
// (each event's id is its Kafka position, so a reconnect resumes where it stopped), pan and
// zoom of the server-drawn DAG. No third-party code; text always goes in as text, never HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const main = () => $("#main");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// replaceChildren, skipping absent children (it would write "null").
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function problem(text) {
  const box = $("#problem");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function post(path, data) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) return `${m} m ${String(s).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

function shortTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

function since(iso, endIso) {
  if (!iso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return Math.max(0, (end - new Date(iso)) / 1000);
}

function badge(status) { return el("span", { class: `badge ${status}` }, status); }

// A live stream: EventSource reconnects by itself and sends Last-Event-ID; we show whether
// it is connected, and report problems the server sends.
function stream(url, handlers) {
  const source = new EventSource(url);
  const live = $("#live");
  source.onopen = () => { live.classList.add("on"); problem(""); };
  source.onerror = () => { live.classList.remove("on"); };
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(JSON.parse(event.data), event.lastEventId));
  }
  source.addEventListener("problem", (event) => problem(JSON.parse(event.data).error));
  window.addEventListener("beforeunload", () => source.close());
  return source;
}

function every(ms, fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); problem(""); } catch (error) { problem(error.message); }
    if (!stopped) setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; };
}

function table(columns, rows, onClick) {
  const head = el("tr", {}, columns.map((c) => el("th", {}, c)));
  const body = rows.map((row) => {
    const tr = el("tr", { class: onClick ? "click" : null }, row.cells.map((c) => el("td", {}, c)));
    if (onClick) tr.addEventListener("click", () => onClick(row));
    return tr;
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

// ---------------------------------------------------------------- workflows

const STATUSES = ["running", "paused", "completed", "failed", "cancelled"];

function workflowsPage() {
  const rows = new Map();
  let costs = {};
  const status = el("select", { "aria-label": "status" },
    el("option", { value: "" }, "any status"), STATUSES.map((s) => el("option", { value: s }, s)));
  const text = el("input", { type: "text", placeholder: "filter: id, tenant, reason…",
    "aria-label": "filter" });
  const count = el("span", { class: "muted" });
  const holder = el("div");
  fill(main(), el("h1", {}, "Workflows"), el("div", { class: "toolbar" }, status, text,
    count), holder);

  function render() {
    const wanted = status.value, words = text.value.trim().toLowerCase();
    const shown = [...rows.values()]
      .filter((r) => !wanted || r.status === wanted)
      .filter((r) => !words || [r.workflow_id, r.tenant, r.reason, r.status, r.workflow_type]
        .join(" ").toLowerCase().includes(words))
      .sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
    count.textContent = `${shown.length} of ${rows.size} workflow(s)`;
    fill(holder, table(
      ["workflow", "status", "tasks", "started (UTC)", "duration", "tenant", "cost"],
      shown.map((r) => ({
        id: r.workflow_id,
        cells: [
          el("a", { href: `/workflows/${encodeURIComponent(r.workflow_id)}` }, r.workflow_id),
          badge(r.status),
          r.total === null ? "" : `${r.done}/${r.total}`,
          shortTime(r.started_at),
          duration(r.status === "running" || r.status === "paused"
            ? since(r.started_at) : r.duration_seconds),
          r.tenant || "",
          costs[r.workflow_id] === undefined ? "" : costs[r.workflow_id].toFixed(4),
        ],
      })),
      (row) => { location.href = `/workflows/${encodeURIComponent(row.id)}`; },
    ));
  }
  status.addEventListener("change", render);
  text.addEventListener("input", render);

  api("/api/workflows").then((data) => {
    for (const row of data.rows) rows.set(row.workflow_id, row);
    render();
    stream(`/api/workflows/stream?after=${encodeURIComponent(data.after)}`, {
      rows: (message) => {
        for (const row of message.rows) rows.set(row.workflow_id, row);
        render();
      },
    });
  }).catch((error) => problem(error.message));
  every(15000, async () => { costs = (await api("/api/costs")).costs; render(); });
  setInterval(render, 1000);  // running durations
}

// ---------------------------------------------------------------- one workflow

function workflowPage(workflowId) {
  const base = `/api/workflows/${encodeURIComponent(workflowId)}`;
  const state = {
    tasks: {}, workflow: null, selected: null, replaying: false, history: null,
    tab: "dag", started: false,
  };
  const header = el("div", { class: "summary" });
  const reply = el("span", { class: "reply", id: "reply" });
  const signalName = el("input", { type: "text", placeholder: "signal name", size: 12,
    "aria-label": "signal name" });
  const signalPayload = el("input", { type: "text", placeholder: '{"payload": "json"}', size: 18,
    "aria-label": "signal payload" });
  const controls = el("div", { class: "toolbar" },
    el("button", { id: "pause", onclick: () => control({ action: "pause" }) }, "Pause"),
    el("button", { id: "resume", onclick: () => control({ action: "resume" }) }, "Resume"),
    el("button", { id: "cancel", class: "danger", onclick: () => control({ action: "cancel" }) },
      "Cancel"),
    signalName, signalPayload,
    el("button", { id: "signal", onclick: () => {
      let payload = {};
      try { payload = signalPayload.value.trim() ? JSON.parse(signalPayload.value) : {}; }
      catch (_) { showReply(false, "the payload is not JSON"); return; }
      control({ action: "signal", name: signalName.value.trim(), payload });
    } }, "Send signal"),
    reply);
  const tabs = el("div", { class: "tabs" });
  const canvas = el("div", { class: "canvas", id: "dag" });
  const panel = el("aside", { class: "panel", id: "panel", hidden: true });
  const dagView = el("div", {},
    el("div", { class: "legend" }, ["pending", "ready", "waiting", "assigned", "running",
      "succeeded", "failed", "retrying", "timed_out", "cancelled", "skipped"].map((s) =>
      el("span", { style: `--c: var(--${s})` }, s.replace("_", " ")))),
    el("div", { class: "layout" }, canvas, panel));
  const replayBox = el("div", { class: "replay", hidden: true });
  const timelineView = el("div", { class: "timeline", hidden: true });
  const historyView = el("div", { class: "history-table", hidden: true });
  const views = { dag: dagView, timeline: timelineView, history: historyView };
  for (const [name, label] of [["dag", "DAG"], ["timeline", "Timeline"], ["history", "History"],
    ["replay", "Replay"]]) {
    tabs.append(el("button", { "data-tab": name, onclick: () => showTab(name) }, label));
  }
  fill(main(), 
    el("h1", {}, "Workflow ", el("code", {}, workflowId)), header, controls, tabs, replayBox,
    dagView, timelineView, historyView);

  function showReply(ok, text) {
    reply.className = `reply ${ok ? "ok" : "refused"}`;
    reply.textContent = text;
  }

  async function control(body) {
    showReply(true, `${body.action}: waiting for the Workflow Manager…`);
    try {
      const answer = await post(`${base}/control`, body);
      if (answer.ok) {
        const status = answer.result && answer.result.status;
        showReply(true, `${body.action}: accepted${status ? `, workflow is ${status}` : ""}`);
      } else {
        showReply(false, `${body.action} refused: ${answer.error}`);
      }
    } catch (error) {
      showReply(false, `${body.action} failed: ${error.message}`);
    }
  }

  function renderHeader() {
    const w = state.workflow;
    if (!w) {
      fill(header, el("span", { class: "muted" },
        "waiting for the workflow to start (no history yet)…"));
      return;
    }
    fill(header, ...[
      el("span", { id: "wf-status" }, badge(w.status)),
      el("span", {}, `${w.done}/${w.total} tasks final`),
      el("span", {}, `started ${shortTime(w.started_at)}`),
      el("span", {}, duration(w.ended_at ? since(w.started_at, w.ended_at) : since(w.started_at))),
      w.tenant ? el("span", {}, `tenant ${w.tenant}`) : null,
      w.reason ? el("span", { class: "muted" }, w.reason) : null,
    ].filter(Boolean));
    document.body.dataset.status = w.status;
  }

  // --- the DAG: colours from task briefs; pan and zoom on the viewBox
  let svg = null, box = null, full = null;

  function paint(taskId, brief) {
    if (!svg) return;
    const node = svg.querySelector(`g.node[data-task="${CSS.escape(taskId)}"]`);
    if (!node) return;
    node.setAttribute("class", `node s-${brief.status}${brief.waiting ? " waiting" : ""}` +
      `${state.selected === taskId ? " selected" : ""}`);
    node.dataset.status = brief.status;
    const meta = node.querySelector("text.meta");
    const parts = [taskId];
    if (brief.attempt) parts.push(`#${brief.attempt}`);
    if (brief.agent) parts.push(brief.agent);
    if (meta) meta.textContent = parts.join(" · ").slice(0, 34);
  }

  function paintAll(tasks) { for (const [id, brief] of Object.entries(tasks)) paint(id, brief); }

  function setBox(next) {
    box = next;
    svg.setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
    const scale = canvas.clientWidth / box.w;
    svg.classList.toggle("far", scale < 0.45);
  }

  function fit() {
    const ratio = canvas.clientWidth / Math.max(1, canvas.clientHeight);
    let w = full.w, h = full.h;
    if (w / h < ratio) w = h * ratio; else h = w / ratio;
    // Small plans are not blown up beyond 1.5 times their size.
    const most = 1.5;
    if (canvas.clientWidth / w > most) { w = canvas.clientWidth / most; h = canvas.clientHeight / most; }
    // Large plans open at a readable scale on their first layers rather than as specks.
    const minScale = 0.6;
    if (canvas.clientWidth / w < minScale && full.nodes > 200) {
      w = canvas.clientWidth / minScale; h = canvas.clientHeight / minScale;
      setBox({ x: 0, y: 0, w, h });
      return;
    }
    setBox({ x: (full.w - w) / 2, y: (full.h - h) / 2, w, h });
  }

  function zoom(factor, cx, cy) {
    const rect = canvas.getBoundingClientRect();
    const px = box.x + (cx - rect.left) / rect.width * box.w;
    const py = box.y + (cy - rect.top) / rect.height * box.h;
    const w = Math.min(Math.max(box.w * factor, 50), full.w * 4 + 2000);
    const h = w * box.h / box.w;
    setBox({ x: px - (px - box.x) * (w / box.w), y: py - (py - box.y) * (h / box.h), w, h });
  }

  function installDag(text) {
    canvas.innerHTML = text;  // our own SVG, drawn by the server with every name escaped
    svg = $("svg", canvas);
    const vb = svg.viewBox.baseVal;
    full = { w: vb.width, h: vb.height, nodes: Number(svg.dataset.tasks || 0) };
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    canvas.append(el("div", { class: "zoom" },
      el("button", { onclick: (e) => { e.stopPropagation(); zoom(0.8, ...centre()); } }, "+"),
      el("button", { onclick: (e) => { e.stopPropagation(); zoom(1.25, ...centre()); } }, "−"),
      el("button", { onclick: (e) => { e.stopPropagation(); fit(); } }, "fit")));
    fit();
    let drag = null, moved = false;
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY);
    }, { passive: false });
    canvas.addEventListener("pointerdown", (e) => {
      if (e.target.closest("button")) return;
      drag = { x: e.clientX, y: e.clientY, box: { ...box } };
      moved = false;
    });
    window.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { moved = true; canvas.classList.add("dragging"); }
      const k = box.w / canvas.clientWidth;
      setBox({ ...drag.box, x: drag.box.x - dx * k, y: drag.box.y - dy * k });
    });
    window.addEventListener("pointerup", () => { drag = null; canvas.classList.remove("dragging"); });
    svg.addEventListener("click", (e) => {
      if (moved) return;
      const node = e.target.closest("g.node");
      if (node) openTask(node.dataset.task);
    });
  }

  function centre() {
    const r = canvas.getBoundingClientRect();
    return [r.left + r.width / 2, r.top + r.height / 2];
  }

  // --- the task panel
  async function openTask(taskId, fullOutput = false) {
    if (state.selected && svg) {
      const old = svg.querySelector(`g.node[data-task="${CSS.escape(state.selected)}"]`);
      if (old) old.classList.remove("selected");
    }
    state.selected = taskId;
    const node = svg && svg.querySelector(`g.node[data-task="${CSS.escape(taskId)}"]`);
    if (node) node.classList.add("selected");
    panel.hidden = false;
    try {
      const t = await api(`${base}/tasks/${encodeURIComponent(taskId)}${fullOutput ? "?full=1" : ""}`);
      if (state.selected === taskId) renderTask(t, fullOutput);
    } catch (error) {
      fill(panel, el("p", { class: "refused" }, error.message));
    }
  }

  function renderTask(t, fullOutput) {
    const spec = t.spec || {};
    const kv = (pairs) => el("dl", { class: "kv" },
      pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
        .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    const attempts = (t.attempts || []).map((a) => ({
      cells: [a.attempt, a.outcome || (a.started_at ? "running" : "queued"), a.agent_id || "",
        duration(a.queued_seconds), duration(a.run_seconds),
        a.error ? `${a.error_kind || ""} ${a.error}`.trim() : (a.waits || []).join("; ")],
    }));
    fill(panel, 
      el("h2", {}, `${t.task_id} — ${t.name}`),
      el("p", {}, badge(t.waiting ? "waiting" : t.status), " ", `attempt ${t.attempt}`,
        t.agent ? ` on ${t.agent}` : "",
        el("button", { style: "float:right", id: "retry-task",
          onclick: () => control({ action: "retry", task_id: t.task_id }) }, "Retry task")),
      kv([
        ["status", t.status], ["waiting", t.waiting_reason], ["failures", t.failures],
        ["queued", duration(t.queued_seconds)], ["ran", duration(t.run_seconds)],
        ["error", t.error ? `${t.error_kind || ""}: ${t.error}` : null],
        ["depends on", (t.depends_on || []).join(", ")],
        ["capabilities", (spec.capabilities || []).map((c) => c.name || JSON.stringify(c)).join(", ")],
      ]),
      el("h2", {}, "Inputs"),
      el("pre", { class: "block" }, JSON.stringify({
        command: spec.command, prompt: spec.prompt, inputs: spec.inputs, resources: spec.resources,
        timeout_seconds: spec.timeout_seconds,
      }, null, 2)),
      el("h2", {}, "Output"),
      outputBlock(t.output),
      t.output_truncated && !fullOutput
        ? el("button", { onclick: () => openTask(t.task_id, true) }, "show all output") : null,
      el("h2", {}, "Attempts"),
      attempts.length ? table(["#", "outcome", "agent", "queued", "ran", "error / waits"], attempts)
        : el("p", { class: "muted" }, "none yet"),
    );
  }

  function outputBlock(output) {
    if (!output || !Object.keys(output).length) return el("p", { class: "muted" }, "no output yet");
    const blocks = [];
    for (const key of ["json", "stdout", "stderr"]) {
      if (output[key] === undefined || output[key] === "") continue;
      const value = typeof output[key] === "string" ? output[key] : JSON.stringify(output[key], null, 2);
      blocks.push(el("div", {}, el("strong", {}, key), el("pre", { class: `out-${key}` }, value)));
    }
    const rest = Object.fromEntries(Object.entries(output)
      .filter(([k]) => !["json", "stdout", "stderr"].includes(k)));
    if (Object.keys(rest).length) {
      blocks.push(el("pre", { class: "out-rest" }, JSON.stringify(rest, null, 2)));
    }
    return el("div", { id: "output" }, blocks);
  }

  // --- tabs: timeline, history (loaded on demand, kept live), replay
  let historyTimer = null;
  async function loadHistory() {
    state.history = await api(`${base}/history`);
    renderTimeline();
    renderHistory();
  }
  function historySoon() {
    if (historyTimer || (state.tab !== "timeline" && state.tab !== "history")) return;
    historyTimer = setTimeout(async () => {
      historyTimer = null;
      try { await loadHistory(); } catch (error) { problem(error.message); }
    }, 1000);
  }

  function renderTimeline() {
    const h = state.history;
    if (!h) return;
    const start = new Date(h.started_at).getTime();
    const ends = h.attempts.map((a) => new Date(a.ended_at || h.now).getTime());
    const span = Math.max(1, Math.max(...ends, new Date(h.now).getTime()) - start);
    const pct = (iso, fallback) => ((new Date(iso || fallback).getTime() - start) / span) * 100;
    fill(timelineView, 
      el("p", { class: "muted" }, `one bar per attempt: light = queued, solid = running; ` +
        `${duration(span / 1000)} in all`),
      h.attempts.map((a) => {
        const track = el("div", { class: "tl-track" });
        if (a.queued_at) {
          const left = pct(a.queued_at), right = pct(a.started_at || a.ended_at, h.now);
          track.append(el("div", { class: "tl-bar queued",
            style: `left:${left}%;width:${Math.max(0.2, right - left)}%`,
            title: `queued ${duration(a.queued_seconds)}` }));
        }
        if (a.started_at) {
          const left = pct(a.started_at), right = pct(a.ended_at, h.now);
          track.append(el("div", { class: `tl-bar ran ${a.outcome || ""}`,
            style: `left:${left}%;width:${Math.max(0.2, right - left)}%`,
            title: `${a.outcome || "running"} ${duration(a.run_seconds)} on ${a.agent_id || "?"}` }));
        }
        return el("div", { class: "tl-row" },
          el("span", { class: "tl-label" }, `${a.task_id} #${a.attempt}`), track);
      }),
    );
  }

  function renderHistory() {
    const h = state.history;
    if (!h) return;
    fill(historyView, table(["#", "partition:offset", "time", "type", "task", "change"],
      h.steps.map((s) => ({ cells: [s.index, s.position, shortTime(s.time), s.type, s.task_id || "",
        s.change] }))));
  }

  function appendStep(step) {
    if (!state.history) return;
    if (state.history.steps.some((s) => s.position === step.position)) return;
    state.history.steps.push(step);
    if (state.tab === "history") {
      const tbody = $("tbody", historyView);
      if (tbody) tbody.append(el("tr", {}, [step.index, step.position, shortTime(step.time),
        step.type, step.task_id || "", step.change].map((c) => el("td", {}, c))));
    }
  }

  const slider = el("input", { type: "range", min: 1, max: 1, value: 1, "aria-label": "event" });
  const replayInfo = el("div");
  const replayDiff = el("div", { class: "diff" });
  replayBox.append(
    el("div", { class: "toolbar" },
      el("button", { onclick: () => step(-1) }, "◀ previous"),
      el("button", { onclick: () => step(1) }, "next ▶"),
      el("button", { onclick: () => leaveReplay() }, "back to live"),
      el("span", { class: "muted" }, "the state after event N, folded from the history alone " +
        "(mesh replay --until-event N), and how live differs from it")),
    slider, replayInfo, replayDiff);
  let replayTimer = null;
  slider.addEventListener("input", () => {
    clearTimeout(replayTimer);
    replayTimer = setTimeout(() => replayAt(Number(slider.value)), 120);
  });
  function step(delta) {
    slider.value = String(Math.min(Number(slider.max), Math.max(1, Number(slider.value) + delta)));
    replayAt(Number(slider.value));
  }
  async function enterReplay() {
    if (!state.history) await loadHistory();
    const total = state.history.steps.length;
    slider.max = String(total);
    if (!state.replaying) slider.value = String(total);
    state.replaying = true;
    document.body.classList.add("replaying");
    replayBox.hidden = false;
    await replayAt(Number(slider.value));
  }
  function leaveReplay() {
    state.replaying = false;
    document.body.classList.remove("replaying");
    replayBox.hidden = true;
    paintAll(state.tasks);
    if (state.tab === "replay") showTab("dag");
  }
  async function replayAt(n) {
    try {
      const r = await api(`${base}/replay?event=${n}`);
      if (!state.replaying) return;
      paintAll(r.tasks);
      fill(replayInfo, el("p", {}, `after event ${r.event} of ${r.total}: `,
        el("code", {}, r.type), ` at ${r.position} (${shortTime(r.time)}), workflow `,
        badge(r.workflow_status)));
      fill(replayDiff, r.difference_count === 0
        ? el("p", { class: "ok", id: "replay-equal" },
          "no difference: the live state equals this replay")
        : el("div", {}, el("p", {}, `live differs from this replay in ${r.difference_count} ` +
          `field(s):`), el("pre", {}, r.differences.map((d) =>
          `${d.path}: live ${JSON.stringify(d.snapshot)}, replay ${JSON.stringify(d.replay)}`)
          .join("\n"))));
    } catch (error) { problem(error.message); }
  }

  function showTab(name) {
    state.tab = name;
    for (const b of $$("button", tabs)) b.classList.toggle("on", b.dataset.tab === name);
    if (name === "replay") {
      for (const [k, v] of Object.entries(views)) v.hidden = k !== "dag";
      enterReplay();
      return;
    }
    if (state.replaying && name !== "dag") leaveReplay();
    for (const [k, v] of Object.entries(views)) v.hidden = k !== name;
    if (name === "timeline" || name === "history") loadHistory().catch((e) => problem(e.message));
  }

  // --- loading and following
  let panelTimer = null;
  function onHistory(message) {
    if (!state.started) { state.started = true; load(); return; }
    Object.assign(state.tasks, message.tasks);
    state.workflow = { ...state.workflow, ...message.workflow };
    renderHeader();
    if (!state.replaying) paintAll(message.tasks);
    appendStep(message);
    historySoon();
    if (state.selected && message.tasks[state.selected] && !panelTimer) {
      panelTimer = setTimeout(() => { panelTimer = null; openTask(state.selected); }, 300);
    }
  }

  let source = null;
  async function load() {
    const [view, dag] = await Promise.all([
      api(base),
      fetch(`${base}/dag.svg`).then((r) => (r.ok ? r.text() : null)),
    ]);
    state.started = view.started;
    if (view.started && dag) {
      state.workflow = view.workflow;
      state.tasks = view.tasks;
      installDag(dag);
      paintAll(state.tasks);
      performance.mark("dag-rendered");
      document.body.dataset.dagRendered = String(performance.now());
    }
    renderHeader();
    if (!source) {
      source = stream(`${base}/stream?after=${view.after}`, { history: onHistory });
    }
  }
  showTab("dag");
  load().catch((error) => problem(error.message));
  setInterval(renderHeader, 1000);
}

// ---------------------------------------------------------------- agents, resources, lag

function agentsPage() {
  const holder = el("div");
  const at = el("span", { class: "muted" });
  fill(main(), el("h1", {}, "Agents"), at, holder);
  every(2000, async () => {
    const data = await api("/api/agents");
    at.textContent = `as of ${shortTime(data.at)} (refreshed every 2 s)`;
    fill(holder, data.agents.length ? table(
      ["agent", "kind", "capabilities", "health", "status", "in flight", "running (beat)",
        "breaker", "last heartbeat", "host", "pid"],
      data.agents.map((a) => ({ cells: [a.agent_id, a.kind,
        a.capabilities.map((c) => c.name).join(", "), badge(a.health), a.status, a.outstanding,
        a.running_tasks ?? "", badge(a.breaker), shortTime(a.last_seen), a.host || "",
        a.pid ?? ""] }))) : el("p", { class: "muted" }, "no agent registered"));
  });
}

function amounts(r) {
  if (!r) return "";
  return Object.entries(r).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(", ") || "—";
}

function resourcesPage() {
  const holder = el("div");
  fill(main(), el("h1", {}, "Resources"), holder);
  every(3000, async () => {
    const u = await api("/api/resources");
    fill(holder, 
      el("p", { class: "muted" }, `${u.allocations} allocations held, ${u.waiting} waiting; ` +
        `${amounts(u.used)} of ${amounts(u.capacity)} in use (as of ${shortTime(u.at)})`),
      el("h2", {}, "Pools"),
      table(["pool", "policy", "placement", "nodes", "used", "free", "allocations", "cost/h"],
        u.pools.map((p) => ({ cells: [p.pool_id, p.policy, p.placement, p.nodes, amounts(p.used),
          amounts(p.free), p.allocations, p.cost_per_hour] }))),
      el("h2", {}, "Tenants and quotas"),
      table(["tenant", "used", "allocations", "waiting", "cost/h", "quota"],
        u.tenants.map((t) => ({ cells: [t.tenant, amounts(t.used), t.allocations, t.waiting,
          t.cost_per_hour, t.quota ? JSON.stringify(t.quota) : "default"] }))),
      el("h2", {}, "Queued requests"),
      u.queued.length ? table(["allocation", "workflow", "task", "tenant", "needs", "since"],
        u.queued.map((q) => ({ cells: [q.allocation_id, q.workflow_id || "", q.task_id || "",
          q.tenant || "", amounts(q.resources), shortTime(q.since)] })))
        : el("p", { class: "muted" }, "nothing waits"),
      el("h2", {}, "Cost per workflow"),
      table(["workflow", "cost", "cost/h now", "allocations"],
        u.workflows.map((w) => ({ cells: [w.workflow_id, w.cost.toFixed(4), w.rate_per_hour,
          w.allocations] }))),
    );
  });
}

function groupsPage() {
  const holder = el("div");
  fill(main(), el("h1", {}, "Consumer groups"), holder);
  every(3000, async () => {
    const data = await api("/api/groups");
    fill(holder, data.groups.length ? table(
      ["component", "group", "state", "members", "lag", "partitions"],
      data.groups.map((g) => ({ cells: [g.component, g.group, g.state, g.members.length, g.lag,
        g.partitions.map((p) => `${p.topic}[${p.partition}] ${p.committed}/${p.end}`)
          .join("; ")] }))) : el("p", { class: "muted" }, "no consumer group under this prefix"));
  });
}

// ---------------------------------------------------------------- dead letters

function deadLettersPage() {
  const filter = el("input", { type: "text", size: 50, "aria-label": "filter",
    placeholder: 'filter, e.g. original_channel == "tasks.results"' });
  const result = el("span", { class: "reply" });
  const holder = el("div");
  const detail = el("div");
  fill(main(), el("h1", {}, "Dead letters"),
    el("div", { class: "toolbar" }, filter,
      el("button", { onclick: () => load() }, "Apply"),
      el("button", { id: "redrive-dry", onclick: () => redriveLetters(true) }, "Redrive (dry run)"),
      el("button", { id: "redrive", class: "danger", onclick: () => redriveLetters(false) },
        "Redrive"),
      result),
    holder, detail);

  async function redriveLetters(dryRun) {
    try {
      const r = await post("/api/dead-letters/redrive", { filter: filter.value || null,
        dry_run: dryRun });
      result.className = "reply ok";
      result.textContent = `${dryRun ? "dry run: would redrive" : "redrove"} ${r.redriven} of ` +
        `${r.matched} matching (${r.already_redriven} already redriven` +
        `${r.unavailable.length ? `, ${r.unavailable.length} unavailable` : ""})`;
      if (!dryRun) load();
    } catch (error) {
      result.className = "reply refused";
      result.textContent = error.message;
    }
  }

  async function show(position) {
    try {
      const d = await api(`/api/dead-letters/${encodeURIComponent(position)}`);
      fill(detail, el("h2", {}, `Letter ${position}`),
        el("pre", { class: "block" }, JSON.stringify(d, null, 2)));
    } catch (error) { problem(error.message); }
  }

  async function load() {
    try {
      const query = filter.value ? `?filter=${encodeURIComponent(filter.value)}` : "";
      const data = await api(`/api/dead-letters${query}`);
      problem("");
      fill(holder, 
        el("h2", {}, `By origin and reason (${data.count} letter(s) on ${data.topic})`),
        table(["origin", "component", "reason", "count"],
          data.groups.map((g) => ({ cells: [g.origin, g.component, g.reason, g.count] }))),
        el("h2", {}, "Letters"),
        table(["position", "time", "origin", "type", "error", "reason", "redriven"],
          data.letters.map((l) => ({ id: `${l.partition}:${l.offset}`, cells: [
            `${l.partition}:${l.offset}`, shortTime(l.timestamp),
            l.original_topic ? `${l.original_topic}[${l.original_partition}]@${l.original_offset}`
              : "", l.original_type || "", l.error_class || "", l.reason || "",
            l.redriven ? "yes" : ""] })),
          (row) => show(row.id)));
    } catch (error) { problem(error.message); }
  }
  load();
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  for (const link of $$("header nav a")) {
    link.classList.toggle("active", link.dataset.nav === page ||
      (page === "workflow" && link.dataset.nav === "workflows"));
  }
  const pages = {
    workflows: workflowsPage,
    workflow: () => workflowPage(document.body.dataset.workflow),
    agents: agentsPage,
    resources: resourcesPage,
    "dead-letters": deadLettersPage,
    groups: groupsPage,
  };
  (pages[page] || workflowsPage)();
});
