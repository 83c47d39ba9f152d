// Tokens and alerts: getToken is asked again before `exp` so the server never has to expire the
// socket, readings flow through every refresh; a fixed token that expired closes the client with
// the server's reason; alerts arrive typed and are acknowledged with a comment by a role that
// may, refused for a viewer.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../dist/index.js";
import { Broker, Service, eventually, token } from "./harness.mjs";

let broker, service;
before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker);
});
after(async () => {
  await service?.stop();
  await broker?.stop();
});

const FAST = { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 200 };

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
