// `npm pack` gives a tarball a dashboard project can install: installed into a fresh directory
// beside socket.io-client, it imports, carries the protocol's types word for word (no drift
// from docs/sensorcast-events.d.ts), receives a reading from the real service, and the README's
// example type-checks there against the installed package.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Broker, REPO, Service, token } from "./harness.mjs";

const PKG = join(REPO, "clients", "js");
let broker, service, dir;
before(async () => {
  broker = await Broker.start();
  service = await Service.start(broker);
  dir = mkdtempSync(join(tmpdir(), "sensorcast-client-install-"));
});
after(async () => {
  await service?.stop();
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const npm = (args, cwd) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

test("npm pack installs into a new project and works there; the README's example type-checks", async () => {
  const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], PKG))[0];
  const files = packed.files.map((f) => f.path).sort();
  assert.ok(files.includes("dist/index.js") && files.includes("dist/index.d.ts") && files.includes("README.md"), files.join());
  assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/")), files.join());

  const app = join(dir, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const sio = JSON.parse(readFileSync(join(PKG, "node_modules", "socket.io-client", "package.json"), "utf8")).version;
  npm(["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, packed.filename), `socket.io-client@${sio}`], app);

  const types = readFileSync(join(app, "node_modules", "sensorcast-client", "dist", "events.d.ts"), "utf8");
  const source = readFileSync(join(REPO, "docs", "sensorcast-events.d.ts"), "utf8");
  assert.equal(types.slice(types.indexOf("\n") + 1), source, "docs/sensorcast-events.d.ts, word for word");
  for (const name of ["SensorReading", "ServerToClientEvents", "ClientToServerEvents", "HistoryAnswer", "Alert"]) {
    assert.match(types, new RegExp(`(interface|type) ${name}\\b`), name);
  }

  writeFileSync(
    join(app, "main.mjs"),
    `import { connect } from "sensorcast-client";
const c = connect(process.argv[2], { token: process.argv[3], io: { transports: ["websocket"] } });
c.subscribeUnit("u2", { reading: (r) => { console.log(JSON.stringify(r)); c.close(); } });
setTimeout(() => { console.error("no reading"); process.exit(1); }, 10000).unref();
`,
  );
  const run = new Promise((resolve, reject) => {
    import("node:child_process").then(({ execFile }) =>
      execFile("node", ["main.mjs", service.url(), token({ org_id: "o1" })], { cwd: app }, (e, out, err) =>
        e ? reject(new Error(err)) : resolve(out),
      ),
    );
  });
  // The installed client subscribes, then a reading is published until it is seen.
  const pub = setInterval(() => broker.publish("sensors/probe-2", [{ temperature: -19.5 }]), 300);
  try {
    const r = JSON.parse((await run).trim().split("\n")[0]);
    assert.equal(r.unitId, "u2");
    assert.equal(r.temperature, -19.5);
  } finally {
    clearInterval(pub);
  }

  // The README's example, as a dashboard project would paste it, with its page's own functions.
  const readme = readFileSync(join(PKG, "README.md"), "utf8");
  const example = readme.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(example?.includes('from "sensorcast-client"'), "the README has a ts example");
  writeFileSync(
    join(app, "example.ts"),
    `${example}
declare function banner(text: string | null): void;
declare function draw(unitId: string, temperature: number, at: string): void;
declare function warn(text: string): void;
declare function showAlert(a: { alertId: string; message: string }): void;
declare const alertId: string;
`,
  );
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "es2022", module: "es2022", moduleResolution: "bundler", lib: ["es2022", "dom"],
        strict: true, noEmit: true, types: [],
      },
      files: ["example.ts"],
    }),
  );
  const tsc = join(PKG, "node_modules", ".bin", "tsc");
  try {
    execFileSync(tsc, ["-p", "tsconfig.json"], { cwd: app, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    assert.fail(`the README's example does not type-check:\n${e.stdout}${e.stderr}`);
  }
});
