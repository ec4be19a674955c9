// The ward board, the technician view and the audit view: plain tables rebuilt from the
// server's `ward`, `technical` and audit records. Buttons are shown only for the commands the
// user's permissions allow; what they do is up to the page (ctx callbacks).

import { t, fmtTime, fmtAgo, fmtNumber } from "./i18n.js";

function cell(tag, text, cls) {
  const c = document.createElement(tag);
  if (text != null) c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

function table(headKeys, cls) {
  const tbl = document.createElement("table");
  if (cls) tbl.className = cls;
  const tr = document.createElement("tr");
  for (const k of headKeys) {
    const th = cell("th", t(k));
    th.scope = "col";
    tr.appendChild(th);
  }
  tbl.createTHead().appendChild(tr);
  tbl.appendChild(document.createElement("tbody"));
  return tbl;
}

function button(text, cls, onClick, testid) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  if (testid) b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

/**
 * The ward board into `root`. ctx: now(), can(perm), wardName(id), tagLabel(id),
 * signOut(baby), returnBaby(baby), discharge(baby), pair(baby).
 */
export function renderWard(root, ward, ctx) {
  root.replaceChildren();
  const babies = (ward && ward.babies) || [];
  if (!babies.length) {
    root.appendChild(cell("p", t("ward.empty"), "hint"));
    return;
  }
  const nurse = ctx.can("sign_out") || ctx.can("return") || ctx.can("discharge") || ctx.can("pair");
  const keys = ["ward.baby", "ward.ward", "ward.mother", "ward.signOut", "ward.battery"];
  if (nurse) keys.push("ward.actions");
  const tbl = table(keys, "ward-table");
  const body = tbl.tBodies[0];
  const now = ctx.now();
  const sorted = [...babies].sort((a, b) => String(a.name || a.tag).localeCompare(String(b.name || b.tag)));
  for (const b of sorted) {
    const tr = document.createElement("tr");
    tr.dataset.baby = b.tag;
    const name = cell("td");
    name.appendChild(cell("strong", b.tag));
    if (b.name && b.name !== b.tag) name.appendChild(cell("span", ` ${b.name}`));
    tr.appendChild(name);
    tr.appendChild(cell("td", ctx.wardName(b.ward)));
    let mother;
    if (b.mother) {
      mother = cell("td");
      mother.textContent = b.mother_name && b.mother_name !== b.mother ? `${b.mother} ${b.mother_name}` : ctx.tagLabel(b.mother);
    } else if (Number.isFinite(b.pairing_due_t) && b.pairing_due_t < now) {
      mother = cell("td", t("ward.pairingOverdue", { time: fmtTime(b.pairing_due_t) }), "warn");
    } else {
      mother = cell("td", t("ward.pairingDue", { time: fmtTime(b.pairing_due_t) }), "pending");
    }
    tr.appendChild(mother);
    const so = b.sign_out;
    if (so) {
      const overdue = Number.isFinite(so.until_t) && so.until_t < now;
      const key = overdue ? "ward.overdue" : "ward.out";
      const td = cell("td", t(key, { escort: ctx.tagLabel(so.escort), time: fmtTime(so.until_t) }),
        overdue ? "warn" : "out");
      if (so.reason) td.title = so.reason;
      tr.appendChild(td);
    } else {
      tr.appendChild(cell("td", t("ward.in")));
    }
    const pct = b.battery_pct;
    tr.appendChild(cell("td", Number.isFinite(pct) ? `${Math.round(pct)}\u00a0%` : "—",
      Number.isFinite(pct) && pct < 20 ? "warn" : ""));
    if (nurse) {
      const td = cell("td", null, "actions");
      if (!b.mother && ctx.can("pair")) {
        td.appendChild(button(t("ward.pairBtn"), "small", () => ctx.pair(b), "pair"));
      }
      if (!so && ctx.can("sign_out")) {
        td.appendChild(button(t("ward.signOutBtn"), "small", () => ctx.signOut(b), "sign-out"));
      }
      if (so && ctx.can("return")) {
        td.appendChild(button(t("ward.returnBtn"), "small", () => ctx.returnBaby(b), "return"));
      }
      if (!so && ctx.can("discharge")) {
        td.appendChild(button(t("ward.dischargeBtn"), "small", () => ctx.discharge(b), "discharge"));
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  root.appendChild(tbl);
}

function section(root, titleKey, summary) {
  const s = document.createElement("section");
  const h = cell("h3", t(titleKey));
  if (summary) h.appendChild(cell("span", ` — ${summary}`, "muted"));
  s.appendChild(h);
  root.appendChild(s);
  return s;
}

function devices(root, titleKey, list, now, testid) {
  const on = list.filter((d) => d.online).length;
  const s = section(root, titleKey, t("tech.summary", { on, all: list.length }));
  const tbl = table(["tech.id", "tech.floor", "tech.status", "tech.lastHeard"], "tech-table");
  tbl.dataset.testid = testid;
  const sorted = [...list].sort((a, b) => Number(a.online) - Number(b.online) || String(a.id).localeCompare(String(b.id)));
  for (const d of sorted) {
    const tr = document.createElement("tr");
    tr.dataset.device = d.id;
    tr.dataset.online = String(Boolean(d.online));
    tr.className = d.online ? "" : "offline";
    tr.append(cell("td", d.id), cell("td", d.floor || "—"),
      cell("td", d.online ? t("tech.online") : t("tech.offline"), d.online ? "ok" : "bad"),
      cell("td", Number.isFinite(d.last_heard_t) ? fmtAgo(now - d.last_heard_t) : t("tech.never")));
    tbl.tBodies[0].appendChild(tr);
  }
  s.appendChild(tbl);
}

/** The technician view into `root` from the latest `technical` message. */
export function renderTech(root, tech, now) {
  root.replaceChildren();
  if (!tech) {
    root.appendChild(cell("p", t("tech.noData"), "hint"));
    return;
  }
  const cards = cell("div", null, "cards");
  const card = (key, value, testid) => {
    const c = cell("div", null, "card");
    c.dataset.testid = testid;
    c.append(cell("span", t(key), "label"), cell("strong", value));
    cards.appendChild(c);
  };
  card("tech.ingest", t("unit.perSecond", { n: fmtNumber(tech.ingest_rate, 0) }), "ingest-rate");
  card("tech.tick", t("unit.ms", { n: fmtNumber(tech.tick_ms_p99, 1) }), "tick-p99");
  const gws = tech.gateways || [];
  card("tech.gateways", t("tech.summary", { on: gws.filter((g) => g.online).length, all: gws.length }), "gateways-online");
  root.appendChild(cards);
  devices(root, "tech.gateways", gws, now, "gateway-table");
  devices(root, "tech.readers", tech.readers || [], now, "reader-table");

  const unknown = tech.unknown_tags || [];
  const su = section(root, "tech.unknown");
  if (!unknown.length) su.appendChild(cell("p", t("tech.none"), "hint"));
  else {
    const tbl = table(["tech.mac", "tech.serial", "tech.count", "tech.lastSeen"], "tech-table");
    tbl.dataset.testid = "unknown-table";
    for (const u of unknown) {
      const tr = document.createElement("tr");
      tr.append(cell("td", u.mac || "—"), cell("td", u.serial != null ? String(u.serial) : "—"),
        cell("td", fmtNumber(u.count)), cell("td", Number.isFinite(u.last_seen) ? fmtAgo(now - u.last_seen) : "—"));
      tbl.tBodies[0].appendChild(tr);
    }
    su.appendChild(tbl);
  }

  const errors = Object.entries(tech.decode_errors || {}).sort((a, b) => b[1] - a[1]);
  const se = section(root, "tech.errors");
  if (!errors.length) se.appendChild(cell("p", t("tech.none"), "hint"));
  else {
    const tbl = table(["tech.reason", "tech.count"], "tech-table");
    tbl.dataset.testid = "decode-errors";
    for (const [reason, count] of errors) {
      const tr = document.createElement("tr");
      tr.dataset.reason = reason;
      tr.append(cell("td", reason), cell("td", fmtNumber(count)));
      tbl.tBodies[0].appendChild(tr);
    }
    se.appendChild(tbl);
  }
}

function compactDetail(detail) {
  if (detail == null) return "";
  if (typeof detail !== "object") return String(detail);
  return Object.entries(detail)
    .filter(([, v]) => v != null && v !== "")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

/** The audit records (newest first) into the #audit-list <tbody>. */
export function renderAudit(tbody, records) {
  tbody.replaceChildren();
  const sorted = [...(records || [])].sort((a, b) => (b.seq || 0) - (a.seq || 0) || (b.t || 0) - (a.t || 0));
  if (!sorted.length) {
    const tr = document.createElement("tr");
    const td = cell("td", t("audit.empty"), "hint");
    td.colSpan = 5;
    tr.appendChild(td);
    tbody.appendChild(tr);
    return;
  }
  for (const r of sorted) {
    const tr = document.createElement("tr");
    tr.dataset.auditSeq = String(r.seq);
    tr.dataset.actor = r.actor || "";
    tr.dataset.action = r.action || "";
    const detail = compactDetail(r.detail);
    const td = cell("td", detail.length > 160 ? `${detail.slice(0, 157)}…` : detail, "detail");
    td.title = detail;
    tr.append(cell("td", fmtTime(r.t)), cell("td", r.actor || ""), cell("td", r.action || ""),
      cell("td", r.subject != null ? String(r.subject) : ""), td);
    tbody.appendChild(tr);
  }
}
