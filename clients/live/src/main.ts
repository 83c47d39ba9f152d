// The /live wallboard: the units of the viewer's organization, live, through sensorcast-client
// (resume, dedup, token refresh), with open alerts that can be acknowledged and a banner while
// the connection is lost. Served by sensorcast itself (src/web/live); this file is bundled into
// src/web/live/assets/live.js by build.mjs.

import { connect, type Alert, type AlertTriggered, type SensorcastClient, type SensorReading, type UnitDoor } from "../../js/src/index.js";
import { drawChart, SPAN_MS, type Point } from "./chart.js";
import { $, age, clock, el, label } from "./dom.js";

interface UnitInfo {
  unitId: string;
  name: string | null;
  siteId: string;
  siteName: string | null;
  state: string;
  tempMin: number | null;
  tempMax: number | null;
  humidityMin: number | null;
  humidityMax: number | null;
}

interface Session {
  token: string | null;
  organizationId: string;
  organizationName: string | null;
  role: string;
  canAcknowledge: boolean;
  staleAfterSeconds: number;
  units: UnitInfo[];
}

interface UnitView {
  info: UnitInfo;
  latest: SensorReading | null;
  door: { open: boolean; since: string } | null;
  points: Point[];
  card: HTMLElement;
  drawnAt: number;
  /** Points came since the chart was last drawn. */
  dirty: boolean;
}

/** An open alert as the server last described it. */
type OpenAlert = Alert;

let session: Session | null = null;
let client: SensorcastClient | null = null;
let history: "unknown" | "yes" | "no" = "unknown";
let clockOffset = 0; // server clock - ours, ms
const units = new Map<string, UnitView>();
const alerts = new Map<string, OpenAlert>();
const subscribedSites = new Set<string>();
const now = () => Date.now() + clockOffset;

