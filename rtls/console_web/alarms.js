// The alarm list (a keyboard-usable listbox) and the selected alarm's detail panel.
// Rows carry data-alarm-id, data-priority, data-state and data-type; sorted by priority
// (high first), then newest first. Pure helpers are exported for the sound and the page.

import { t, tName, fmtDuration, fmtTime } from "./i18n.js";

const PRIORITY_RANK = { high: 3, medium: 2, low: 1 };

/** Unacknowledged in either spelling of the state ("unacknowledged", "active_unacknowledged", …). */
export function isUnacked(a) {
  return String(a.state || "").includes("unacknowledged");
}

export function isShelved(a, now) {
  return Number.isFinite(a.shelved_until) && a.shelved_until > now;
}

export function canAcknowledge(a) {
  return isUnacked(a);
}

export function canResolve(a) {
  return !isUnacked(a) && a.state !== "closed";
}

/** Sort key order: priority (high first), then the newest raise first, then id. */
export function compareAlarms(a, b) {
  return (PRIORITY_RANK[b.priority] || 0) - (PRIORITY_RANK[a.priority] || 0)
    || (b.raised_t || 0) - (a.raised_t || 0)
    || (b.id || 0) - (a.id || 0);
}

/** The sound a set of alarms calls for: the highest priority among unacknowledged, unshelved ones. */
export function soundLevel(alarms, now) {
  let best = null;
  for (const a of alarms) {
    if (!isUnacked(a) || isShelved(a, now)) continue;
    if (!best || (PRIORITY_RANK[a.priority] || 0) > (PRIORITY_RANK[best] || 0)) best = a.priority;
  }
  return best;
}

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

export class AlarmList {
  /**
   * @param {HTMLElement} list the #alarm-list element
   * @param {object} ctx now() (server clock), describeSubject(a), describeLocation(a), onSelect(id)
   */
  constructor(list, ctx) {
    this.list = list;
    this.ctx = ctx;
    this.rows = new Map();
    this.selected = null;
    list.addEventListener("click", (ev) => {
      const row = ev.target.closest("[data-alarm-id]");
      if (row) ctx.onSelect(Number(row.dataset.alarmId));
    });
    list.addEventListener("keydown", (ev) => this.key(ev));
  }

  key(ev) {
    const row = ev.target.closest("[data-alarm-id]");
    if (!row) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      this.ctx.onSelect(Number(row.dataset.alarmId));
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const next = ev.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
      if (next) next.focus();
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      const next = ev.key === "Home" ? this.list.firstElementChild : this.list.lastElementChild;
      if (next) next.focus();
    }
  }

  /** Re-render from the open alarms (an iterable of alarm objects). */
  render(alarms) {
    const sorted = [...alarms].sort(compareAlarms);
    const focusedId = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.alarmId : undefined;
    const keep = new Set(sorted.map((a) => a.id));
    for (const [id, row] of this.rows) if (!keep.has(id)) { row.remove(); this.rows.delete(id); }
    let prev = null;
    for (const a of sorted) {
      let row = this.rows.get(a.id);
      if (!row) {
        row = document.createElement("li");
        row.setAttribute("role", "option");
        row.tabIndex = 0;
        this.rows.set(a.id, row);
      }
      this.fill(row, a);
      const wanted = prev ? prev.nextElementSibling : this.list.firstElementChild;
      if (wanted !== row) {
        if (prev) prev.after(row); else this.list.prepend(row);
      }
      prev = row;
    }
    const empty = this.list.parentElement.querySelector("#alarm-empty");
    if (empty) empty.hidden = sorted.length > 0;
    if (focusedId && this.rows.has(Number(focusedId)) && document.activeElement !== this.rows.get(Number(focusedId))) {
      this.rows.get(Number(focusedId)).focus();
    }
  }

  fill(row, a) {
    const now = this.ctx.now();
    const shelved = isShelved(a, now);
    row.dataset.alarmId = String(a.id);
    row.dataset.priority = a.priority;
    row.dataset.state = a.state;
    row.dataset.type = a.type;
    row.className = `alarm prio-${a.priority}${isUnacked(a) ? " unack" : ""}${shelved ? " shelved" : ""}`;
    row.setAttribute("aria-selected", String(a.id === this.selected));
    const type = tName("type", a.type);
    const state = shelved ? t("state.shelved") : tName("state", a.state);
    const prio = tName("priority", a.priority);
    const subject = this.ctx.describeSubject(a);
    const where = this.ctx.describeLocation(a);
    row.replaceChildren(
      span("prio", prio),
      span("type", type),
      span("subject", subject),
      span("where", where),
      span("state", state),
      span("age", fmtDuration(now - a.raised_t)),
    );
    row.setAttribute("aria-label", `${prio}: ${type}, ${subject}, ${where}, ${state}`);
  }

  /** Refresh the ages (every second). */
  tick() {
    const now = this.ctx.now();
    for (const row of this.rows.values()) {
      const a = this.ctx.alarm(Number(row.dataset.alarmId));
      if (a) row.querySelector(".age").textContent = fmtDuration(now - a.raised_t);
    }
  }

  select(id) {
    this.selected = id;
    for (const [rid, row] of this.rows) row.setAttribute("aria-selected", String(rid === id));
  }
}

/** Fill the detail panel `box` (a <dl>) for alarm `a` (or the "select an alarm" hint). */
export function renderDetail(box, a, ctx) {
  box.replaceChildren();
  if (!a) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = t("alarms.select");
    box.appendChild(p);
    return;
  }
  const h = document.createElement("h3");
  h.textContent = `#${a.id} ${tName("type", a.type)}`;
  h.className = `prio-${a.priority}`;
  box.appendChild(h);
  const dl = document.createElement("dl");
  const now = ctx.now();
  const rows = [
    ["alarms.priority", tName("priority", a.priority)],
    ["alarms.state", isShelved(a, now) ? t("state.shelved") : tName("state", a.state)],
    ["alarms.subject", ctx.describeSubject(a)],
    ["alarms.location", ctx.describeLocation(a)],
    ["alarms.raised", `${fmtTime(a.raised_t)} (${fmtDuration(now - a.raised_t)})`],
  ];
  if (a.acked_by) rows.push(["alarms.ackedBy", `${a.acked_by} ${fmtTime(a.acked_t)}`]);
  if (a.escalation_step) rows.push(["alarms.escalation", String(a.escalation_step)]);
  if (isShelved(a, now)) rows.push(["alarms.shelvedUntil", fmtTime(a.shelved_until)]);
  if (a.occurrences > 1) rows.push(["alarms.occurrences", String(a.occurrences)]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = t(k);
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
  box.appendChild(dl);
  if (a.latching) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = t("alarms.latching");
    box.appendChild(p);
  }
}
