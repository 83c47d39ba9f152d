// Type-checked in CI (`npm run typecheck`, tsc --noEmit against the built declarations): a
// dashboard that handles every server event and sends every client event. A new event in
// docs/sensorcast-events.d.ts fails this check until it is handled here.
import {
  connect,
  type ClientToServerEvents,
  type History,
  type RollupPoint,
  type SensorReading,
  type ServerToClientEvents,
} from "sensorcast-client";

declare function render(line: string): void;

const client = connect("http://edge-box:3000", {
  getToken: async () => (await fetch("/my-token")).text(),
});
client.onStatus((s) => render(`${s.state} ${s.reason ?? ""}`));

const sub = client.subscribeUnit("unit-walkin-1", {
  reading: (r: SensorReading) => render(`${r.unitId} #${r.seq} ${r.temperature.toFixed(1)} °C`),
  door: (d) => render(`${d.unitId} door ${d.open ? "open" : "closed"} since ${d.since}`),
  synced: (s) => render(`resumed=${s.resumed} recovered=${String(s.recovered)} lost=${s.lost.join()}`),
  error: (e) => render(e.message),
});
client.subscribeSite("site-1", { reading: (r) => render(r.siteId) });
client.subscribeOrganization({ reading: (r) => render(String(r.humidity ?? "")) });

// Every server event, typed by the package.
const onEvent: { [E in keyof ServerToClientEvents]: ServerToClientEvents[E] } = {
  "connection:ack": (a) => render(`${a.organizationId} as ${a.role}, epoch ${a.epoch}`),
  "sensor:reading": (r) => render(r.id),
  "unit:door": (d) => render(String(d.open)),
  "subscription:error": (e) => render(`${e.entity} ${e.entityId}: ${e.message}`),
  "auth:expired": (i) => render(i.message),
  "sensor:readings:batch": (b) => render(`${b.unitId}: ${b.count}`),
  "unit:state:changed": (e) => render(`${e.unitId} ${e.previousState} -> ${e.newState}`),
  "alert:triggered": (a) => render(`${a.alertType} ${a.severity} ${a.value ?? ""} ${a.thresholdViolated ?? ""}`),
  "alert:escalated": (a) => render(`${a.alertId} level ${a.escalationLevel}`),
  "alert:resolved": (a) => render(a.resolvedAt),
  "alert:acknowledged": (a) => render(`${a.acknowledgedBy}: ${a.acknowledgedComment ?? ""}`),
};
for (const name of Object.keys(onEvent) as (keyof ServerToClientEvents)[]) {
  client.on(name, onEvent[name] as never);
}

// Every client event: the wrapped ones through the client, all of them on the typed socket.
async function wrapped(): Promise<void> {
  const open = await client.alerts();
  for (const a of open) if (!a.acknowledgedAt) await client.ack(a.alertId, "door closed, stock moved");
  const h: History = await client.history("unit-walkin-1", new Date(Date.now() - 86_400_000), new Date(), "15m");
  for (const p of h.points as RollupPoint[]) render(`${p.t} ${p.min}..${p.max} mean ${p.mean}`);
  const latest = await client.latest("unit-walkin-1");
  render(latest ? String(latest.temperature) : "no data");
  await sub.unsubscribe();
  client.close();
}
void wrapped();

const s = client.socket;
const onEmit: { [E in keyof ClientToServerEvents]: () => void } = {
  "subscribe:unit": () => s.emit("subscribe:unit", { unitId: "u", since: { epoch: "e", seq: 1 } }, (a) => a.ok && a.recovered),
  "subscribe:site": () => s.emit("subscribe:site", { siteId: "s", since: { epoch: "e", seqs: { u: 1 } } }),
  "subscribe:organization": () => s.emit("subscribe:organization", { since: { epoch: "e", seqs: {} } }, (a) => a.ok),
  "unsubscribe:unit": () => s.emit("unsubscribe:unit", "u"),
  "unsubscribe:site": () => s.emit("unsubscribe:site", { siteId: "s" }),
  "unsubscribe:organization": () => s.emit("unsubscribe:organization"),
  "get:latest": () => s.emit("get:latest", "u", (r) => r && "temperature" in r && r.seq),
  ping: () => s.emit("ping", (ms) => ms.toFixed()),
  "alert:ack": () => s.emit("alert:ack", { alertId: "a", comment: "why" }, (a) => a.ok && a.alert.acknowledgedBy),
  "get:alerts": () => s.emit("get:alerts", (a) => a.ok && a.alerts.length),
  "get:history": () =>
    s.emit("get:history", { unitId: "u", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z" }, (a) => a.ok && a.truncated),
};
Object.values(onEmit).forEach((f) => f());
