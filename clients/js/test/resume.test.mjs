// Resume: the client's transport is killed in the middle of a stream of readings (a TCP proxy
// drops the connection; the client object is untouched) and every reading still arrives exactly
// once and in order, for a unit, a site and an organization subscription alike. Gaps: the
// server replays from its store what its memory no longer holds; what it cannot replay (a
// resume sent without positions, a restart that lost its store) is filled from get:history.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connect } from "../dist/index.js";
import { Broker, Service, eventually, startProxy, token } from "./harness.mjs";

// Commits every 200 ms (10 s by default), so a test waits less for its readings to be stored.
const FAST_STORE = `[storage]\ncommit_interval = "200ms"\n`;

let broker, service, proxy;
before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker, { extra: FAST_STORE });
  proxy = await startProxy(service.port);
});
after(async () => {
  for (const c of opened) c.close();
  await proxy?.close();
  await service?.stop();
  await broker?.stop();
});

const FAST = { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 200 };

/** Every client a test opened: closed at the end even when an assertion failed, so the file ends. */
const opened = new Set();
function open(url, opts) {
  const c = connect(url, opts);
  opened.add(c);
  return c;
}

function client(role = "viewer") {
  return open(proxy.url, { token: token({ org_id: "o1", role }), io: FAST });
}

/** Collects what a subscription delivers: readings per unit and every sync report. */
function recorder() {
  const rec = { readings: [], syncs: [], errors: [] };
  rec.handlers = {
    reading: (r) => rec.readings.push(r),
    synced: (s) => rec.syncs.push(s),
    error: (e) => rec.errors.push(e),
  };
  return rec;
}

function seqsOf(rec, unitId) {
  return rec.readings.filter((r) => r.unitId === unitId).map((r) => r.seq);
}

/** 1, 2, ..., n: every reading once, in order. */
function assertComplete(seqs, n, what) {
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1), what);
}

test("a killed transport mid-stream loses no reading and doubles none (unit, site, organization)", async () => {
  const clients = [client(), client(), client()];
  const [unit, site, org] = [recorder(), recorder(), recorder()];
  clients[0].subscribeUnit("u1", unit.handlers);
  clients[1].subscribeSite("s1", site.handlers);
  clients[2].subscribeOrganization(org.handlers);
  await eventually("three subscriptions", () => [unit, site, org].every((r) => r.syncs.length === 1));

  const p1 = broker.publisher("sensors/probe-1");
  const p2 = broker.publisher("sensors/probe-2");
  const N = 240;
  for (let i = 1; i <= N; i++) {
    if (i === 21) {
      // The stream flows to every client before the first cut.
      await eventually("the first readings", () =>
        [unit, site, org].every((r) => r.readings.some((x) => x.unitId === "u1" && x.seq === 20)));
    }
    p1.send({ temperature: 4 + i / 1000 });
    p2.send({ temperature: -18 - i / 1000 });
    if (i % 2 === 0) await new Promise((r) => setTimeout(r, 10));
    if (i === 60 || i === 120 || i === 180) proxy.cut(); // the transports die, the clients live
  }
  await Promise.all([p1.end(), p2.end()]);

  await eventually("every reading at every client", () =>
    seqsOf(unit, "u1").length >= N && seqsOf(site, "u2").length >= N && seqsOf(org, "u2").length >= N).catch((e) => {
    for (const [n, rec] of Object.entries({ unit, site, org })) {
      for (const u of ["u1", "u2"]) {
        const s = seqsOf(rec, u);
        const holes = s.filter((x, i) => i > 0 && x !== s[i - 1] + 1).map((x) => x);
        console.log(n, u, s.length, "holes at", holes.slice(0, 10), "last", s.at(-1));
      }
      console.log(n, JSON.stringify(rec.syncs), rec.errors.map(String));
    }
    throw e;
  });
  assertComplete(seqsOf(unit, "u1"), N, "unit subscription, u1");
  assertComplete(seqsOf(site, "u1"), N, "site subscription, u1");
  assertComplete(seqsOf(site, "u2"), N, "site subscription, u2");
  assertComplete(seqsOf(org, "u1"), N, "organization subscription, u1");
  assertComplete(seqsOf(org, "u2"), N, "organization subscription, u2");
  assert.deepEqual(unit.readings.map((r) => r.temperature).slice(0, 3), [4.001, 4.002, 4.003]);
  for (const rec of [unit, site, org]) {
    const resumes = rec.syncs.filter((s) => s.resumed);
    assert.ok(resumes.length >= 3, `resubscribed after each cut: ${JSON.stringify(rec.syncs)}`);
    assert.ok(resumes.every((s) => s.recovered === true || s.recovered === undefined), JSON.stringify(resumes));
    assert.ok(resumes.some((s) => s.recovered === true), "some resume replayed what was missed");
    assert.deepEqual(rec.errors, []);
  }
  for (const c of clients) c.close();
});