async function fetchSession(): Promise<Session> {
  const r = await fetch("/live/session", { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) {
    banner("signin", "Signed out: the token expired. Reload the page to sign in again.");
    throw new Error("signed out");
  }
  if (!r.ok) throw new Error(`session: HTTP ${r.status}`);
  return r.json();
}

function banner(kind: "lost" | "back" | "signin" | null, text = ""): void {
  const b = $("banner");
  b.hidden = kind === null;
  b.className = `banner ${kind ?? ""}`;
  b.textContent = text;
}

/** A new session (at start and on every reconnect): units may have come or gone. */
function applySession(s: Session): void {
  session = s;
  $("org").textContent = s.organizationName ?? s.organizationId;
  const ids = new Set(s.units.map((u) => u.unitId));
  for (const id of [...units.keys()]) if (!ids.has(id)) units.delete(id);
  for (const info of s.units) {
    const v = units.get(info.unitId);
    if (v) v.info = info;
    else units.set(info.unitId, { info, latest: null, door: null, points: [], card: el("article"), drawnAt: 0, dirty: true });
  }
  layout();
  for (const site of new Set(s.units.map((u) => u.siteId))) subscribeSite(site);
}

function subscribeSite(siteId: string): void {
  if (!client || subscribedSites.has(siteId)) return;
  subscribedSites.add(siteId);
  client.subscribeSite(siteId, {
    reading: onReading,
    door: (d: UnitDoor) => {
      const v = units.get(d.unitId);
      if (v) (v.door = { open: d.open, since: d.since }), renderUnit(v);
    },
  });
}

function onReading(r: SensorReading): void {
  const v = units.get(r.unitId);
  if (!v) return;
  if (!v.latest || r.recordedAt >= v.latest.recordedAt) v.latest = r;
  if (r.door) v.door = { open: r.door.open, since: r.door.since };
  v.points.push({ t: Date.parse(r.recordedAt), v: r.temperature });
  v.dirty = true;
  const cut = now() - SPAN_MS;
  if (v.points.length > 20_000 || v.points[0].t < cut) v.points = v.points.filter((p) => p.t >= cut).slice(-20_000);
  renderUnit(v);
}

/** Units grouped by site, each site's name above its units. */
function layout(): void {
  const grid = $("units");
  const children: HTMLElement[] = [];
  let site = "";
  for (const v of units.values()) {
    if (v.info.siteId !== site) {
      site = v.info.siteId;
      children.push(el("h2", { class: "site" }, v.info.siteName ?? v.info.siteId));
    }
    children.push(v.card);
    renderUnit(v, true);
  }
  grid.replaceChildren(...(children.length ? children : [el("p", { class: "empty" }, "No units in this organization.")]));
}

/** The state shown: the engine's, or the reading's age when the engine says ok. */
function shownState(v: UnitView): string {
  const s = v.info.state;
  if (!v.latest) return s === "ok" || s === "stale" ? "no data" : s;
  const old = now() - Date.parse(v.latest.recordedAt) > (session?.staleAfterSeconds ?? 600) * 1000;
  return (s === "ok" || s === "no data") && old ? "stale" : s === "no data" ? "ok" : s;
}

function renderUnit(v: UnitView, chart = false): void {
  const r = v.latest;
  const state = shownState(v);
  v.card.className = `unit ${state.replace(" ", "")}`;
  v.card.dataset.unit = v.info.unitId;
  const value = r
    ? el("div", { class: "value" }, r.temperature.toFixed(1), el("small", {}, "°C"))
    : el("div", { class: "value" }, "–");
  const sub = el("div", { class: "sub" });
  if (r) sub.append(el("span", { class: "age" }, `${age(now() - Date.parse(r.recordedAt))} ago`));
  if (r?.humidity != null) sub.append(el("span", {}, `${r.humidity.toFixed(0)} %RH`));
  if (v.door) {
    sub.append(v.door.open
      ? el("span", { class: "open" }, `door open ${age(now() - Date.parse(v.door.since))}`)
      : el("span", {}, "door closed"));
  }
  if (r?.battery != null && r.battery < 25) sub.append(el("span", {}, `battery ${r.battery.toFixed(0)} %`));
  const lim = v.info.tempMin != null ? `limits ${v.info.tempMin} … ${v.info.tempMax} °C` : "no limits";
  let svgEl = v.card.querySelector("svg") as SVGSVGElement | null;
  if (!svgEl) svgEl = document.createElementNS("http://www.w3.org/2000/svg", "svg") as SVGSVGElement;
  svgEl.setAttribute("class", "chart");
  svgEl.setAttribute("role", "img");
  svgEl.setAttribute("aria-label", `last 24 hours, ${lim}`);
  v.card.replaceChildren(
    el("div", { class: "top" },
      el("span", { class: "name", title: v.info.unitId }, v.info.name ?? v.info.unitId),
      el("span", { class: `state ${state.replace(" ", "")}` }, label(state))),
    value,
    sub,
    svgEl,
    el("div", { class: "axis" }, el("span", {}, history === "no" ? "since page opened" : "−24 h"), el("span", {}, lim), el("span", {}, "now")),
  );
  // Charts are redrawn at most every 2 s (a burst of readings is one redraw), and every minute.
  if (chart || (v.dirty && Date.now() - v.drawnAt > 2000)) {
    v.drawnAt = Date.now();
    v.dirty = false;
    drawChart(svgEl, v.points, { min: v.info.tempMin, max: v.info.tempMax }, now());
  }
}

function renderAlerts(): void {
  const box = $("alerts");
  const list = [...alerts.values()].sort((a, b) => b.triggeredAt.localeCompare(a.triggeredAt));
  box.hidden = list.length === 0;
  // Keep what someone is typing when another alert changes.
  const typed = new Map<string, string>();
  for (const i of box.querySelectorAll<HTMLInputElement>("[data-alert] input")) {
    typed.set(i.closest<HTMLElement>("[data-alert]")!.dataset.alert!, i.value);
  }
  box.replaceChildren(...list.map(alertCard));
  for (const [id, value] of typed) {
    const i = box.querySelector<HTMLInputElement>(`[data-alert="${CSS.escape(id)}"] input`);
    if (i) i.value = value;
  }
}

function alertCard(a: OpenAlert): HTMLElement {
  const unit = units.get(a.unitId)?.info;
  const card = el("div", { class: `alert ${a.severity}`, "data-alert": a.alertId },
    el("div", { class: "what" }, a.message.includes(unit?.name ?? a.unitId) ? a.message : `${unit?.name ?? a.unitId}: ${a.message}`),
    el("div", { class: "when" }, `${label(a.alertType)} · ${a.severity} · since ${clock(new Date(a.triggeredAt))}`));
  if (a.acknowledgedBy) {
    const by = `Acknowledged by ${a.acknowledgedBy} at ${clock(new Date(a.acknowledgedAt ?? a.triggeredAt))}`;
    const comment = a.acknowledgedComment;
    card.append(el("div", { class: "acked" }, comment ? `${by}: ${comment}` : by));
  } else if (session?.canAcknowledge) {
    const input = el("input", { class: "comment", maxlength: "500", placeholder: "Corrective action taken (optional)", "aria-label": "comment" });
    const button = el("button", { class: "ack", type: "submit" }, "Acknowledge");
    const form = el("form", {}, input, button);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      button.disabled = true;
      client!.ack(a.alertId, input.value.trim() || undefined).then(
        (done) => {
          alerts.set(a.alertId, done);
          renderAlerts();
        },
        (err: Error) => {
          button.disabled = false;
          card.append(el("div", { class: "err" }, err.message));
        },
      );
    });
    card.append(form);
  }
  return card;
}

