// The SVG floor plan: one floor at a time (selector buttons), drawn from the snapshot's `site`
// (metres, y up: flipped here for SVG). Static layers (zones, walls, doors, gateways, readers)
// are rebuilt on a floor change; live tags are updated in place from `positions`; a pulsing
// ring marks the selected alarm's tag or place.

import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const MARGIN = 1.5;            // metres around the floor outline

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function centroid(points) {
  let x = 0;
  let y = 0;
  for (const [px, py] of points) { x += px; y += py; }
  return [x / points.length, y / points.length];
}

function area(points) {
  let a = 0;
  for (let i = 0; i < points.length; i++) {
    const [x1, y1] = points[i];
    const [x2, y2] = points[(i + 1) % points.length];
    a += x1 * y2 - x2 * y1;
  }
  return Math.abs(a) / 2;
}

export class FloorPlan {
  /** `root` holds the floor selector, the SVG and the legend; onFloor(id) on a user's switch. */
  constructor(root, onFloor = () => {}) {
    this.root = root;
    this.onFloor = onFloor;
    this.site = null;
    this.floor = null;
    this.positions = [];
    this.tagKinds = new Map();
    this.tagNames = new Map();
    this.gatewayOnline = null;    // Map id -> bool, technicians only
    this.alarmTags = new Set();
    this.highlight = null;
    this.showReference = false;
    this.selector = root.querySelector("#floor-select");
    this.holder = root.querySelector("#plan");
    this.caption = root.querySelector("#plan-caption");
    this.svg = null;
  }

  setSite(site) {
    this.site = site;
    this.tagKinds = new Map((site.tags || []).map((x) => [x.id, x.kind]));
    this.tagNames = new Map((site.tags || []).map((x) => [x.id, x.name]));
    const floors = site.floors || [];
    if (!floors.some((f) => f.id === this.floor)) this.floor = floors.length ? floors[0].id : null;
    this.renderSelector();
    this.build();
  }

  /** Show floor `id` (no-op when unknown). */
  setFloor(id) {
    if (!this.site || id === this.floor) return;
    if (!(this.site.floors || []).some((f) => f.id === id)) return;
    this.floor = id;
    this.renderSelector();
    this.build();
  }

  /** Also draw reference tags (technicians): off by default, the plan shows people. */
  setShowReference(on) {
    this.showReference = on;
    this.drawTags();
  }

  setPositions(list) {
    this.positions = list || [];
    this.drawTags();
    this.drawHighlight();
  }

  /** Gateway and reader status for technicians: Map id -> online (bool); null hides it. */
  setDeviceStatus(online) {
    this.gatewayOnline = online;
    if (!this.svg) return;
    for (const g of this.svg.querySelectorAll("[data-gateway],[data-reader]")) {
      const id = g.dataset.gateway || g.dataset.reader;
      const on = online ? online.get(id) : undefined;
      g.classList.toggle("offline", on === false);
      g.classList.toggle("online", on === true);
    }
  }

  setAlarmTags(tags) {
    this.alarmTags = tags;
    this.drawTags();
  }

  /** Mark a place: {tag} (follows the tag), or {floor, x, y, r}, {zone}, or null. */
  setHighlight(h) {
    this.highlight = h;
    this.drawHighlight();
  }

  renderSelector() {
    this.selector.replaceChildren();
    for (const f of (this.site && this.site.floors) || []) {
      const b = document.createElement("button");
      b.type = "button";
      b.id = `floor-${f.id}`;
      b.dataset.floor = f.id;
      b.setAttribute("role", "tab");
      b.setAttribute("aria-selected", String(f.id === this.floor));
      b.textContent = `${f.id} · ${f.name || ""}`;
      b.addEventListener("click", () => { this.setFloor(f.id); this.onFloor(f.id); });
      this.selector.appendChild(b);
    }
  }