test("a gap longer than the server's replay memory is replayed from its store", async () => {
  const c = client();
  const rec = recorder();
  c.subscribeUnit("u3", rec.handlers);
  await eventually("subscribed", () => rec.syncs.length === 1);
  const pub = broker.publisher("sensors/probe-3");
  pub.send({ temperature: 20 });
  await eventually("first reading", () => rec.readings.length === 1);

  proxy.block(true);
  proxy.cut();
  // More than realtime.history_readings (100) while the client cannot reach the server.
  for (let i = 0; i < 130; i++) pub.send({ temperature: 20 + i / 100 });
  pub.send({ temperature: 30 });
  await pub.end();
  // The server replays what its memory no longer holds from its store, once committed.
  await storedUpTo(service, "u3", 132);
  proxy.block(false);

  await eventually("resumed", () => rec.syncs.some((s) => s.resumed));
  const resume = rec.syncs.find((s) => s.resumed);
  await eventually("the newest reading", () => rec.readings.at(-1)?.temperature === 30);
  assert.equal(resume.recovered, true, JSON.stringify(resume));
  assertComplete(rec.readings.map((r) => r.seq), 132, "replayed from the store");
  assert.equal(resume.filled, 0, "the server replayed: no get:history needed");
  assert.deepEqual(resume.lost, []);
  c.close();
});

test("an organization outside the token's is never delivered", async () => {
  const c = client();
  const rec = recorder();
  c.subscribeUnit("u9", rec.handlers);
  await eventually("refused", () => rec.errors.length === 1);
  assert.equal(rec.errors[0].message, "Access denied");
  c.close();
});

test("overlapping subscriptions: after one is unsubscribed the other delivers once; after both, nothing", async () => {
  const c = client();
  const [unit, site] = [recorder(), recorder()];
  const raw = []; // every sensor:reading the server sent this socket
  c.on("sensor:reading", (r) => raw.push(r));
  const byUnit = c.subscribeUnit("u1", unit.handlers);
  const bySite = c.subscribeSite("s1", site.handlers);
  // Another client on u1: it shows when a reading has been sent to the unit's room.
  const watch = recorder();
  client().subscribeUnit("u1", watch.handlers);
  await eventually("subscribed", () => [unit, site, watch].every((r) => r.syncs.length === 1));

  const temps = (rec) => rec.readings.filter((r) => r.unitId === "u1" && r.temperature > 7.1 && r.temperature < 7.2).map((r) => r.temperature);
  const sentTimes = (t) => raw.filter((r) => r.unitId === "u1" && r.temperature === t).length;
  await broker.publish("sensors/probe-1", [{ temperature: 7.11 }]);
  await eventually("both deliver", () => temps(unit).length === 1 && temps(site).length === 1);
  assert.equal(sentTimes(7.11), 1, "one event for the socket's two rooms");

  await byUnit.unsubscribe();
  await broker.publish("sensors/probe-1", [{ temperature: 7.12 }, { temperature: 7.13 }]);
  await eventually("the site subscription", () => temps(site).length === 3);
  assert.deepEqual(temps(site), [7.11, 7.12, 7.13], "through the site, once each, in order");
  assert.deepEqual(temps(unit), [7.11], "nothing more for the unsubscribed unit");
  assert.equal(sentTimes(7.12), 1);
  assert.equal(sentTimes(7.13), 1);

  await bySite.unsubscribe();
  await broker.publish("sensors/probe-1", [{ temperature: 7.14 }]);
  await eventually("the reading sent to u1's room", () => temps(watch).includes(7.14));
  // A barrier: a reading of another unit, published after 7.14 was sent, reaches the socket;
  // anything sent to it for u1 before would have come first.
  const barrier = recorder();
  c.subscribeUnit("u3", barrier.handlers);
  await eventually("u3 subscribed", () => barrier.syncs.length === 1);
  await broker.publish("sensors/probe-3", [{ temperature: 7.99 }]);
  await eventually("the barrier reading", () => raw.some((r) => r.unitId === "u3" && r.temperature === 7.99));
  assert.equal(sentTimes(7.14), 0, "the server no longer sends u1 to this socket");
  assert.deepEqual(temps(site), [7.11, 7.12, 7.13]);
  assert.deepEqual(temps(unit), [7.11]);
  for (const rec of [unit, site, barrier]) assert.deepEqual(rec.errors, []);
});

