// delestage dashboard: reads /api (the same JSON as the CLI's --json) and
// follows /api/events to stay live. No framework and no build step: the
// controller serves this file as it is.
//
// The token (when the controller has --tokens) lives in sessionStorage and
// travels in the Authorization header, never in a cookie. That is why the
// event stream is read with fetch(): EventSource cannot send headers.
"use strict";

const TOKEN_KEY = "delestage-token";
const PARIS = "Europe/Paris";
const hm = new Intl.DateTimeFormat("en-GB", { timeZone: PARIS, hour: "2-digit", minute: "2-digit" });
const dayName = new Intl.DateTimeFormat("en-GB", { timeZone: PARIS, weekday: "short", day: "numeric" });
const dateKey = new Intl.DateTimeFormat("en-CA", { timeZone: PARIS, year: "numeric", month: "2-digit", day: "2-digit" });
const hourOf = new Intl.DateTimeFormat("en-GB", { timeZone: PARIS, hour: "2-digit", hourCycle: "h23" });

const LEVEL_LETTER = { "carbon-free": "C", green: "G", orange: "O", red: "R", unknown: "·" };
const DURATIONS = [["30m", "30 min"], ["1h", "1 hour"], ["2h", "2 hours"], ["4h", "4 hours"], ["8h", "8 hours"], ["24h", "24 hours"]];

const state = { status: null, plan: null, forecast: null, forecastFetchedAt: undefined, history: [] };

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    else if (k === "style") Object.assign(e.style, v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) e.append(c);
  }
  return e;
}

// ---- time, in Paris ----

function clock(t) {
  return hm.format(new Date(t));
}

/** "18:00" today, "Sat 28 18:00" another day. */
function when(t) {
  const d = new Date(t);
  return dateKey.format(d) === dateKey.format(new Date()) ? hm.format(d) : `${dayName.format(d)} ${hm.format(d)}`;
}

// ---- words ----

function level(name) {
  return el("span", { class: `lv lv-${name || "unknown"}` }, name || "unknown");
}

function tempo(name) {
  return el("span", { class: `tempo tempo-${name || "unknown"}` }, name || "unknown");
}

/** Why, in words: the server's wording (`reason_text`, the CLI's too). */
const why = (x) => x.reason_text || x.reason || "?";

const onCut = (powered) => (powered ? "on" : "cut");

// ---- the API ----

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** One API call; asks for a token and tries again on 401/403. */
async function api(method, path, body) {
  for (;;) {
    const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}), cache: "no-store" };
    if (body) init.body = JSON.stringify(body);
    const r = await fetch(path, init);
    if (r.ok) return r.json();
    let message = `${r.status} ${r.statusText}`;
    try { message = (await r.json()).error || message; } catch (_) { /* not JSON */ }
    if (r.status === 401 || (r.status === 403 && method !== "GET" && /token/.test(message))) {
      const why = r.status === 401 ? "This dashboard needs a token: a read token to look, a control token to act." : "This needs a control token.";
      if (await askToken(`${why} (${message})`)) continue;
    }
    throw new ApiError(r.status, message);
  }
}

let tokenAsked = null;

/** Opens the token dialog once for everyone who needs it; true if a token was given. */
function askToken(why) {
  if (tokenAsked) return tokenAsked;
  tokenAsked = new Promise((resolve) => {
    const dialog = $("token-dialog");
    $("token-why").textContent = why;
    $("token-input").value = "";
    const done = (given) => {
      dialog.close();
      tokenAsked = null;
      resolve(given);
    };
    $("token-form").onsubmit = (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      done(true);
    };
    $("token-cancel").onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
  });
  return tokenAsked;
}

// ---- rendering ----

