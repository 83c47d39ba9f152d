// /live in a real browser (Debian's chromium through playwright-core, never a downloaded one)
// against the real binary and a private mosquitto: sign-in by the page's form then the cookie, a
// reading published over MQTT on screen within a second, an alert shown and acknowledged with a
// comment (which another page gets from the server), the banner while the service is stopped
// and gone once it is back; screenshots at wall-screen and phone sizes under target/ for people
// to look at; and no page ever asked another origin for anything.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { Broker, REPO, Service, eventually, token } from "../../js/test/harness.mjs";

const SHOTS = join(REPO, "target", "live");
let broker, service, browser, page;
/**
 * Every URL a page of the browser asked for (HTTP requests and WebSockets), by every page, and
 * every request the page's Content-Security-Policy stopped before it was made (the browser logs
 * those; they never reach the request events).
 */
const requested = [];
const refused = [];
function record(p) {
  p.on("request", (r) => requested.push(r.url()));
  p.on("websocket", (ws) => requested.push(ws.url()));
  p.on("console", (m) => /Content Security Policy/i.test(m.text()) && refused.push(m.text()));
  p.on("pageerror", (e) => console.error("page error:", e.message));
  return p;
}

/** A page in a context of its own, signed in as `claims` through the cookie the form sets. */
async function signedInPage(claims) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addCookies([{ name: "sensorcast_token", value: token(claims), url: service.url() }]);
  const p = record(await context.newPage());
  await p.goto(`${service.url()}/live`);
  await p.locator(".dot.on").waitFor();
  return p;
}

before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker, { extra: "[status]\nstale_after = \"1h\"\n" });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  page = record(await browser.newPage({ viewport: { width: 1920, height: 1080 } }));
});
after(async () => {
  await browser?.close();
  await service?.stop();
  await broker?.stop();
});

const card = (unit) => page.locator(`[data-unit="${unit}"]`);

test("sign-in through the page's form keeps a cookie; without it /live is the sign-in page", async () => {
  const bare = await fetch(service.url() + "/live");
  assert.equal(bare.status, 401);
  const first = await page.goto(`${service.url()}/live`);
  assert.equal(first.status(), 401);
  await page.locator("input[name=token]").fill(token({ org_id: "o1", role: "staff", sub: "ana" }));
  const [r] = await Promise.all([page.waitForNavigation(), page.locator("button[type=submit]").click()]);
  assert.equal(r.status(), 200);
  assert.equal(new URL(page.url()).pathname, "/live");
  const cookies = await page.context().cookies();
  assert.ok(cookies.some((c) => c.name === "sensorcast_token" && c.httpOnly && c.sameSite === "Strict"));
  assert.match(r.headers()["content-security-policy"], /script-src 'self'/);
  await page.locator(".dot.on").waitFor();
  assert.equal(await page.locator("#org").textContent(), "Test Foods");
  // Only o1's units, grouped by site.
  assert.deepEqual(await page.locator("[data-unit]").evaluateAll((es) => es.map((e) => e.dataset.unit)), ["u2", "u1", "u3"]); // by name within a site
  assert.deepEqual(await page.locator("h2.site").allTextContents(), ["Kitchen", "Store"]);
});

test("a reading published over MQTT is on screen within a second", async (t) => {
  const pub = broker.publisher("sensors/probe-1");
  pub.send({ temperature: 3.1 }); // the publisher is connected once this one is shown
  await card("u1").locator(".value", { hasText: "3.1" }).waitFor();
  // Ten readings, one at a time: from the publish to the value on screen.
  const times = [];
  for (let i = 0; i < 10; i++) {
    const value = (4.2 + i / 10).toFixed(1);
    const t0 = Date.now();
    pub.send({ temperature: Number(value), humidity: 61 });
    await card("u1").locator(".value", { hasText: value }).waitFor({ timeout: 5000 });
    times.push(Date.now() - t0);
  }
  await pub.end();
  times.sort((a, b) => a - b);
  t.diagnostic(`publish to screen, ms: median ${times[5]}, max ${times[9]} (${times.join(" ")})`);
  assert.ok(times[9] < 1000, `shown after ${times[9]} ms`);
  assert.match(await card("u1").locator(".sub").textContent(), /61 %RH/);
  assert.match(await card("u1").getAttribute("class"), /\bok\b/);
});

