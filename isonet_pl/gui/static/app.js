// isonet-pl GUI: plain JavaScript, no build step. Talks to the JSON API of isonet_pl/gui/server.py.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
// The session's CSRF token, written into the page by the server; required on every POST.
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};

// ------------------------------------------------------------------ API
function apiUrl(route, params = {}) {
  const q = new URLSearchParams(params);
  if (TOKEN) q.set("token", TOKEN);
  return `/api/${route}?${q}`;
}
async function api(route, params = {}, body = undefined) {
  const opts = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                          headers: {"Content-Type": "application/json", "X-IsoNet-CSRF": CSRF}};
  const res = await fetch(apiUrl(route, params), opts);
  const data = await res.json().catch(() => ({error: `Error: ${res.status} ${res.statusText}`}));
  if (!res.ok) throw new Error(data.error || `Error: ${res.status}`);
  return data;
}
function banner(message, kind = "error") {
  const b = $("#banner");
  b.textContent = message;
  b.className = `banner ${kind === "info" ? "info" : ""}`;
  clearTimeout(banner.timer);
  if (kind === "info") banner.timer = setTimeout(() => b.classList.add("hidden"), 4000);
}

const state = {info: {}, schema: {}, table: null, dirty: false, selected: new Set(), jobs: [],
               jobId: null, logOffset: 0, logText: "", viewAxis: "z", finishedSeen: new Set()};

// ------------------------------------------------------------------ tabs
function showPage(name) {
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("hidden", p.id !== `page-${name}`));
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.page === name));
  state.page = name;
  if (name === "viewer") refreshViewer();
  if (name === "refine") refreshLosses();
  refreshLists();
}

// ------------------------------------------------------------------ forms from the schema
const STAR_DEFAULTS = {subtomo_star: "subtomo.star", star_file: "tomograms.star"};

function fieldInput(opt) {
  const id = `${opt.form}-${opt.name}`;
  let input;
  if (opt.choices || opt.kind === "bool") {
    const choices = opt.choices || ["true", "false"];
    input = el("select", {id, name: opt.name});
    if (opt.nullable) input.append(el("option", {value: "", text: "unset"}));
    for (const c of choices) input.append(el("option", {value: c, text: c}));
    input.value = opt.default ?? "";
  } else {
    input = el("input", {id, name: opt.name, value: opt.default ?? "", placeholder: opt.default === null ? "unset" : "",
                         list: opt.list});
  }
  return el("div", {class: `field ${opt.argument ? "argument" : ""}`, title: opt.description || ""},
            el("label", {for: id}, humanLabel(opt.name), el("code", {class: "optname",
              text: opt.argument ? opt.name.toUpperCase() : `--${opt.name}`})), input,
            opt.description ? el("div", {class: "help", text: opt.description}) : null);
}