function renderNow() {
  const s = state.status;
  if (!s) return;
  const f = s.forecast || {};
  const parts = [
    el("p", { class: "big" }, "Ecowatt now: ", level(s.level)),
    el("p", {}, "Tempo today: ", tempo(f.tempo_today), " tomorrow: ", tempo(f.tempo_tomorrow),
      f.tempo_source === "meter" ? " (from the Linky meter)" : ""),
  ];
  if (s.meter) parts.push(power(s.meter, s.power_saved_w));
  if (s.kept_off_today_wh > 0) {
    parts.push(el("p", { class: "kept" },
      `Today you kept ${(s.kept_off_today_wh / 1000).toFixed(1)} kWh off the grid during tense hours`));
  }
  const tense = nextTense();
  const tenseWhen = tense && (new Date(tense.start).getTime() <= Date.now() ? "now" : when(tense.start));
  parts.push(el("p", {}, "Next tense hour: ", tense ? [tenseWhen, " ", level(tense.level)] : "none in the forecast"));
  const notes = [];
  if (f.fetched_at) notes.push(`forecast fetched ${when(f.fetched_at)}`);
  if (f.stale) notes.push("stale");
  if (!f.forecast_service_reachable) notes.push("forecast-service unreachable");
  if (!f.usable && f.reason) notes.push(`not used: ${f.reason}`);
  if (f.note) notes.push(f.note);
  parts.push(el("p", { class: "note" }, notes.join(" · ")));
  $("now").replaceChildren(...parts);
}

/** The house's power against the subscribed power (the Linky meter). */
function power(m, saved) {
  if (!m.reading) return el("p", { class: "power" }, `Power: unknown (${m.problem})`);
  const savedText = saved ? ` · cut loads save ~${saved} W` : "";
  const share = m.subscribed_va > 0 ? Math.min(100, (100 * m.apparent_power_va) / m.subscribed_va) : 0;
  return el("p", { class: "power" },
    `Power: ${m.apparent_power_va} VA of ${m.subscribed_va} VA `,
    el("meter", { min: "0", max: String(m.subscribed_va), value: String(m.apparent_power_va),
      "aria-label": `${Math.round(share)}% of the subscribed power` }), savedText);
}

/** The first orange or red hour from now on. */
function nextTense() {
  const hours = (state.forecast && state.forecast.hours) || [];
  const now = Date.now();
  return hours.find((h) => new Date(h.end).getTime() > now && (h.level === "orange" || h.level === "red"));
}

/** Each load's card is made once and then updated, so that a chosen
 * duration and the keyboard focus survive live updates. */
function renderLoads() {
  const s = state.status;
  if (!s) return;
  const list = $("loads");
  const seen = new Set();
  for (const l of s.loads) {
    seen.add(l.name);
    let card = list.querySelector(`li[data-load="${CSS.escape(l.name)}"]`);
    if (!card) {
      card = loadCard(l.name);
      list.append(card);
    }
    updateCard(card, l);
  }
  for (const card of [...list.children]) {
    if (!seen.has(card.dataset.load)) card.remove();
  }
  renderTimelines();
}

function loadCard(name) {
  const id = `d-${name}`;
  const select = el("select", { id, class: "duration" }, DURATIONS.map(([v, label]) => el("option", { value: v, selected: v === "2h" }, label)));
  const act = (what) => () => override(name, what, card);
  const card = el("li", { class: "load", "data-load": name },
    el("div", { class: "load-head" }, el("h3", {}, name), el("span", { class: "state", "data-powered": "true" })),
    el("p", { class: "why" }),
    el("p", { class: "next muted" }),
    el("p", { class: "override-note" }),
    el("div", { class: "plan" }),
    el("div", { class: "actions", role: "group", "aria-label": `Override ${name}` },
      el("label", { for: id }, "For"), select,
      el("button", { type: "button", "data-action": "on", onclick: act("on") }, "Keep on"),
      el("button", { type: "button", "data-action": "off", onclick: act("off") }, "Cut"),
      el("button", { type: "button", "data-action": "clear", onclick: act("clear") }, "Clear override")),
    el("p", { class: "error", role: "alert" }));
  return card;
}

function updateCard(card, l) {
  const badge = card.querySelector(".state");
  badge.dataset.powered = String(l.powered);
  badge.textContent = l.powered ? "ON" : "CUT";
  const wants = l.desired === l.powered ? "" : ` (wants ${onCut(l.desired)})`;
  card.querySelector(".why").textContent = `Why: ${why(l)}${wants}`;
  const next = l.next_change_at ? `Next: ${onCut(l.next_powered)} at ${when(l.next_change_at)}` : "No change planned";
  const relay = l.relay ? ` · relay ${l.relay}` : "";
  // Measured by the Linky meter around its switches ([power]).
  const saves = l.measured_va ? ` · saves ~${l.measured_va} W when cut` : "";
  card.querySelector(".next").textContent = `${next}${relay}${saves}`;
  const o = l.override;
  card.querySelector(".override-note").textContent = o ? `Override: ${onCut(o.powered)} until ${when(o.until)}` : "";
  card.querySelector('[data-action="clear"]').hidden = !o;
  card.dataset.override = o ? onCut(o.powered) : "";
  const err = card.querySelector(".error");
  if (l.error && err.dataset.source !== "action") err.textContent = l.error;
  if (!l.error && err.dataset.source !== "action") err.textContent = "";
}