  bounds(floor) {
    const pts = [...(floor.outline || [])];
    for (const w of this.site.walls || []) if (w.floor === floor.id) pts.push(...w.points);
    if (!pts.length) pts.push([0, 0], [10, 10]);
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    return { minX: Math.min(...xs), maxX: Math.max(...xs), minY: Math.min(...ys), maxY: Math.max(...ys) };
  }

  /** SVG point of site metres (x east, y north). */
  P(x, y) {
    return [x - this.b.minX + MARGIN, this.b.maxY - y + MARGIN];
  }

  pts(points) {
    return points.map(([x, y]) => this.P(x, y).map((v) => v.toFixed(2)).join(",")).join(" ");
  }

  build() {
    this.holder.replaceChildren();
    this.svg = null;
    const floor = this.site && (this.site.floors || []).find((f) => f.id === this.floor);
    if (!floor) {
      const p = document.createElement("p");
      p.textContent = t("plan.none");
      this.holder.appendChild(p);
      return;
    }
    this.b = this.bounds(floor);
    const w = this.b.maxX - this.b.minX + 2 * MARGIN;
    const h = this.b.maxY - this.b.minY + 2 * MARGIN;
    const svg = el("svg", { viewBox: `0 0 ${w.toFixed(2)} ${h.toFixed(2)}`, role: "img",
      "aria-label": `${t("plan.floor")} ${floor.id} ${floor.name || ""}`,
      preserveAspectRatio: "xMidYMid meet", "data-floor": floor.id }, this.holder);
    this.svg = svg;
    const on = (list) => (list || []).filter((x) => x.floor === floor.id);

    el("polygon", { class: "outline", points: this.pts(floor.outline || []) }, svg);
    const zones = el("g", { class: "zones" }, svg);
    // Big zones first so rooms and exits are drawn over the ward's perimeter.
    const sorted = on(this.site.zones).sort((a, b) => area(b.polygon) - area(a.polygon));
    for (const z of sorted) {
      const poly = el("polygon", { class: `zone kind-${z.kind}`, points: this.pts(z.polygon),
        "data-zone": z.id }, zones);
      el("title", {}, poly).textContent = z.name || z.id;
    }
    const walls = el("g", { class: "walls" }, svg);
    for (const wl of on(this.site.walls)) el("polyline", { points: this.pts(wl.points) }, walls);
    const doors = el("g", { class: "doors" }, svg);
    for (const d of on(this.site.doors)) {
      const line = el("polyline", { class: `door kind-${d.kind}${d.lockable ? " lockable" : ""}`,
        points: this.pts(d.points), "data-door": d.id }, doors);
      el("title", {}, line).textContent = d.name || d.id;
    }
    const labels = el("g", { class: "labels", "aria-hidden": "true" }, svg);
    for (const z of sorted) {
      if (z.kind === "secure_perimeter" || z.kind === "corridor") continue;
      const [cx, cy] = this.P(...centroid(z.polygon));
      el("text", { x: cx, y: cy, class: `zone-label kind-${z.kind}` }, labels).textContent = z.id;
    }
    const devices = el("g", { class: "devices" }, svg);
    for (const g of on(this.site.gateways)) {
      const [x, y] = this.P(g.x, g.y);
      const grp = el("g", { class: "gateway", "data-gateway": g.id,
        transform: `translate(${x.toFixed(2)},${y.toFixed(2)})` }, devices);
      el("rect", { x: -0.35, y: -0.35, width: 0.7, height: 0.7 }, grp);
      el("path", { class: "cross", d: "M-0.6,-0.6L0.6,0.6M-0.6,0.6L0.6,-0.6" }, grp);
      el("title", {}, grp).textContent = g.id;
    }
    for (const r of on(this.site.readers)) {
      const [x, y] = this.P(r.x, r.y);
      const grp = el("g", { class: "reader", "data-reader": r.id,
        transform: `translate(${x.toFixed(2)},${y.toFixed(2)})` }, devices);
      el("path", { d: "M0,-0.45L0.45,0L0,0.45L-0.45,0Z" }, grp);
      el("path", { class: "cross", d: "M-0.6,-0.6L0.6,0.6M-0.6,0.6L0.6,-0.6" }, grp);
      el("title", {}, grp).textContent = `${r.id} (${r.door})`;
    }
    this.highlightLayer = el("g", { class: "highlight" }, svg);
    this.tagLayer = el("g", { class: "tags" }, svg);
    this.tagEls = new Map();
    this.setDeviceStatus(this.gatewayOnline);
    this.drawTags();
    this.drawHighlight();
  }