/** "filter_base" -> "Filter base" (the option's own name is shown beside it in small print). */
function humanLabel(name) {
  const text = name.replace(/_/g, " ").replace(/\bgpuID\b/, "GPU ids");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The command line a form runs, as the CLI would take it (only values that differ from the defaults). */
function commandText(form, command) {
  const v = formValues(form, command);
  const defaults = Object.fromEntries(state.schema[command].options.map((o) => [o.name, o.default]));
  const quote = (t) => (/^[\w.,:\/=+-]+$/.test(t) ? t : `'${t.replace(/'/g, "'\\''")}'`);
  const opts = Object.entries(v.options).filter(([k, x]) => x !== defaults[k]).map(([k, x]) => `--${k} ${quote(x)}`);
  return ["isonet-pl", command, ...Object.values(v.arguments).map(quote), ...opts].join(" ");
}

/** Where a command's last submitted form values are kept (the browser's storage, per project). */
function storageKey(command) {
  return `isonet-pl:${state.info.project}:${command}`;
}

/** The values of a command's form last submitted in this project, or {}. */
function remembered(command) {
  try {
    return JSON.parse(localStorage.getItem(storageKey(command))) || {};
  } catch (e) {
    return {};
  }
}

function remember(form, command) {
  const values = {};
  for (const e of form.elements) if (e.name) values[e.name] = e.value;
  try { localStorage.setItem(storageKey(command), JSON.stringify(values)); } catch (e) { /* storage full or off */ }
}

/** A card with the form of one command, with the values last submitted for it in this project (else
 * `prefill`, else the CLI's defaults). Returns the form element. */
function commandCard(container, command, title, {open = true, prefill = {}, after = null} = {}) {
  const spec = state.schema[command];
  const saved = remembered(command);
  const grid = el("div", {class: "form-grid"});
  for (const a of spec.arguments) {
    const list = {star: "list-star", ckpt: "list-ckpt", folder: "list-folder"}[a.kind];
    grid.append(fieldInput({form: command, name: a.name, kind: "str", default: saved[a.name] ?? prefill[a.name] ??
      a.default ?? STAR_DEFAULTS[a.name] ?? "", description: `${a.name.toUpperCase()} (required)`, list,
      argument: true}));
  }
  // options in the groups of `isonet-pl COMMAND --help`; the first group open, the others folded
  const groups = new Map();
  for (const o of spec.options) {
    const field = fieldInput({...o, form: command, default: prefill[o.name] ?? o.default});
    if (o.name in saved) field.querySelector("input, select").value = saved[o.name];
    const group = o.group || "Options";
    if (!groups.has(group)) groups.set(group, el("div", {class: "form-grid"}));
    groups.get(group).append(field);
  }
  const sections = [...groups.entries()].map(([name, fields], i) => (groups.size === 1 ? fields :
    el("details", {class: "option-group", open: i === 0, "data-group": name}, el("summary", {text: name}), fields)));
  const error = el("div", {class: "error hidden", "data-role": "form-error"});
  const preview = el("code", {class: "command-preview", "data-role": "command"});
  const run = el("button", {class: "primary", "data-run": command, text: `Run ${command}`});
  const reset = el("button", {text: "Defaults", title: "Reset every field to the CLI's default (and forget the "
                                                    + "values last run)"});
  const form = el("form", {"data-command": command}, grid, ...sections,
                  el("div", {class: "form-actions"}, run, reset, el("span", {class: "muted", text: spec.help})),
                  el("div", {class: "muted"}, "Command: ", preview), error);
  const showCommand = () => { preview.textContent = commandText(form, command); };
  form.addEventListener("input", showCommand);
  form.addEventListener("change", showCommand);
  setTimeout(showCommand, 0);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.classList.add("hidden");
    try {
      if (after) await after(form);
      const job = await submitForm(form, command);
      remember(form, command);
      selectJob(job.id);
    } catch (e) {
      error.textContent = e.message;
      error.classList.remove("hidden");
    }
  });
  reset.addEventListener("click", (ev) => {
    ev.preventDefault();
    localStorage.removeItem(storageKey(command));
    const fresh = commandCard(el("div"), command, title, {open, prefill, after});
    card.replaceWith(fresh.closest("details"));
  });
  const card = el("details", {class: "card", open}, el("summary", {}, title, el("span", {class: "muted",
    text: `isonet-pl ${command}`})), form);
  container.append(card);
  return form;
}

function formValues(form, command) {
  const spec = state.schema[command];
  const args = {}, options = {};
  for (const a of spec.arguments) args[a.name] = form.elements[a.name].value.trim();
  for (const o of spec.options) {
    const v = form.elements[o.name].value.trim();
    if (v !== "") options[o.name] = v;
  }
  return {command, arguments: args, options};
}

async function submitForm(form, command) {
  const job = await api("jobs", {}, formValues(form, command));
  await refreshJobs();
  return job;
}

// ------------------------------------------------------------------ Preparation: the table
const COLUMN_LABELS = {
  rlnIndex: "#", rlnMicrographName: "Tomogram", rlnPixelSize: "Pixel size (Å)", rlnDefocus: "Defocus (Å)",
  rlnNumberSubtomo: "Subtomograms", rlnTiltMin: "Tilt min (°)", rlnTiltMax: "Tilt max (°)",
  rlnSnrFalloff: "SNR falloff", rlnDeconvStrength: "Deconv strength", rlnDeconvTomoName: "Deconvolved",
  rlnMaskDensityPercentage: "Mask density %", rlnMaskStdPercentage: "Mask std %", rlnMaskBoundary: "Mask boundary",
  rlnMaskName: "Mask", rlnCorrectedTomoName: "Corrected",
};
const DERIVED = ["rlnDeconvTomoName", "rlnMaskName", "rlnCorrectedTomoName", "rlnMaskBoundary"];
const PATHLIKE = /Name$|Boundary$|Half[12]$/;