async function override(name, what, card) {
  const buttons = card.querySelectorAll("button");
  const err = card.querySelector(".error");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    if (what === "clear") {
      await api("DELETE", `/api/overrides/${encodeURIComponent(name)}`);
    } else {
      const duration = card.querySelector("select").value;
      await api("POST", `/api/overrides/${encodeURIComponent(name)}`, { powered: what === "on", for: duration });
    }
    err.textContent = "";
    delete err.dataset.source;
  } catch (e) {
    err.textContent = `Could not ${what === "clear" ? "clear the override" : "override"}: ${e.message}`;
    err.dataset.source = "action";
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

/** Each load's plan: a bar (solid: on, hatched: cut) and the same in words. */
function renderTimelines() {
  const plan = state.plan;
  if (!plan) return;
  for (const lp of plan.loads) {
    const card = $("loads").querySelector(`li[data-load="${CSS.escape(lp.load)}"]`);
    if (!card) continue;
    const box = card.querySelector(".plan");
    const iv = lp.intervals.filter((i) => i.start && i.end);
    if (!iv.length) {
      box.replaceChildren(el("p", { class: "muted" }, "No plan yet"));
      continue;
    }
    const t0 = new Date(iv[0].start).getTime();
    const t1 = new Date(iv[iv.length - 1].end).getTime();
    const span = Math.max(t1 - t0, 1);
    const at = (t) => ((new Date(t).getTime() - t0) / span) * 100;
    const pct = (t) => `${at(t).toFixed(3)}%`;
    const segs = iv.map((i) => el("div", {
      class: `seg ${i.powered ? "on" : "cut"}${i.reason === "override" ? " override" : ""}`,
      style: { left: pct(i.start), width: `${(at(i.end) - at(i.start)).toFixed(3)}%` },
      title: `${onCut(i.powered)} ${when(i.start)}–${when(i.end)}: ${why(i)}`,
    }));
    // A tick at each Paris midnight, labelled with the day.
    const ticks = [];
    const labels = [];
    for (let t = Math.ceil(t0 / 3600000) * 3600000; t < t1; t += 3600000) {
      if (hourOf.format(new Date(t)) === "00") {
        ticks.push(el("div", { class: "tick", style: { left: pct(t) } }));
        labels.push(el("span", { style: { left: pct(t) } }, dayName.format(new Date(t))));
      }
    }
    const cuts = iv.filter((i) => !i.powered);
    const words = cuts.length
      ? el("ul", { class: "changes" }, cuts.slice(0, 6).map((i) => el("li", {}, `cut ${when(i.start)}–${when(i.end)}: ${why(i)}`)))
      : el("p", { class: "muted" }, `On for the whole plan, until ${when(iv[iv.length - 1].end)}`);
    const budget = lp.budget ? el("p", { class: "muted" }, lp.budget.summary) : null;
    box.replaceChildren(
      el("div", { class: "timeline", role: "img", "aria-label": `Plan from ${when(iv[0].start)} to ${when(iv[iv.length - 1].end)}: ${cuts.length} cut period(s), listed below` }, segs, ticks),
      el("div", { class: "ticks", "aria-hidden": "true" }, labels),
      ...[words, budget].filter(Boolean));
  }
}

/** Four days by 24 hours, each cell its level's colour and letter. */
function renderForecast() {
  const f = state.forecast;
  const box = $("forecast");
  if (!f) return;
  if (!f.hours || !f.hours.length) {
    box.replaceChildren(el("p", {}, "No forecast known."));
    return;
  }
  const days = new Map();
  for (const h of f.hours) {
    const d = new Date(h.start);
    const key = dateKey.format(d);
    if (!days.has(key)) days.set(key, { label: dayName.format(d), cells: new Array(24).fill(null) });
    days.get(key).cells[Number(hourOf.format(d))] = h;
  }
  const now = Date.now();
  const head = el("tr", {}, el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Day")),
    [...Array(24).keys()].map((h) => el("th", { scope: "col", "aria-label": `${h}:00` }, h % 6 === 0 ? `${h}h` : "")));
  const rows = [...days.values()].map((day) => el("tr", {},
    el("th", { scope: "row" }, day.label),
    day.cells.map((h, i) => {
      const name = h ? h.level : "unknown";
      const isNow = h && new Date(h.start).getTime() <= now && now < new Date(h.end).getTime();
      const label = `${day.label} ${String(i).padStart(2, "0")}:00 ${name}`;
      return el("td", { class: `lv-${name}${isNow ? " now" : ""}`, title: label, "aria-label": label }, LEVEL_LETTER[name] || "?");
    })));
  const source = `${f.source}${f.stale ? ", stale" : ""}; fetched ${f.fetched_at ? when(f.fetched_at) : "?"}`;
  box.replaceChildren(el("table", {}, el("caption", { class: "muted" }, `Source: ${source}`), el("thead", {}, head), el("tbody", {}, rows)));
  renderNow();
}

function renderBoxes() {
  const s = state.status;
  if (!s) return;
  $("boxes").replaceChildren(...s.relay_services.map((r) => {
    const health = !r.reachable ? "unreachable" : r.board_attached ? "OK, board attached" : "reachable, board NOT attached";
    return el("li", { "data-box": r.name },
      el("h3", {}, `${r.name} `, el("span", { class: "muted" }, r.endpoint)),
      el("p", { class: r.reachable && r.board_attached ? "" : "error" }, health),
      r.error ? el("p", { class: "error" }, r.error) : null);
  }));
}

function renderHistory() {
  const rows = state.history.slice(0, 30).map((r) => el("tr", {},
    el("td", {}, when(r.at)),
    el("td", {}, r.load),
    el("td", {}, `${onCut(r.from_powered)} → ${onCut(r.to_powered)}`),
    el("td", {}, why(r))));
  $("history").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "4" }, "No switches yet."))]));
}