  drawTags() {
    if (!this.svg) return;
    const seen = new Set();
    for (const p of this.positions) {
      if (!p.known || p.floor !== this.floor || !Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
      const kind = this.tagKinds.get(p.tag) || "unknown";
      if (kind === "reference" && !this.showReference) continue;
      seen.add(p.tag);
      let g = this.tagEls.get(p.tag);
      if (!g) {
        g = el("g", { "data-tag": p.tag }, this.tagLayer);
        el("circle", { class: "unc" }, g);
        el("circle", { class: "dot", r: 0.45 }, g);
        el("text", { class: "tag-label", x: 0.7, y: -0.6 }, g).textContent = p.tag;
        el("title", {}, g);
        this.tagEls.set(p.tag, g);
      }
      g.setAttribute("class", `tag kind-${kind}${this.alarmTags.has(p.tag) ? " in-alarm" : ""}`);
      const [x, y] = this.P(p.x, p.y);
      g.setAttribute("transform", `translate(${x.toFixed(2)},${y.toFixed(2)})`);
      const unc = Number.isFinite(p.uncertainty) ? Math.max(0, p.uncertainty) : 0;
      g.firstChild.setAttribute("r", unc.toFixed(2));
      g.dataset.uncertainty = unc.toFixed(2);
      const name = this.tagNames.get(p.tag);
      g.lastChild.textContent = `${p.tag}${name ? ` ${name}` : ""} · ${p.zone || ""} ±${unc.toFixed(1)} m`;
    }
    for (const [tag, g] of this.tagEls) {
      if (!seen.has(tag)) { g.remove(); this.tagEls.delete(tag); }
    }
    if (this.caption) this.caption.textContent = t("plan.tagsShown", { n: seen.size });
  }

  /** Where the highlight is now: {x, y, r} in SVG units, or {zone}, or null. */
  highlightTarget() {
    const h = this.highlight;
    if (!h || !this.svg) return null;
    if (h.tag) {
      const p = this.positions.find((q) => q.tag === h.tag && q.known && q.floor === this.floor);
      if (p) return { x: p.x, y: p.y, r: Math.max(1.2, (p.uncertainty || 0) + 0.6) };
    }
    if (h.floor === this.floor && Number.isFinite(h.x) && Number.isFinite(h.y)) {
      return { x: h.x, y: h.y, r: Math.max(1.2, (h.r || 0) + 0.6) };
    }
    if (h.zone && this.svg.querySelector(`[data-zone="${CSS.escape(h.zone)}"]`)) return { zone: h.zone };
    return null;
  }

  drawHighlight() {
    if (!this.svg) return;
    for (const z of this.svg.querySelectorAll(".zone.highlighted")) z.classList.remove("highlighted");
    const target = this.highlightTarget();
    if (!target) { this.highlightLayer.replaceChildren(); return; }
    if (target.zone) {
      this.highlightLayer.replaceChildren();
      this.svg.querySelector(`[data-zone="${CSS.escape(target.zone)}"]`).classList.add("highlighted");
      return;
    }
    const [x, y] = this.P(target.x, target.y);
    let g = this.highlightLayer.firstChild;
    if (!g) {
      g = el("g", { id: "plan-highlight" }, this.highlightLayer);
      el("circle", { class: "ring" }, g);
      el("circle", { class: "ring pulse" }, g);
    }
    g.setAttribute("transform", `translate(${x.toFixed(2)},${y.toFixed(2)})`);
    for (const c of g.children) c.setAttribute("r", target.r.toFixed(2));
  }
}