test("a resume sent without positions is filled from get:history", async () => {
  // maxSinceBytes 0: the organization subscription resubscribes without positions (as with
  // an organization too large for the server's payload limit), so only history can fill.
  const c = open(proxy.url, { token: token({ org_id: "o1" }), io: FAST, maxSinceBytes: 0 });
  const rec = recorder();
  c.subscribeOrganization(rec.handlers);
  await eventually("subscribed", () => rec.syncs.length === 1);
  const pub = broker.publisher("sensors/probe-3");
  pub.send({ temperature: 18 });
  const u3 = () => rec.readings.filter((r) => r.unitId === "u3");
  const { seq: first } = await eventually("a reading", () => u3().find((r) => r.temperature === 18));

  proxy.block(true);
  proxy.cut();
  for (let i = 0; i < 30; i++) pub.send({ temperature: 18 + i / 10 });
  await pub.end();
  await storedUpTo(service, "u3", first + 30);
  proxy.block(false);

  await eventually("resumed", () => rec.syncs.some((s) => s.resumed));
  const resume = rec.syncs.find((s) => s.resumed);
  assert.equal(resume.recovered, undefined, "no position was sent");
  await eventually("the newest", () => u3().at(-1)?.seq === first + 30);
  const seqs = u3().map((r) => r.seq).filter((q) => q >= first);
  assert.deepEqual(seqs, Array.from({ length: 31 }, (_, i) => first + i), "filled, in order, once");
  assert.equal(resume.filled, 30, "the 30 missed readings came from history");
  assert.deepEqual(resume.lost, []);
  c.close();
});

test("a restart without its store cannot be resumed (recovered: false): the gap is filled from get:history", async () => {
  // A service of its own: its state directory (epoch, seqs and the history store) is removed
  // while it is down, so no server could replay the client's position; the readings of the new
  // epoch are in the new store, and only get:history can bring them.
  const b = await Broker.start();
  const svc = await Service.start(b, { extra: FAST_STORE });
  const px = await startProxy(svc.port);
  try {
    const c = open(px.url, { token: token({ org_id: "o1" }), io: FAST });
    const rec = recorder();
    c.subscribeUnit("u1", rec.handlers);
    await eventually("subscribed", () => rec.syncs.length === 1);
    await b.publish("sensors/probe-1", [1, 2, 3].map((i) => ({ temperature: 4 + i / 10 })));
    await eventually("three readings", () => rec.readings.length === 3);
    const before = rec.syncs[0].epoch;

    px.block(true);
    px.cut();
    await svc.halt();
    rmSync(join(svc.dir, "state"), { recursive: true, force: true });
    await svc.run();
    await b.publish("sensors/probe-1", Array.from({ length: 20 }, (_, i) => ({ temperature: 5 + i / 10 })));
    await storedUpTo(svc, "u1", 20);
    px.block(false);

    await eventually("resumed", () => rec.syncs.some((s) => s.resumed));
    const resume = rec.syncs.find((s) => s.resumed);
    assert.notEqual(resume.epoch, before, "a new store: a new epoch");
    assert.equal(resume.recovered, false, JSON.stringify(resume));
    await eventually("the newest reading", () => rec.readings.at(-1)?.id === `${resume.epoch}-u1-20`);
    const ids = (epoch, n) => Array.from({ length: n }, (_, i) => `${epoch}-u1-${i + 1}`);
    assert.deepEqual(rec.readings.map((r) => r.id), [...ids(before, 3), ...ids(resume.epoch, 20)], "once, in order");
    assert.equal(resume.filled, 20, "the new epoch's readings came from get:history");
    assert.deepEqual(resume.lost, []);
    assert.deepEqual(rec.errors, []);
    c.close();
  } finally {
    await px.close();
    await svc.stop();
    await b.stop();
  }
});

/** Waits until `unitId`'s history on `svc` (asked directly, beside any proxy) reaches `seq`. */
async function storedUpTo(svc, unitId, seq) {
  const direct = open(svc.url(), { token: token({ org_id: "o1" }), io: FAST });
  try {
    const raw = async () =>
      (await direct.history(unitId, new Date(Date.now() - 3_600_000), new Date(Date.now() + 60_000), "raw")).points;
    await eventually(`history of ${unitId} to reach seq ${seq}`, async () => (await raw()).some((r) => r.seq === seq));
  } finally {
    direct.close();
  }
}