function setDirty(dirty) {
  state.dirty = dirty;
  const t = state.table;
  $("#star-status").textContent = !t ? "" : `${t.rows.length} row(s)${t.exists ? "" : ", new file"}` +
    (dirty ? " — unsaved changes" : "");
  $("#star-save").disabled = !dirty;
}

async function loadTable() {
  let path = $("#star-path").value.trim();
  try {
    state.table = await api("star", {path});
    // the rows as loaded: a save merges what a job recorded since (rows keep their position here as __base)
    state.table.base = state.table.rows.map((r) => ({...r}));
    state.table.rows.forEach((r, i) => { r.__base = i; });
    if (state.table.path !== path && state.table.path !== path.replace(/^\.\//, "")) {
      banner(`${path} is RELION-5's table; its isonet-pl table is ${state.table.path}`, "info");
      path = state.table.path;
      $("#star-path").value = path;
    }
    state.selected.clear();
    renderTable();
    setDirty(false);
    $("#view-star").value = path;
  } catch (e) {
    banner(e.message);
  }
  syncStarArguments();
}

async function saveTable() {
  const t = state.table;
  try {
    const res = await api("star", {}, {path: $("#star-path").value.trim(), columns: t.columns, rows: t.rows,
                                       version: t.version ?? null, base: t.base ?? null});
    const kept = res.merged && res.merged.length ? ` (kept what was recorded since you loaded it: ${res.merged.join("; ")})` : "";
    banner(`Saved ${$("#star-path").value.trim()}${kept}`, "info");
    await loadTable();
    return true;
  } catch (e) {
    banner(e.message);
    return false;
  }
}

function renderTable() {
  const t = state.table, table = $("#star-table");
  table.replaceChildren();
  const head = el("tr");
  for (const c of t.columns) head.append(el("th", {title: `_${c}`, text: COLUMN_LABELS[c] || c}));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  if (!t.rows.length) {
    body.append(el("tr", {class: "empty"}, el("td", {colspan: t.columns.length,
      text: "No tomograms yet: run prepare_star below, or Insert row and type a tomogram's path."})));
  }
  t.rows.forEach((row, i) => {
    const tr = el("tr", {class: state.selected.has(i) ? "selected" : ""});
    for (const c of t.columns) {
      if (c === "rlnIndex") {
        tr.append(el("td", {class: "idx", text: String(i + 1), title: "select", onclick: () => {
          state.selected.has(i) ? state.selected.delete(i) : state.selected.add(i);
          renderTable();
        }}));
        continue;
      }
      const value = row[c] === null || row[c] === undefined ? "" : String(row[c]);
      const input = el("input", {value, "data-col": c, "data-row": i, class: PATHLIKE.test(c) ? "path" : "",
                                 list: c === "rlnMicrographName" ? "list-mrc" : null});
      input.addEventListener("input", () => { row[c] = input.value; setDirty(true); });
      tr.append(el("td", {}, input));
    }
    body.append(tr);
  });
  table.append(body);
}

function insertRow() {
  const t = state.table;
  const row = {...t.defaults};
  for (const c of t.columns) if (!(c in row)) row[c] = c === "rlnIndex" ? t.rows.length + 1 : "None";
  t.rows.push(row);
  setDirty(true);
  renderTable();
}

function duplicateRows() {
  const t = state.table;
  if (!t.rows.length) return insertRow();
  const picks = state.selected.size ? [...state.selected].sort((a, b) => a - b) : [t.rows.length - 1];
  for (const i of picks) {
    const copy = {...t.rows[i]};
    delete copy.__base;  // a new row, not the loaded one
    for (const c of DERIVED) if (c in copy) copy[c] = "None";
    t.rows.push(copy);
  }
  setDirty(true);
  renderTable();
}

function deleteRows() {
  const t = state.table;
  if (!state.selected.size) return banner("Select rows first: click their numbers.");
  t.rows = t.rows.filter((_, i) => !state.selected.has(i));
  state.selected.clear();
  setDirty(true);
  renderTable();
}

/** The Preparation forms' STAR_FILE follows the table's STAR file. */
function syncStarArguments() {
  const path = $("#star-path").value.trim();
  document.querySelectorAll("#prep-forms form").forEach((f) => { if (f.elements.star_file) f.elements.star_file.value = path; });
}

async function saveIfDirty() {
  if (state.dirty && !(await saveTable())) throw new Error("Error: the table could not be saved (see above)");
}

// ------------------------------------------------------------------ jobs
const STAR_COMMANDS = new Set(["prepare_star", "deconv", "make_mask", "predict", "simulate"]);

async function refreshJobs() {
  try {
    state.jobs = await api("jobs");
  } catch (e) {
    return;
  }
  const list = $("#job-list");
  list.replaceChildren();
  for (const j of state.jobs) {
    const li = el("li", {class: j.id === state.jobId ? "selected" : "", "data-job": j.id, "data-state": j.state,
                         onclick: () => selectJob(j.id)},
      el("div", {class: "line1"}, el("span", {class: "cmd", text: `#${j.id} ${j.argv.join(" ")}`}),
         el("span", {class: `state ${j.state}`, text: j.state})),
      j.state === "running" && j.progress !== null ? el("progress", {value: j.progress, max: 1}) : null,
      j.error ? el("div", {class: "err", text: j.error}) : el("div", {class: "last", text: j.last_line}));
    list.append(li);
    const finished = ["done", "failed", "cancelled"].includes(j.state);
    if (finished && !state.finishedSeen.has(j.id)) {
      state.finishedSeen.add(j.id);
      if (state.started) onJobFinished(j);
    }
  }
  state.started = true;
  if (state.jobId) pollLog();
  if (state.page === "refine" && state.jobs.some((j) => j.argv[0] === "refine" && ["running", "stopping"].includes(j.state))) refreshLosses();
}

function onJobFinished(job) {
  const command = job.argv[0];
  if (job.state === "failed") banner(`Job #${job.id} (${command}) failed: ${job.error}`);
  if (STAR_COMMANDS.has(command) && job.state === "done") {
    if (command === "prepare_star") {
      const out = job.argv[job.argv.indexOf("--output_star") + 1];
      $("#star-path").value = job.argv.includes("--output_star") ? out : "tomograms.star";
    }
    if (!state.dirty) loadTable();
    else banner("A job changed the STAR file; Load it again to see its results (your edits are not saved).");
  }
  refreshLists();
  if (state.page === "viewer") refreshViewer();
  if (command === "refine") refreshLosses();
  if (command === "refine" && job.state === "done") followNewestModel(true);
  if (command === "refine" && job.state === "cancelled") resumeLater(job);
}

/** A stopped refine resumes: its form gets --continue_from the run's folder (a rerun would be refused). */
function resumeLater(job) {
  const form = document.querySelector("#refine-forms form");
  const dir = (job.argv.find((a) => a.startsWith("--result_dir=")) || "--result_dir=results").split("=")[1];
  if (form && form.elements.continue_from) {
    form.elements.continue_from.value = dir;
    form.elements.continue_from.dispatchEvent(new Event("input", {bubbles: true}));
  }
  banner(`Refine #${job.id} stopped; Run refine again resumes it (continue_from is set to ${dir})`, "info");
}

function selectJob(id) {
  if (state.jobId !== id) {
    state.jobId = id;
    state.logOffset = 0;
    state.logText = "";
  }
  $("#job-detail").classList.remove("hidden");
  document.querySelectorAll("#job-list li").forEach((li) => li.classList.toggle("selected", li.dataset.job === id));
  pollLog();
}

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/** Carriage returns (progress bars) overwrite the current line, as in a terminal. */
function renderLog(text) {
  const lines = text.replace(ANSI, "").split("\n").map((line) => {
    const parts = line.split("\r").filter((p) => p.trim() !== "");
    return parts.length ? parts[parts.length - 1] : "";
  });
  return lines.slice(-3000).join("\n");
}

async function pollLog() {
  const id = state.jobId;
  if (!id || pollLog.busy) return;
  pollLog.busy = true;
  try {
    const job = await api(`jobs/${id}`, {offset: state.logOffset});
    if (id !== state.jobId) return;
    state.logOffset = job.offset;
    state.logText += job.log;
    const pre = $("#job-log");
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.textContent = renderLog(state.logText);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    $("#job-title").textContent = `#${job.id} ${job.argv[0]} — ${job.state}`;
    $("#job-cancel").classList.toggle("hidden", !["queued", "running"].includes(job.state));  // not while stopping
    const err = $("#job-error");
    err.textContent = job.error || "";
    err.classList.toggle("hidden", !job.error);
  } catch (e) {
    banner(e.message);
  } finally {
    pollLog.busy = false;
  }
}

// ------------------------------------------------------------------ file lists (datalists)
async function refreshLists() {
  for (const kind of ["star", "ckpt", "folder", "mrc"]) {
    try {
      const files = await api("files", {kind});
      $(`#list-${kind}`).replaceChildren(...files.map((f) => el("option", {value: f})));
    } catch (e) { /* the lists are a convenience */ }
  }
}

/** The Prediction form follows the newest finished refine: its MODEL field takes the newest model_iterNN.ckpt
 * (by the time it was written) when the page opens and whenever a refine finishes, and says which it is. */
async function followNewestModel(announce = false) {
  const form = document.querySelector("#predict-forms form");
  if (!form) return;
  let models = [];
  try { models = await api("models"); } catch (e) { return; }
  const field = form.elements.model;
  let hint = form.querySelector("[data-role=model-hint]");
  if (!hint) {
    hint = el("div", {class: "help", "data-role": "model-hint"});
    field.closest("label, div").after(hint);
  }
  if (!models.length) { hint.textContent = "No refine has finished in this project yet."; return; }
  const newest = models[0];
  const when = new Date(newest.written * 1000).toLocaleString();
  if (field.value.trim() !== newest.path) {
    field.value = newest.path;
    field.dispatchEvent(new Event("input", {bubbles: true}));
    if (announce) banner(`Prediction now uses ${newest.path}, the model of the refine that just finished`, "info");
  }
  hint.textContent = `Model: ${newest.path} — the newest finished refine (${when}).`;
}

// ------------------------------------------------------------------ Refinement: fields of the method in use
/** Show the refine options of the method that will run: the even/odd group when the subtomograms have halves
 * (or --method n2n), the single-tomogram group otherwise; both while the STAR file cannot be read. */
function methodGroups(form) {
  const star = form.elements.subtomo_star, method = form.elements.method;
  let asked = 0;
  const update = async () => {
    const ticket = ++asked;
    let halves = null;
    const path = star ? star.value.trim() : "";
    if (path) {
      try {
        halves = (await api("columns", {path})).columns.includes("rlnImageNameHalf1");
      } catch (e) {
        halves = null;
      }
    }
    if (ticket !== asked) return;  // a newer value is being checked
    const chosen = method ? method.value : "";
    const n2n = chosen === "n2n" || (chosen !== "isonet" && halves === true);
    const known = halves !== null || chosen === "n2n" || chosen === "isonet";
    const show = {"Even/odd halves (n2n)": !known || n2n, "Single tomogram (isonet)": !known || !n2n};
    for (const d of form.querySelectorAll("details.option-group")) {
      if (d.dataset.group in show) d.classList.toggle("hidden", !show[d.dataset.group]);
    }
    form.dataset.method = known ? (n2n ? "n2n" : "isonet") : "";
  };
  for (const e of [star, method]) if (e) e.addEventListener("change", update);
  update();
}

// ------------------------------------------------------------------ Refinement: loss curve
async function refreshLosses() {
  const form = document.querySelector('#refine-forms form');
  const dir = form ? form.elements.result_dir.value.trim() || "results" : "results";
  let data;
  try {
    data = await api("losses", {result_dir: dir});
  } catch (e) {
    return;
  }
  drawLosses(data);
  const n = data.train.length + data.train_step.length;
  $("#loss-status").textContent = n ? `${dir}: ${data.iterations.length} iteration(s) finished, ` +
    `${data.train.length} epoch(s) logged` : `No losses in ${dir} yet.`;
}

function drawLosses(data) {
  const canvas = $("#loss-canvas"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, m = {l: 56, r: 12, t: 14, b: 34};
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  // per-step losses on the epoch axis: step s of n steps lies in epoch s/n
  const stepsPerEpoch = data.train_step.length && data.train.length ?
    Math.max(1, Math.round(data.train_step[data.train_step.length - 1][0] / data.train.length)) : null;
  const series = [
    {name: "train (step)", color: "#9db8e8", pts: stepsPerEpoch ? data.train_step.map(([s, v]) => [(s + 1) / stepsPerEpoch, v]) : data.train_step, dots: false},
    {name: "train (epoch)", color: "#2a62c9", pts: data.train, dots: true},
    {name: "validation", color: "#e07b00", pts: data.val, dots: true},
  ];
  const all = series.flatMap((s) => s.pts);
  ctx.strokeStyle = "#888";
  ctx.strokeRect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
  if (!all.length) return;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(0, ...xs), x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const px = (x) => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
  const py = (y) => H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b);
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  for (let k = 0; k <= 4; k++) {
    const y = y0 + (y1 - y0) * k / 4;
    ctx.fillText(y.toPrecision(3), 4, py(y) + 4);
  }
  ctx.fillText(String(x0), px(x0) - 3, H - m.b + 14);
  ctx.fillText(String(x1), px(x1) - 8, H - m.b + 14);
  ctx.fillText("epoch", (W - 30) / 2, H - 6);
  // iteration boundaries (dashed) and the starts of noise stages (red: the loss rises there by design)
  const per = data.epochs_per_iteration;
  if (per) {
    ctx.save();
    for (let it = 1; it * per < x1; it++) {
      const x = px(it * per + 0.5);
      const stage = (data.noise || []).find(([i]) => i === it + 1);
      const before = (data.noise || []).find(([i]) => i === it);
      const rises = stage && before && stage[1] > before[1];
      ctx.strokeStyle = rises ? "#d62728" : "#ccc";
      ctx.setLineDash(rises ? [] : [3, 3]);
      ctx.beginPath();
      ctx.moveTo(x, m.t);
      ctx.lineTo(x, H - m.b);
      ctx.stroke();
      if (rises) {
        ctx.fillStyle = "#d62728";
        ctx.fillText(`noise ${stage[1]}`, x + 3, m.t + 24);
      }
    }
    ctx.restore();
  }
  let lx = m.l + 8;
  for (const s of series) {
    if (!s.pts.length) continue;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = s.dots ? 2 : 1;
    ctx.beginPath();
    s.pts.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
    if (s.dots) s.pts.forEach(([x, y]) => ctx.fillRect(px(x) - 2, py(y) - 2, 4, 4));
    ctx.fillRect(lx, m.t + 6, 12, 3);
    ctx.fillStyle = "#333";
    ctx.fillText(s.name, lx + 16, m.t + 11);
    lx += ctx.measureText(s.name).width + 34;
  }
}

// ------------------------------------------------------------------ Viewer
async function refreshViewer() {
  const star = $("#view-star").value.trim();
  const rowSel = $("#view-row"), previous = rowSel.value;
  $("#view-message").textContent = "";
  try {
    state.volumes = await api("volumes", {star});
  } catch (e) {
    state.volumes = [];
    $("#view-message").textContent = e.message;
  }
  rowSel.replaceChildren(...state.volumes.map((r) => el("option", {value: String(r.index), text: `${r.index}: ${r.name}`})));
  if (state.volumes.some((r) => String(r.index) === previous)) rowSel.value = previous;
  fillVolumes();
}

function currentRow() {
  return (state.volumes || []).find((r) => String(r.index) === $("#view-row").value);
}

function fillVolumes() {
  const row = currentRow(), sel = $("#view-volume"), previous = sel.value;
  const labels = row ? Object.keys(row.volumes) : [];
  sel.replaceChildren(...labels.map((k) => el("option", {value: k, text: k})));
  if (labels.includes(previous)) sel.value = previous;
  $("#view-overlay").disabled = !(row && row.volumes.mask);
  loadVolume();
}

async function loadVolume() {
  const row = currentRow(), label = $("#view-volume").value;
  const img = $("#view-image");
  if (!row || !label) {
    img.removeAttribute("src");
    if (!$("#view-message").textContent) $("#view-message").textContent = "No volume to show yet.";
    return;
  }
  const before = state.volume ? state.volume.shape.join() : null;
  try {
    state.volume = await api("volume", {path: row.volumes[label], star: $("#view-star").value.trim()});
    [$("#view-low").value, $("#view-high").value] = state.volume.window.map((v) => Number(v.toPrecision(4)));
  } catch (e) {
    $("#view-message").textContent = e.message;
    return;
  }
  setAxis(state.viewAxis, before === state.volume.shape.join());  // same shape: stay on the slice
}

function setAxis(axis, keepIndex = false) {
  state.viewAxis = axis;
  document.querySelectorAll("#view-axes button").forEach((b) => b.classList.toggle("active", b.dataset.axis === axis));
  if (!state.volume) return;
  const n = state.volume.shape["zyx".indexOf(axis)];
  const slider = $("#view-slider");
  slider.max = String(n - 1);
  if (!keepIndex || Number(slider.value) > n - 1) slider.value = String(Math.floor(n / 2));
  showSlice();
}

function showSlice() {
  const row = currentRow(), label = $("#view-volume").value;
  if (!row || !state.volume) return;
  const index = Number($("#view-slider").value);
  const shape = state.volume.shape;
  $("#view-index").textContent = `${"zyx"[("zyx".indexOf(state.viewAxis))].toUpperCase()} = ${index} / ` +
    `${shape["zyx".indexOf(state.viewAxis)] - 1}   (volume ${shape.join(" × ")})`;
  const params = {path: row.volumes[label], star: $("#view-star").value.trim(), axis: state.viewAxis, index};
  const overlay = $("#view-overlay").checked && row.volumes.mask && label !== "mask";
  if (overlay) params.overlay = row.volumes.mask;
  $("#view-legend").classList.toggle("hidden", !overlay);
  const low = $("#view-low").value.trim(), high = $("#view-high").value.trim();
  if (low !== "" && high !== "") Object.assign(params, {low, high});
  const slab = Number($("#view-slab").value) || 1;
  if (slab > 1) params.slab = slab;
  const img = $("#view-image");
  img.onerror = async () => {
    const res = await fetch(img.src);
    const data = await res.json().catch(() => ({}));
    $("#view-message").textContent = data.error || "the slice could not be read";
  };
  img.onload = () => { $("#view-message").textContent = ""; drawScaleBar(); };
  img.src = apiUrl("slice", params);
}

/** The in-plane axes (row, column) of the shown slice, as indices of (z, y, x). */
function planeAxes() {
  return {z: [1, 2], y: [0, 2], x: [0, 1]}[state.viewAxis];
}

/** A scale bar of a round length in Å (or nm) under the slice, sized to the image as displayed. */
function drawScaleBar() {
  const img = $("#view-image"), bar = $("#view-scalebar");
  if (!state.volume || !img.naturalWidth) return bar.classList.add("hidden");
  const [, col] = planeAxes();
  const angstromPerPixel = state.volume.voxel_size[col] * state.volume.shape[col] / img.naturalWidth;
  const shown = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
  const target = angstromPerPixel * img.naturalWidth / 5;  // about a fifth of the width
  const power = 10 ** Math.floor(Math.log10(target));
  const length = [1, 2, 5, 10].map((m) => m * power).filter((v) => v <= target).pop() || power;
  bar.querySelector(".bar").style.width = `${(length / angstromPerPixel) * shown}px`;
  bar.querySelector("span").textContent = length >= 100 ? `${length / 10} nm` : `${length} Å`;
  bar.classList.remove("hidden");
}

/** Under the slice: where the pointer is, in voxels and in Å. */
function showCoords(ev) {
  const img = $("#view-image");
  if (!state.volume || !img.naturalWidth) return;
  const rect = img.getBoundingClientRect();
  const scale = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
  const left = rect.left + (rect.width - img.naturalWidth * scale) / 2;
  const top = rect.top + (rect.height - img.naturalHeight * scale) / 2;
  const u = (ev.clientX - left) / (img.naturalWidth * scale), v = (ev.clientY - top) / (img.naturalHeight * scale);
  if (u < 0 || u > 1 || v < 0 || v > 1) return;
  const [rowAxis, colAxis] = planeAxes();
  const voxel = [0, 0, 0];
  voxel["zyx".indexOf(state.viewAxis)] = Number($("#view-slider").value);
  voxel[rowAxis] = Math.floor(v * state.volume.shape[rowAxis]);
  voxel[colAxis] = Math.floor(u * state.volume.shape[colAxis]);
  const [z, y, x] = voxel, vs = state.volume.voxel_size;
  $("#view-coords").textContent = `x ${x}, y ${y}, z ${z} voxels = ${(x * vs[2]).toFixed(0)}, ` +
    `${(y * vs[1]).toFixed(0)}, ${(z * vs[0]).toFixed(0)} Å`;
}

/** The selected rows' volumes in 3dmod (paths as the server resolves them, from /api/volumes). */
async function openRows() {
  if (!state.selected.size) return banner("Select rows first: click their numbers.");
  try {
    const rows = await api("volumes", {star: $("#star-path").value.trim()});
    const wanted = new Set([...state.selected].map((i) => i + 1));
    const paths = rows.filter((r) => wanted.has(r.index)).flatMap((r) => Object.values(r.volumes));
    if (paths.length) open3dmod(paths, $("#star-path").value.trim());
  } catch (e) {
    banner(e.message);
  }
}

async function cancelJob() {
  try { await api(`jobs/${state.jobId}/cancel`, {}, {}); } catch (e) { banner(e.message); }
  refreshJobs();
}

async function open3dmod(paths, star = undefined) {
  try {
    const res = await api("3dmod", {}, star ? {paths, star} : {paths});
    if (!res.started) banner("3dmod is not installed (IMOD); the Viewer shows the volumes without it.");
  } catch (e) {
    banner(e.message);
  }
}

// ------------------------------------------------------------------ start
async function main() {
  try {
    [state.info, state.schema] = await Promise.all([api("info"), api("schema")]);
  } catch (e) {
    banner(`${e.message} — open the URL printed by "isonet-pl gui" (it holds the token).`);
    return;
  }
  $("#project").textContent = state.info.project;
  document.querySelectorAll(".needs-3dmod").forEach((b) => {
    b.disabled = !state.info.has_3dmod;
    if (!state.info.has_3dmod) b.title = "IMOD's 3dmod is not installed; use the Viewer";
  });

  const prep = $("#prep-forms");
  commandCard(prep, "prepare_star", "Import tomograms from a folder", {prefill: {folder_name: ""}});
  commandCard(prep, "deconv", "Deconvolve CTF", {after: saveIfDirty});
  commandCard(prep, "make_mask", "Generate mask", {after: saveIfDirty});
  commandCard(prep, "extract", "Extract subtomograms", {after: saveIfDirty});
  methodGroups(commandCard($("#refine-forms"), "refine", "Refine"));
  commandCard($("#predict-forms"), "predict", "Predict", {prefill: {model: ""}});
  document.querySelector('#refine-forms form').elements.result_dir.addEventListener("change", refreshLosses);

  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showPage(b.dataset.page)));
  const handlers = [
    ["#star-load", "click", loadTable], ["#star-save", "click", saveTable], ["#star-path", "change", loadTable],
    ["#row-insert", "click", insertRow], ["#row-duplicate", "click", duplicateRows], ["#row-delete", "click", deleteRows],
    ["#row-3dmod", "click", openRows], ["#job-cancel", "click", cancelJob],
    ["#view-refresh", "click", refreshViewer], ["#view-star", "change", refreshViewer],
    ["#view-row", "change", fillVolumes], ["#view-volume", "change", loadVolume],
    ["#view-overlay", "change", showSlice], ["#view-slider", "input", showSlice],
    ["#view-low", "change", showSlice], ["#view-high", "change", showSlice], ["#view-slab", "change", showSlice],
    ["#view-window-reset", "click", () => {
      if (!state.volume) return;
      [$("#view-low").value, $("#view-high").value] = state.volume.window.map((v) => Number(v.toPrecision(4)));
      showSlice();
    }],
    ["#view-image", "mousemove", showCoords],
  ];
  for (const [sel, event, fn] of handlers) $(sel).addEventListener(event, fn);
  document.querySelectorAll("#view-axes button").forEach((b) => b.addEventListener("click", () => setAxis(b.dataset.axis)));
  $("#view-3dmod").addEventListener("click", () => {
    const row = currentRow();
    if (row) open3dmod([row.volumes[$("#view-volume").value]], $("#view-star").value.trim());
  });
  $("#predict-3dmod").addEventListener("click", () => {
    const form = document.querySelector('#predict-forms form');
    open3dmod([form.elements.output_dir.value.trim() || "corrected_tomos"]);
  });
  window.addEventListener("beforeunload", (ev) => { if (state.dirty) ev.preventDefault(); });

  await loadTable();
  await followNewestModel();
  await refreshJobs();
  if (state.jobs.length) selectJob(state.jobs[0].id);
  showPage("prep");
  setInterval(refreshJobs, 1000);
  setInterval(() => { if (state.page === "refine") refreshLosses(); }, 5000);
}

main();
