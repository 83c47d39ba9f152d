#!/usr/bin/env node
// The status page's sign-in in a real browser (Debian's chromium through playwright-core), for
// tests/ops.rs: what a browser really sends (Origin, Sec-Fetch-Site, the form under the page's
// Content-Security-Policy) and which cookie it really keeps.
//
// Usage: node signin.js <service url, http://127.0.0.1:PORT> <owner JWT> <attacker JWT>
// Prints one JSON line: { signedIn, linked, crossSite, sameSite } (see the steps below).
"use strict";

const http = require("node:http");
const { chromium } = require("playwright-core");

const [serviceUrl, ownerToken, attackerToken] = process.argv.slice(2);

/** A page on another site (`localhost` is another site than `127.0.0.1`) or, with `host`
 *  `127.0.0.1`, another port of the same host, whose form posts a token to /signin at once. */
function evilServer() {
  const page = `<!doctype html><form id="f" method="post" action="${serviceUrl}/signin">
    <input name="token" value="${attackerToken}"><input name="next" value="/"></form>
    <script>document.getElementById("f").submit()</script>`;
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(page);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function cookiesOf(context) {
  return (await context.cookies(serviceUrl)).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
    secure: c.secure,
  }));
}

/** The page reached by the evil form from `origin`, and the cookies the service left. */
async function forged(browser, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(origin);
  await page.waitForURL(`${serviceUrl}/signin`);
  const body = await page.textContent("body");
  const result = { refused: body.includes("Sign-in refused"), cookies: await cookiesOf(context) };
  await context.close();
  return result;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
    ],
  });
  const evil = await evilServer();
  const port = evil.address().port;
  try {
    // 1. The page's own form: sign in, come back to the page, keep an HttpOnly cookie.
    const context = await browser.newContext();
    const page = await context.newPage();
    const first = await page.goto(`${serviceUrl}/`);
    await page.fill("input[name=token]", ownerToken);
    await Promise.all([page.waitForURL(`${serviceUrl}/`), page.click("button[type=submit]")]);
    const signedIn = {
      firstStatus: first.status(),
      units: (await page.textContent("body")).includes("u1"),
      cookies: await cookiesOf(context),
    };
    await context.close();

    // 2. A link carrying a token signs nobody in.
    const linkContext = await browser.newContext();
    const linkPage = await linkContext.newPage();
    const linkedAnswer = await linkPage.goto(`${serviceUrl}/?token=${attackerToken}`);
    const linked = { status: linkedAnswer.status(), cookies: await cookiesOf(linkContext) };
    await linkContext.close();

    // 3. Another site's page (localhost vs 127.0.0.1), and 4. another port of the same host.
    const crossSite = await forged(browser, `http://localhost:${port}/`);
    const sameSite = await forged(browser, `http://127.0.0.1:${port}/`);
    process.stdout.write(JSON.stringify({ signedIn, linked, crossSite, sameSite }) + "\n");
  } finally {
    evil.close();
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`signin.js: ${e.stack || e}\n`);
  process.exit(1);
});
