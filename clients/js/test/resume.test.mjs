// Resume: the client's transport is killed in the middle of a stream of readings (a TCP proxy
// drops the connection; the client object is untouched) and every reading still arrives exactly
// once and in order, for a unit, a site and an organization subscription alike.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../dist/index.js";
import { Broker, Service, eventually, startProxy, token } from "./harness.mjs";

let broker, service, proxy;
before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker);
  proxy = await startProxy(service.port);
});
after(async () => {
  await proxy?.close();
  await service?.stop();
  await broker?.stop();
});

const FAST = { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 200 };

function client(role = "viewer") {
  return connect(proxy.url, { token: token({ org_id: "o1", role }), io: FAST });
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

test("a gap longer than the server's replay memory: replayed from its store, or reported, never papered over", async () => {
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
  // Does the server keep history (get:history)? Asked by another client, beside the proxy.
  const direct = connect(service.url(), { token: token({ org_id: "o1" }), io: FAST });
  const day = () => direct.history("u3", new Date(Date.now() - 3_600_000), new Date(Date.now() + 60_000), "raw");
  const hasHistory = await day().then(
    () => true,
    (e) => (assert.match(e.message, /Unknown event/), false),
  );
  if (hasHistory) {
    // Readings the replay memory no longer holds are in history once committed.
    await eventually("history to hold the gap", async () => (await day()).points.length >= 132, 30_000);
  } else {
    await new Promise((r) => setTimeout(r, 300));
  }
  direct.close();
  proxy.block(false);

  await eventually("resumed", () => rec.syncs.some((s) => s.resumed));
  const resume = rec.syncs.find((s) => s.resumed);
  await eventually("the newest reading", () => rec.readings.at(-1)?.temperature === 30);
  const seqs = rec.readings.map((r) => r.seq);
  if (hasHistory) {
    // The server replays from its store what its memory no longer holds: nothing lost.
    assert.equal(resume.recovered, true, JSON.stringify(resume));
    assertComplete(seqs, 132, "replayed from the store");
    assert.deepEqual(resume.lost, []);
  } else {
    // 131 readings are more than the server's replay memory: the hole is reported, and the
    // unit continues from its newest reading, never out of order or twice.
    assert.equal(resume.recovered, false, "the server could not replay 131 readings");
    assert.deepEqual(seqs, [1, 132]);
    assert.deepEqual(resume.lost, ["u3"]);
    assert.equal(resume.filled, 0);
  }
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

test("a resume the server cannot answer is filled from get:history where the server keeps it", async () => {
  // maxSinceBytes 0: the organization subscription resubscribes without positions (as with
  // an organization too large for the server's payload limit), so only history can fill.
  const c = connect(proxy.url, { token: token({ org_id: "o1" }), io: FAST, maxSinceBytes: 0 });
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
  const direct = connect(service.url(), { token: token({ org_id: "o1" }), io: FAST });
  const hasHistory = await direct.history("u3", new Date(Date.now() - 3_600_000), new Date()).then(
    () => true,
    (e) => (assert.match(e.message, /Unknown event/), false),
  );
  if (hasHistory) {
    const stored = async () => (await direct.history("u3", new Date(Date.now() - 600_000), new Date(Date.now() + 60_000), "raw")).points;
    await eventually("history to hold the readings", async () => (await stored()).some((r) => r.seq === first + 30), 30_000);
  }
  direct.close();
  proxy.block(false);

  await eventually("resumed", () => rec.syncs.some((s) => s.resumed));
  const resume = rec.syncs.find((s) => s.resumed);
  assert.equal(resume.recovered, undefined, "no position was sent");
  await eventually("the newest", () => u3().at(-1)?.seq === first + 30);
  const seqs = u3().map((r) => r.seq).filter((q) => q >= first);
  if (hasHistory) {
    assert.deepEqual(seqs, Array.from({ length: 31 }, (_, i) => first + i), "filled, in order, once");
    assert.equal(resume.filled, 30, "the 30 missed readings came from history");
    assert.deepEqual(resume.lost, []);
  } else {
    assert.deepEqual(seqs, [first, first + 30]);
    assert.deepEqual(resume.lost, ["u3"]);
  }
  c.close();
});