function fromTriggered(e: AlertTriggered): OpenAlert {
  return { ...e, escalationLevel: 0, escalatedAt: null, acknowledgedBy: null, acknowledgedAt: null, acknowledgedComment: null };
}

/** The last 24 h of each unit from the server's history (15-minute rollups), one at a time. */
async function loadHistory(): Promise<void> {
  for (const v of units.values()) {
    if (history === "no" || !client) return;
    try {
      const h = await client.history(v.info.unitId, new Date(now() - SPAN_MS), new Date(now()), "15m");
      history = "yes";
      const past: Point[] = (h.points as { t: string; mean: number; min: number; max: number }[])
        .map((p) => ({ t: Date.parse(p.t), v: p.mean, lo: p.min, hi: p.max }));
      const first = past.length ? past[past.length - 1].t : 0;
      v.points = [...past, ...v.points.filter((p) => p.t > first)];
      renderUnit(v, true);
    } catch (e) {
      if (/unknown event/i.test((e as Error).message)) history = "no";
    }
  }
  if (history === "no") for (const v of units.values()) renderUnit(v, true);
}

function wire(c: SensorcastClient): void {
  let lostAt: number | null = null;
  let backTimer: ReturnType<typeof setTimeout> | undefined;
  c.onStatus((s) => {
    $("conn").className = `dot ${s.state === "connected" ? "on" : "off"}`;
    if (s.state === "connected") {
      if (lostAt !== null) {
        banner("back", `Connection restored at ${clock(new Date())} (lost for ${age(Date.now() - lostAt)}).`);
        clearTimeout(backTimer);
        backTimer = setTimeout(() => banner(null), 6000);
      }
      lostAt = null;
      c.socket.emit("ping", (ms) => (clockOffset = ms - Date.now()));
      c.alerts().then((list) => {
        alerts.clear();
        for (const a of list) alerts.set(a.alertId, a);
        renderAlerts();
      }, () => undefined);
    } else if (s.state !== "connecting" && s.reason !== "token refresh" && !$("banner").classList.contains("signin")) {
      lostAt ??= Date.now();
      clearTimeout(backTimer);
      banner("lost", `Connection lost at ${clock(new Date(lostAt))}: reconnecting…${s.reason ? ` (${s.reason})` : ""}`);
    }
  });
  c.on("alert:triggered", (e) => (alerts.set(e.alertId, fromTriggered(e)), renderAlerts()));
  c.on("alert:escalated", (e) => {
    const a = alerts.get(e.alertId);
    if (a) alerts.set(e.alertId, { ...a, severity: e.severity, escalationLevel: e.escalationLevel, escalatedAt: e.escalatedAt });
    renderAlerts();
  });
  c.on("alert:resolved", (e) => (alerts.delete(e.alertId), renderAlerts()));
  c.on("alert:acknowledged", (e) => {
    const a = alerts.get(e.alertId);
    if (a) alerts.set(e.alertId, { ...a, acknowledgedBy: e.acknowledgedBy, acknowledgedAt: e.acknowledgedAt, acknowledgedComment: e.acknowledgedComment });
    renderAlerts();
  });
  c.on("unit:state:changed", (e) => {
    const v = units.get(e.unitId);
    if (v) (v.info = { ...v.info, state: e.newState }), renderUnit(v);
  });
}

async function main(): Promise<void> {
  setInterval(() => {
    $("clock").textContent = clock(new Date(now()));
    for (const v of units.values()) renderUnit(v, Date.now() - v.drawnAt > 60_000);
  }, 1000);
  const initial = await fetchSession();
  let unused: Session | null = initial;
  client = connect(location.origin, {
    // The first connect uses the session just fetched; every later one (and each refresh
    // before exp) asks again, which also brings units and states the socket does not send.
    getToken: async () => {
      const s = unused ?? (await fetchSession());
      unused = null;
      applySession(s);
      return s.token ?? "";
    },
  });
  wire(client);
  applySession(initial);
  client.onStatus((s) => s.state === "connected" && history === "unknown" && void loadHistory());
}

main().catch((e: Error) => {
  if (e.message !== "signed out") banner("lost", `The wallboard could not start: ${e.message}`);
});