test("an alert appears and is acknowledged with a comment; every page shows the server's comment", async () => {
  // A viewer's page, open before the alert: it may not acknowledge, and learns of the
  // acknowledgement only from the server (alert:acknowledged, then get:alerts on a reload).
  const other = await signedInPage({ org_id: "o1", role: "viewer", sub: "vic" });
  await broker.publish("sensors/probe-1", [{ temperature: 12.5 }]); // u1 allows 0..8 °C
  const alert = page.locator(".alert", { hasText: "Walk-in fridge" });
  await alert.waitFor();
  await card("u1").locator(".state", { hasText: "excursion" }).waitFor();
  const seen = other.locator(".alert", { hasText: "Walk-in fridge" });
  await seen.waitFor();
  assert.equal(await seen.locator("form, button.ack").count(), 0, "a viewer has no acknowledge form");

  const comment = "Door was left open; stock moved to the spare fridge";
  await alert.locator("input.comment").fill(`  ${comment}  `);
  await alert.locator("button.ack").click();
  const shown = `Acknowledged by ana at `;
  await alert.locator(".acked", { hasText: shown }).waitFor();
  assert.match(await alert.locator(".acked").textContent(), new RegExp(`: ${comment}$`));
  // The other page was told by the server, with the comment the server stored.
  await seen.locator(".acked", { hasText: shown }).waitFor();
  assert.match(await seen.locator(".acked").textContent(), new RegExp(`: ${comment}$`));
  // And a fresh load has it from get:alerts.
  await other.reload();
  await other.locator(".dot.on").waitFor();
  await other.locator(".alert .acked", { hasText: comment }).waitFor();
  // The server has it as sent (trimmed).
  const { connect } = await import("../../js/dist/index.js");
  const c = connect(service.url(), { token: token({ org_id: "o1" }) });
  const open = await eventually("get:alerts", () => c.alerts());
  c.close();
  assert.equal(open.length, 1);
  assert.equal(open[0].acknowledgedBy, "ana");
  assert.equal(open[0].acknowledgedComment, comment);
  await other.context().close();
});

test("a banner shows while the service is stopped and goes once it is back", async () => {
  await service.halt();
  const lost = page.locator("#banner.lost");
  await lost.waitFor({ timeout: 5000 });
  assert.match(await lost.textContent(), /Connection lost/);
  await page.screenshot({ path: join(mkdirSync(SHOTS, { recursive: true }) ?? SHOTS, "lost.png") });
  await service.run();
  await page.locator("#banner.back").waitFor({ timeout: 15_000 });
  assert.equal(await lost.count(), 0, "the lost banner is gone");
  await page.locator("#banner").waitFor({ state: "hidden", timeout: 10_000 });
  // Live again: a reading after the restart arrives.
  await broker.publish("sensors/probe-3", [{ temperature: 19.5 }]);
  await card("u3").locator(".value", { hasText: "19.5" }).waitFor();
});

test("screenshots for a wall screen and a phone", async () => {
  // A day of readings stamped over the last 24 h, so the charts have a curve to draw.
  const now = Math.floor(Date.now() / 1000);
  const day = (base, amp, i) => base + amp * Math.sin(i / 9) + ((i * 7919) % 13) / 40;
  for (const [sensor, base, amp] of [["probe-1", 4, 1.6], ["probe-2", -18.5, 1.2], ["probe-3", 19, 1.5]]) {
    const lines = Array.from({ length: 96 }, (_, i) => ({ temperature: +day(base, amp, i).toFixed(2), humidity: 55, ts: now - (96 - i) * 900 }));
    lines.push({ temperature: +day(base, amp, 96).toFixed(2), humidity: 54, battery: 80 });
    await broker.publish(`sensors/${sensor}`, lines);
  }
  await card("u2").locator(".value", { hasText: day(-18.5, 1.2, 96).toFixed(1) }).waitFor();
  // Charts redraw at most every 2 s: wait for each to draw the day.
  for (const unit of ["u1", "u2", "u3"]) {
    const points = () => card(unit).locator("polyline").getAttribute("points", { timeout: 1000 }).catch(() => "");
    await eventually(`${unit}'s chart`, async () => (await points()).split(" ").length > 50, 10_000);
  }
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, "wall.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, "phone.png"), fullPage: true });
  for (const unit of ["u1", "u2", "u3"]) {
    const polyline = (await card(unit).locator("polyline").getAttribute("points")) ?? "";
    assert.ok(polyline.split(" ").length > 50 && !polyline.includes("NaN"), `${unit}'s chart draws the day: ${polyline.slice(0, 300)}`);
  }
});

test("every request of the pages went to the service's own origin: no external asset", () => {
  const origin = new URL(service.url());
  assert.ok(requested.some((u) => u.endsWith("/live")) && requested.some((u) => u.includes("/socket.io/")), requested.join("\n"));
  const elsewhere = requested.filter((u) => {
    const url = new URL(u);
    return url.host !== origin.host || !["http:", "ws:"].includes(url.protocol);
  });
  assert.deepEqual(elsewhere, [], "requests to another origin");
  assert.deepEqual(refused, [], "requests the page's CSP stopped");
});
