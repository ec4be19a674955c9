// The console page: glue between the WebSocket client (api.js), the plan (plan.js), the alarm
// list (alarms.js), the ward / technical / audit views (views.js), the dialogs and the sound.
// For tests: window.rtlsConsole = {state, soundPlaying(), soundLevel(), client} and
// <body data-sound="on|off">.

import { ConsoleClient } from "./api.js";
import { AlarmList, renderDetail, canAcknowledge, canResolve, isUnacked, soundLevel } from "./alarms.js";
import { toast, announce, requestError } from "./dialogs.js";
import { makeForms } from "./forms.js";
import { t, tName, tServerError, initialLang, setLang, getLang, onLangChange, translateDom, fmtTime } from "./i18n.js";
import { FloorPlan } from "./plan.js";
import { AlarmSound } from "./sound.js";
import { renderWard, renderTech, renderAudit } from "./views.js";

const $ = (id) => document.getElementById(id);

const state = {
  conn: "offline",
  user: null,
  site: null,
  alarms: {},          // open alarms by id
  positions: [],
  ward: null,          // {babies, code_pink}
  technical: null,
  audit: [],
  selected: null,      // selected alarm id
  tab: "plan",
  lang: "en",
};

const now = () => client.serverNow();       // the engine's clock, for ages and "last heard"
const can = (perm) => Boolean(state.user && (state.user.permissions || []).includes(perm));
const isTech = () => can("technical") || state.technical != null;

// ---------------------------------------------------------------- names
function byId(list, id) {
  return (list || []).find((x) => x.id === id);
}

function tagLabel(id) {
  if (!id) return "—";
  const baby = state.ward && (state.ward.babies || []).find((b) => b.tag === id);
  const tag = state.site && byId(state.site.tags, id);
  const name = (baby && baby.name) || (tag && tag.name);
  return name && name !== id ? `${id} · ${name}` : String(id);
}

function describeSubject(a) {
  const s = state.site || {};
  const door = byId(s.doors, a.subject);
  if (door) return door.name || door.id;
  if (a.subject === s.id) return s.name || s.id;     // site-wide: Code Pink, broker link
  return tagLabel(a.subject);
}

function describeLocation(a) {
  const loc = a.location || {};
  const s = state.site || {};
  const zone = loc.zone ? byId(s.zones, loc.zone) : null;
  const zoneName = zone ? (zone.name || zone.id) : loc.zone;
  const parts = [zoneName, loc.floor].filter(Boolean);
  return parts.length ? parts.join(" · ") : t("alarms.unknownLocation");
}

// ---------------------------------------------------------------- plan, list, sound
const sound = new AlarmSound(() => renderSound());
const plan = new FloorPlan($("panel-plan"), () => {});
const list = new AlarmList($("alarm-list"), {
  now, describeSubject, describeLocation,
  alarm: (id) => state.alarms[id],
  onSelect: (id) => selectAlarm(id),
});

function renderSound() {
  const level = soundLevel(Object.values(state.alarms), now());
  sound.set(state.user ? level : null);
  document.body.dataset.sound = sound.playing() ? "on" : "off";
  document.body.dataset.soundLevel = sound.level || "none";
  $("sound-unlock").hidden = !sound.blocked();
}

function renderAlarms() {
  const alarms = Object.values(state.alarms);
  list.render(alarms);
  const unack = alarms.filter(isUnacked).length;
  $("alarm-count").textContent = t("alarms.count", { n: alarms.length, u: unack });
  plan.setAlarmTags(new Set(alarms.map((a) => a.subject)));
  renderSelected();
  renderSound();
}

function renderSelected() {
  const a = state.selected != null ? state.alarms[state.selected] : null;
  renderDetail($("alarm-detail"), a, { now, describeSubject, describeLocation });
  const ack = $("ack-button");
  const res = $("resolve-button");
  ack.hidden = !can("acknowledge");
  res.hidden = !can("resolve");
  ack.disabled = !a || !canAcknowledge(a);
  res.disabled = !a || !canResolve(a);
  // timed shelving: low-priority technical alarms only (the server enforces it too)
  $("shelve-controls").hidden = !can("shelve");
  $("shelve-button").disabled = !a || a.category !== "technical" || a.priority !== "low"
    || a.state === "closed";
}

