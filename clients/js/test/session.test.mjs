// Tokens and alerts: getToken is asked again before `exp` (after every refresh, and again soon
// when it failed or had nothing newer) so the server never has to expire the socket, readings
// flow through every refresh; a fixed token that expired closes the client with
// the server's reason; alerts arrive typed and are acknowledged with a comment by a role that
// may, refused for a viewer.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect as connectClient } from "../dist/index.js";
import { Broker, Service, eventually, token } from "./harness.mjs";

let broker, service;
before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker);
});
after(async () => {
  for (const c of opened) c.close();
  await service?.stop();
  await broker?.stop();
});

const FAST = { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 200 };

/** Every client a test opened: closed at the end even when an assertion failed, so the file ends. */
const opened = new Set();
function connect(url, opts) {
  const c = connectClient(url, opts);
  opened.add(c);
  return c;
}

test("getToken refreshes a short-lived token before exp: no expiry, no lost reading", async () => {
  const issued = [];
  const getToken = async () => {
    // Four seconds of life (JWT exp has whole seconds: three to four).
    const t = token({ org_id: "o1", role: "viewer", exp: Math.floor(Date.now() / 1000) + 4 });
    issued.push(Date.now());
    return t;
  };
  const c = connect(service.url(), { getToken, io: FAST });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  let expired = 0;
  c.on("auth:expired", () => expired++);
  const seqs = [];
  c.subscribeUnit("u2", { reading: (r) => seqs.push(r.seq) });
  await eventually("connected", () => statuses.some((s) => s.state === "connected"));

  const pub = broker.publisher("sensors/probe-2");
  const until = Date.now() + 7500;
  let sent = 0;
  while (Date.now() < until) {
    pub.send({ temperature: -18 });
    sent++;
    await new Promise((r) => setTimeout(r, 50));
  }
  await pub.end();
  await eventually("every reading", () => seqs.length === sent, 5000);

  assert.ok(issued.length >= 3, `a token for the first connect and at least two refreshes: ${issued.length}`);
  assert.equal(expired, 0, "the server never had to expire the socket");
  assert.deepEqual(seqs, Array.from({ length: sent }, (_, i) => i + 1), "each reading once, in order");
  const drops = statuses.filter((s) => s.state === "reconnecting");
  assert.ok(drops.length >= 2, "it reconnected with the new tokens");
  assert.ok(drops.every((s) => s.reason === "token refresh"), JSON.stringify(drops));
  c.close();
});

test("the refresh timer is re-armed after every refresh, a stale token and a failed getToken", async () => {
  // Tokens of three to four seconds. The first refresh is answered with the token in use (a
  // token service that has nothing newer yet), then with an error, then with a fresh token; the
  // second refresh at once. Each time getToken must be asked again before the token in use runs
  // out, or the server expires the socket.
  const calls = [];
  let current = null;
  const getToken = async () => {
    const n = calls.length + 1;
    calls.push({ at: Date.now(), exp: current && current.exp });
    if (n === 2) return current.token;
    if (n === 3) throw new Error("token service unavailable");
    const exp = Math.floor(Date.now() / 1000) + 4;
    current = { token: token({ org_id: "o1", role: "viewer", exp }), exp: exp * 1000 };
    return current.token;
  };
  const c = connect(service.url(), { getToken, io: FAST });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  let expired = 0;
  c.on("auth:expired", () => expired++);
  const seqs = [];
  c.subscribeUnit("u1", { reading: (r) => seqs.push(r.seq) });
  const synced = [];
  c.subscribeUnit("u1", { synced: (s) => synced.push(s) });
  await eventually("subscribed", () => synced.length === 1);

  const refreshes = () => statuses.filter((s) => s.reason === "token refresh").length;
  const pub = broker.publisher("sensors/probe-1");
  let sent = 0;
  // Readings all along, until a second after the second refresh reconnected.
  await eventually("two refreshes", async () => {
    pub.send({ temperature: 4 });
    sent++;
    await new Promise((r) => setTimeout(r, 50));
    return refreshes() >= 2 && c.socket.connected;
  }, 15_000);
  for (const end = Date.now() + 1000; Date.now() < end; sent++) {
    pub.send({ temperature: 4 });
    await new Promise((r) => setTimeout(r, 50));
  }
  await pub.end();
  await eventually("every reading", () => seqs.length === sent, 5000);

  assert.ok(calls.length >= 5, `connect, stale, failed, fresh, and the second refresh: ${calls.length}`);
  for (const [i, call] of calls.entries()) {
    if (i > 0) assert.ok(call.at < call.exp, `call ${i + 1} came ${call.at - call.exp} ms after the exp of the token in use`);
  }
  assert.equal(expired, 0, "the server never had to expire the socket");
  assert.deepEqual(seqs, Array.from({ length: sent }, (_, i) => i + 1), "each reading once, in order");
  assert.ok(statuses.some((s) => /token refresh failed: Error: token service unavailable/.test(s.reason)), JSON.stringify(statuses));
  assert.equal(statuses.at(-1).state, "connected");
  c.close();
});

test("a fixed token that expired closes the client with the server's reason", async () => {
  const c = connect(service.url(), {
    token: token({ org_id: "o1", exp: Math.floor(Date.now() / 1000) - 10 }),
    io: FAST,
  });
  const statuses = [];
  c.onStatus((s) => statuses.push(s));
  await eventually("closed", () => statuses.some((s) => s.state === "closed"));
  assert.equal(statuses.at(-1).reason, "Token expired");
  c.close();
});

test("alerts arrive typed and are acknowledged with a comment; a viewer may not", async () => {
  const staff = connect(service.url(), { token: token({ org_id: "o1", role: "staff", sub: "ana" }), io: FAST });
  const viewer = connect(service.url(), { token: token({ org_id: "o1", role: "viewer" }), io: FAST });
  const triggered = [];
  const acknowledged = [];
  staff.on("alert:triggered", (a) => triggered.push(a));
  viewer.on("alert:acknowledged", (a) => acknowledged.push(a));
  await eventually("both connected", () => staff.socket.connected && viewer.socket.connected);

  await broker.publish("sensors/probe-1", [{ temperature: 12.5 }]); // u1: 0..8 °C
  const alert = await eventually("alert:triggered", () => triggered[0]);
  assert.equal(alert.unitId, "u1");
  assert.equal(alert.alertType, "temperature_excursion");
  assert.deepEqual((await viewer.alerts()).map((a) => a.alertId), [alert.alertId]);

  await assert.rejects(viewer.ack(alert.alertId, "not mine"), /Access denied/);
  const acked = await staff.ack(alert.alertId, "moved the stock to the spare fridge");
  assert.equal(acked.acknowledgedBy, "ana");
  assert.equal(acked.acknowledgedComment, "moved the stock to the spare fridge");
  const event = await eventually("alert:acknowledged", () => acknowledged[0]);
  assert.equal(event.alertId, alert.alertId);
  assert.equal(event.acknowledgedBy, "ana");
  assert.equal(event.acknowledgedComment, "moved the stock to the spare fridge");
  assert.equal((await viewer.alerts())[0].acknowledgedComment, "moved the stock to the spare fridge");
  await assert.rejects(staff.ack("no-such-alert"), /Alert not found/);
  staff.close();
  viewer.close();
});