// ---- data ----

function onStatus(s) {
  state.status = s;
  renderNow();
  renderLoads();
  renderBoxes();
  const fetched = s.forecast && s.forecast.fetched_at;
  if (fetched !== state.forecastFetchedAt) {
    state.forecastFetchedAt = fetched;
    loadForecast();
  }
}

async function loadForecast() {
  try {
    state.forecast = await api("GET", "/api/forecast");
  } catch (e) {
    state.forecast = { hours: [], error: e.message };
    $("forecast").replaceChildren(el("p", { class: "error" }, `Forecast: ${e.message}`));
    return;
  }
  renderForecast();
}

async function loadHistory() {
  try {
    state.history = (await api("GET", "/api/history?limit=30")).records;
    renderHistory();
  } catch (e) {
    $("history").replaceChildren(el("tr", {}, el("td", { colspan: "4", class: "error" }, e.message)));
  }
}

function setLive(what, text) {
  const live = $("live");
  live.dataset.state = what;
  live.textContent = text;
}

/** Reads /api/events for ever, reconnecting with a growing pause. */
async function follow() {
  let pause = 1000;
  for (;;) {
    try {
      const r = await fetch("/api/events", { headers: headers({ Accept: "text/event-stream" }), cache: "no-store" });
      if (r.status === 401) {
        setLive("down", "needs a token");
        if (!(await askToken("This dashboard needs a token: a read token to look, a control token to act."))) return;
        continue;
      }
      if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
      setLive("live", "live");
      pause = 1000;
      loadHistory();
      await readEvents(r.body);
      setLive("down", "connection lost; reconnecting…");
    } catch (e) {
      setLive("down", `disconnected (${e.message}); reconnecting…`);
    }
    await new Promise((done) => setTimeout(done, pause));
    pause = Math.min(pause * 2, 10000);
  }
}

/** Server-sent events: `event:` and `data:` lines, a blank line ends one. */
async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(buffer.slice(end).match(/^\r?\n\r?\n/)[0].length + end);
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) dispatch(name, JSON.parse(data.join("\n")));
    }
  }
}

function dispatch(name, value) {
  if (name === "status") onStatus(value);
  else if (name === "plan") { state.plan = value; renderTimelines(); }
  else if (name === "switched") { state.history.unshift(value); state.history.length = Math.min(state.history.length, 30); renderHistory(); }
}

document.addEventListener("DOMContentLoaded", () => {
  renderHistory();
  follow();
  // Relative words ("today") and the current hour move on by themselves.
  setInterval(() => { renderForecast(); renderTimelines(); }, 60000);
});