/** Where an alarm is: {floor, highlight} from its tag, device, door or location. */
function alarmPlace(a) {
  const loc = a.location || {};
  const s = state.site || {};
  const here = { floor: loc.floor, x: loc.x, y: loc.y, r: loc.uncertainty, zone: loc.zone };
  const device = byId(s.gateways, a.subject) || byId(s.readers, a.subject);
  if (device) return { floor: device.floor, h: { floor: device.floor, x: device.x, y: device.y, r: 1 } };
  const door = byId(s.doors, a.subject);
  if (door) {
    const [[x1, y1], [x2, y2]] = door.points;
    return { floor: door.floor, h: { floor: door.floor, x: (x1 + x2) / 2, y: (y1 + y2) / 2, r: 1 } };
  }
  const pos = state.positions.find((p) => p.tag === a.subject && p.known);
  return { floor: (pos && pos.floor) || loc.floor, h: { ...here, tag: a.subject } };
}

function selectAlarm(id, { focusPlan = true } = {}) {
  const a = state.alarms[id];
  if (!a) return;
  state.selected = id;
  list.select(id);
  if (focusPlan) {
    showTab("plan");
    const place = alarmPlace(a);
    if (place.floor) plan.setFloor(place.floor);
    plan.setHighlight(place.h);
    // Stacked layout (tablet): bring the plan into view, the list stays where it was.
    if (matchMedia("(max-width: 1100px)").matches) $("plan").scrollIntoView({ block: "nearest" });
  }
  renderSelected();
}

// ---------------------------------------------------------------- server messages
function applySnapshot(msg) {
  if (msg.user) state.user = msg.user;
  state.site = msg.site || state.site;
  state.alarms = {};
  for (const a of msg.alarms || []) if (a.state !== "closed") state.alarms[a.id] = a;
  state.positions = (msg.positions || []).map(fixOf);
  state.ward = msg.ward || null;
  state.technical = msg.technical || null;
  if (state.site) {
    plan.setSite(state.site);
    $("site-name").textContent = state.site.name || state.site.id || "";
  }
  plan.setPositions(state.positions);
  showDevices(state.technical);
  if (state.selected != null && !state.alarms[state.selected]) {
    state.selected = null;
    plan.setHighlight(null);
  }
  renderAll();
}

function applyAlarm(msg) {
  const tr = msg.transition || {};
  const a = tr.alarm;
  if (!a) return;
  const before = state.alarms[a.id];
  if (a.state === "closed") delete state.alarms[a.id];
  else state.alarms[a.id] = a;
  const newlyHigh = a.priority === "high" && isUnacked(a) && (!before || before.priority !== "high" || !isUnacked(before));
  if (newlyHigh) {
    announce(t("alarms.announceHigh", { type: tName("type", a.type), subject: describeSubject(a), where: describeLocation(a) }));
  }
  if (state.selected === a.id) {
    if (a.state === "closed") { state.selected = null; plan.setHighlight(null); }
    else plan.setHighlight(alarmPlace(a).h);
  }
  renderAlarms();
  if (state.tab === "audit") scheduleAudit();
}

/** A compact row `[tag, x, y, floor, zone, uncertainty]` (x null: position unknown) as an object. */
function fixOf(r) {
  return { tag: r[0], known: r[1] !== null, x: r[1], y: r[2], floor: r[3], zone: r[4], uncertainty: r[5] };
}

/** A full picture replaces the positions; a delta (full: false) updates its tags and drops `hidden`. */
function applyPositions(msg) {
  const rows = (msg.positions || []).map(fixOf);
  if (msg.full === false) {
    const byTag = new Map(state.positions.map((p) => [p.tag, p]));
    for (const p of rows) byTag.set(p.tag, p);
    for (const tag of msg.hidden || []) byTag.delete(tag);
    state.positions = [...byTag.values()];
  } else {
    const hidden = new Set(msg.hidden || []);
    state.positions = rows.filter((p) => !hidden.has(p.tag));
  }
  plan.setPositions(state.positions);
}

/** Gateways and readers online or offline on the plan (technicians), from `technical`. */
function showDevices(tech) {
  if (!tech) { plan.setDeviceStatus(null); return; }
  const online = new Map();
  for (const g of [...(tech.gateways || []), ...(tech.readers || [])]) online.set(g.id, Boolean(g.online));
  plan.setDeviceStatus(online);
}

function applyTechnical(msg) {
  state.technical = msg;
  showDevices(msg);
  renderTabs();
  if (state.tab === "tech") renderTech($("tech-view"), state.technical, now());
}

function onMessage(msg) {
  switch (msg.type) {
    case "snapshot": applySnapshot(msg); break;
    case "alarm": applyAlarm(msg); break;
    case "positions": applyPositions(msg); break;
    case "ward":
      state.ward = { babies: msg.babies || [], code_pink: msg.code_pink || null };
      renderWardPanel();
      renderAlarms();
      break;
    case "technical": applyTechnical(msg); break;
    case "error": toast(tServerError(msg.error)); break;
    default: break;
  }
}

// ---------------------------------------------------------------- views
function renderTabs() {
  $("tab-ward").hidden = !(state.ward || can("sign_out") || can("code_pink"));
  $("tab-tech").hidden = !isTech();
  $("tab-audit").hidden = !can("audit");
  document.body.classList.toggle("is-tech", isTech());
  plan.setShowReference(isTech());
  if ($(`tab-${state.tab}`).hidden) showTab("plan");
}

function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    $(b.getAttribute("aria-controls")).hidden = !on;
  }
  if (name === "ward") renderWardPanel();
  if (name === "tech") renderTech($("tech-view"), state.technical, now());
  if (name === "audit") loadAudit();
}

function renderWardPanel() {
  const cp = state.ward && state.ward.code_pink;
  const banner = $("code-pink-banner");
  banner.hidden = !cp;
  if (cp) banner.textContent = t("ward.codePinkOn", { by: cp.by || "?", time: fmtTime(cp.t), reason: cp.reason || "" });
  $("code-pink-button").hidden = Boolean(cp) || !can("code_pink");
  $("end-code-pink-button").hidden = !cp || !can("end_code_pink");
  if (state.tab !== "ward") return;
  // Rebuilding the table must not take the keyboard focus away from its buttons.
  const focused = document.activeElement;
  const row = focused && focused.closest ? focused.closest("#ward-board tr[data-baby]") : null;
  const again = row ? [row.dataset.baby, focused.dataset.testid] : null;
  renderWard($("ward-board"), state.ward, {
    now, can, tagLabel,
    wardName: (id) => { const w = state.site && byId(state.site.wards, id); return w ? (w.name || w.id) : (id || "—"); },
    signOut: openSignOut,
    pair: openPair,
    returnBaby: (b) => sendCommand("return", { baby: b.tag }),
    discharge: (b) => confirmCommand(t("ward.dischargeConfirm", { name: b.name || b.tag }), false,
      () => ({ command: "discharge", args: { baby: b.tag } }), () => wardButton(b.tag) || $("tab-ward")),
  });
  if (again) {
    const sel = `#ward-board tr[data-baby="${CSS.escape(again[0])}"] [data-testid="${again[1]}"]`;
    const target = document.querySelector(sel) || document.querySelector(`#ward-board tr[data-baby="${CSS.escape(again[0])}"] button`);
    if (target) target.focus();
  }
}

let auditTimer = null;
function scheduleAudit() {
  clearTimeout(auditTimer);
  auditTimer = setTimeout(loadAudit, 1000);
}

function loadAudit() {
  if (!can("audit")) return;
  client.request({ op: "audit", limit: 50 }).then((reply) => {
    if (!reply.ok) { toast(tServerError(reply.error)); return; }
    state.audit = reply.records || [];
    renderAudit($("audit-list"), state.audit);
  }).catch((e) => toast(requestError(e)));
}

function renderAll() {
  translateDom();
  $("user-name").textContent = state.user ? `${state.user.display || state.user.name} (${state.user.role})` : "";
  renderTabs();
  renderWardPanel();
  renderAlarms();
  if (state.tab === "tech") renderTech($("tech-view"), state.technical, now());
  if (state.tab === "audit") renderAudit($("audit-list"), state.audit);
  renderConn();
}

function renderConn() {
  const el = $("conn-status");
  const s = state.conn;
  el.dataset.status = s;
  el.textContent = s === "stale" ? t("conn.stale", { s: Math.round(client.silenceS()) }) : t(`conn.${s}`);
}

// ---------------------------------------------------------------- commands and dialogs
async function sendCommand(command, args, okMessage) {
  try {
    const reply = await client.command(command, args);
    if (!reply.ok) toast(tServerError(reply.error));
    else toast(okMessage || t("ward.done"), "ok");
    return reply;
  } catch (e) {
    toast(requestError(e));
    return null;
  }
}

const { openResolve, confirmCommand, wardButton, openSignOut, openPair } = makeForms({
  state, describeSubject, tagLabel, command: (name, args) => client.command(name, args),
});

// ---------------------------------------------------------------- connection and login
function resetState() {
  Object.assign(state, { user: null, site: null, alarms: {}, positions: [], ward: null,
    technical: null, audit: [], selected: null });
  plan.setHighlight(null);
}

function showConsole(on) {
  $("login-view").hidden = on;
  $("console-view").hidden = !on;
  $("logout-button").hidden = !on;
  document.body.dataset.view = on ? "console" : "login";
}

function loginError(msg) {
  const el = $("login-error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

const client = new ConsoleClient(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`, {
  message: onMessage,
  auth: (reply) => {
    state.user = reply.user || state.user;
    loginError(null);
    showConsole(true);
    renderAll();
  },
  loggedOut: (reason) => {
    resetState();
    showConsole(false);
    renderAll();
    loginError(reason === "expired" ? t("err.sessionExpired") : null);
    $("login-user").focus();
  },
  status: (s) => { state.conn = s; renderConn(); },
});

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sound.unlock();                       // a user gesture: the alarm sound may start later
  const user = $("login-user").value.trim();
  const password = $("login-password").value;
  if (!user || !password) { loginError(t("err.required")); return; }
  const btn = $("login-submit");
  btn.disabled = true;
  btn.textContent = t("login.busy");
  try {
    const reply = await client.login(user, password, getLang());
    if (!reply.ok) {
      loginError(tServerError(reply.error));
      $("login-password").select();
    } else {
      $("login-password").value = "";
    }
  } catch (e) {
    loginError(requestError(e));
  } finally {
    btn.disabled = false;
    btn.textContent = t("login.submit");
  }
});

// ---------------------------------------------------------------- controls
$("ack-button").addEventListener("click", () => {
  const a = state.alarms[state.selected];
  if (a) sendCommand("acknowledge", { alarm: a.id }, t("ok.acknowledged", { id: a.id }));
});
$("resolve-button").addEventListener("click", openResolve);
$("shelve-button").addEventListener("click", () => {
  const a = state.alarms[state.selected];
  const duration = Number($("shelve-duration").value);
  if (a) sendCommand("shelve", { alarm: a.id, duration_s: duration }, t("ok.shelved", { id: a.id }));
});
$("code-pink-button").addEventListener("click", () => confirmCommand(t("ward.codePinkConfirm"), true,
  (reason) => ({ command: "code_pink", args: { reason } })));
$("end-code-pink-button").addEventListener("click", () => confirmCommand(t("ward.endCodePinkConfirm"), true,
  (reason) => ({ command: "end_code_pink", args: { reason } })));
$("audit-refresh").addEventListener("click", loadAudit);
$("logout-button").addEventListener("click", () => client.logout());
$("sound-unlock").addEventListener("click", () => sound.unlock());
for (const evName of ["pointerdown", "keydown"]) {
  document.addEventListener(evName, () => { if (sound.blocked()) sound.unlock(); }, { capture: true });
}

const tabs = $("tabs");
tabs.addEventListener("click", (ev) => {
  const b = ev.target.closest("[role=tab]");
  if (b) showTab(b.dataset.tab);
});
tabs.addEventListener("keydown", (ev) => {
  if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
  const visible = [...tabs.querySelectorAll("[role=tab]")].filter((b) => !b.hidden);
  const i = visible.indexOf(document.activeElement);
  if (i < 0) return;
  const next = visible[(i + (ev.key === "ArrowRight" ? 1 : visible.length - 1)) % visible.length];
  next.focus();
  showTab(next.dataset.tab);
});

$("lang-select").addEventListener("change", (ev) => setLang(ev.target.value));
onLangChange((lang) => {
  state.lang = lang;
  $("lang-select").value = lang;
  if (state.site) plan.setSite(state.site);
  renderAll();
  if (!$("login-submit").disabled) $("login-submit").textContent = t("login.submit");
});

let wardTicks = 0;
setInterval(() => {
  list.tick();
  if (state.selected != null) renderSelected();
  if (state.tab === "tech" && state.technical) renderTech($("tech-view"), state.technical, now());
  if (state.tab === "ward" && state.ward && ++wardTicks % 10 === 0) renderWardPanel();  // overdue marks
  if (state.tab === "audit" && can("audit") && !document.hidden) {
    if (!loadAudit.last || Date.now() - loadAudit.last > 10000) { loadAudit.last = Date.now(); loadAudit(); }
  }
  if (state.conn === "stale") renderConn();
  renderSound();
}, 1000);

window.rtlsConsole = {
  state,
  client,
  soundPlaying: () => sound.playing(),
  soundLevel: () => sound.level,
  selectAlarm: (id) => selectAlarm(id),
};

setLang(initialLang());
showConsole(false);
client.connect();
