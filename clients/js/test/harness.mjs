// Real peers for the Node tests of clients/js and clients/live: a private mosquitto on a free
// loopback port, the sensorcast binary cargo built (SENSORCAST_BIN, else target/debug, else
// target/release), HS256 tokens for it, and publishing with the real mosquitto_pub. Everything
// lives in a temp directory removed by stop(). No dependency beyond Node itself.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const SECRET = "node-test-secret-0123456789abcdef";

const WAIT_MS = 15_000;

export function binary() {
  const candidates = [
    process.env.SENSORCAST_BIN,
    join(REPO, "target", "debug", "sensorcast"),
    join(REPO, "target", "release", "sensorcast"),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no sensorcast binary (${candidates.join(", ")}): run cargo build first`);
  return found;
}

export async function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Waits until `check()` returns a truthy value (returned) or throws after `ms`. */
export async function eventually(what, check, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function b64url(s) {
  return Buffer.from(s).toString("base64url");
}

/** An HS256 JWT with `claims` over `{ sub: "user-1", exp: in an hour }`. */
export function token(claims = {}, secret = SECRET) {
  const body = { sub: "user-1", exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64url(JSON.stringify(body));
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

/** A child process that must outlive nothing: stop() kills it and waits. */
function child(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"], ...opts });
  let err = "";
  p.stderr?.on("data", (d) => (err = (err + d).slice(-20_000)));
  const exited = new Promise((r) => p.on("exit", (code, sig) => r({ code, sig })));
  return {
    proc: p,
    exited,
    stderr: () => err,
    async stop(signal = "SIGTERM") {
      if (p.exitCode === null && p.signalCode === null) p.kill(signal);
      return exited;
    },
  };
}

export class Broker {
  static async start() {
    const b = new Broker();
    b.dir = mkdtempSync(join(tmpdir(), "sensorcast-node-mosquitto-"));
    b.port = await freePort();
    writeFileSync(
      join(b.dir, "mosquitto.conf"),
      `listener ${b.port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nuser root\n`,
    );
    const exe = existsSync("/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "mosquitto";
    b.child = child(exe, ["-c", join(b.dir, "mosquitto.conf")]);
    await eventually("mosquitto to listen", () => canConnect(b.port));
    return b;
  }

  url() {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Publishes each line as one QoS 1 message on `topic`, in order, through one mosquitto_pub. */
  async publish(topic, lines) {
    const p = child("mosquitto_pub", ["-p", String(this.port), "-t", topic, "-q", "1", "-l"]);
    p.proc.stdin.end(lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
    const { code } = await p.exited;
    if (code !== 0) throw new Error(`mosquitto_pub exited ${code}: ${p.stderr()}`);
  }

  /** One mosquitto_pub kept open: `send` publishes a line (QoS 1) at once, `end` waits for all. */
  publisher(topic) {
    const p = child("mosquitto_pub", ["-p", String(this.port), "-t", topic, "-q", "1", "-l"]);
    return {
      send: (msg) => p.proc.stdin.write((typeof msg === "string" ? msg : JSON.stringify(msg)) + "\n"),
      end: async () => {
        p.proc.stdin.end();
        const { code } = await p.exited;
        if (code !== 0) throw new Error(`mosquitto_pub exited ${code}: ${p.stderr()}`);
      },
    };
  }

  async stop() {
    await this.child.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of the service, so a test can kill a client's transport (its TCP
 * connection) without touching the client: `cut()` drops every connection, `block(true)`
 * refuses new ones until `block(false)`.
 */
export async function startProxy(targetPort) {
  const { createServer: server, connect } = await import("node:net");
  const conns = new Set();
  let blocked = false;
  const srv = server((c) => {
    if (blocked) return c.destroy();
    const up = connect(targetPort, "127.0.0.1");
    const end = () => {
      c.destroy();
      up.destroy();
      conns.delete(c);
    };
    conns.add(c);
    c.pipe(up).pipe(c);
    for (const s of [c, up]) {
      s.on("error", end);
      s.on("close", end);
    }
    c.ends = end;
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const port = srv.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections: () => conns.size,
    cut() {
      for (const c of [...conns]) c.ends();
    },
    block(b) {
      blocked = b;
    },
    close() {
      for (const c of [...conns]) c.ends();
      return new Promise((r) => srv.close(r));
    },
  };
}

function canConnect(port) {
  return new Promise((res) => {
    import("node:net").then(({ connect }) => {
      const s = connect(port, "127.0.0.1");
      s.on("connect", () => (s.destroy(), res(true)));
      s.on("error", () => res(false));
    });
  });
}

/** The registry every Node test uses: o1 (sites s1: u1, u2; s2: u3) and o2 (s9: u9). */
export const REGISTRY = `
[[org]]
id = "o1"
name = "Test Foods"
[[org]]
id = "o2"
[[site]]
id = "s1"
org = "o1"
name = "Kitchen"
[[site]]
id = "s2"
org = "o1"
name = "Store"
[[site]]
id = "s9"
org = "o2"
[[unit]]
id = "u1"
site = "s1"
name = "Walk-in fridge"
temp_min = 0.0
temp_max = 8.0
[[unit]]
id = "u2"
site = "s1"
name = "Freezer"
temp_min = -25.0
temp_max = -15.0
[[unit]]
id = "u3"
site = "s2"
name = "Dry store"
[[unit]]
id = "u9"
site = "s9"
[[sensor]]
id = "probe-1"
unit = "u1"
[[sensor]]
id = "probe-2"
unit = "u2"
[[sensor]]
id = "probe-3"
unit = "u3"
[[sensor]]
id = "probe-9"
unit = "u9"
`;

/** sensorcast's config for the tests; `extra` is appended (TOML sections). */
function configText(port, brokerUrl, extra) {
  return `[http]
listen = "127.0.0.1:${port}"
shutdown_timeout = "3s"
[mqtt]
url = "${brokerUrl}"
client_id = "sensorcast-node-${process.pid}-${port}"
reconnect_min = "100ms"
reconnect_max = "1s"
[[mqtt.subscriptions]]
topic = "sensors/+"
format = "json"
qos = 1
[auth]
mode = "jwt"
jwt_secret_file = "jwt.secret"
leeway = "0s"
[registry]
file = "registry.toml"
[state]
dir = "state"
[metrics]
enabled = false
${extra}
`;
}

export class Service {
  /** Starts the binary on a free port against `broker`, and waits until it is ready. */
  static async start(broker, { extra = "", registry = REGISTRY } = {}) {
    const s = new Service();
    s.broker = broker;
    s.dir = mkdtempSync(join(tmpdir(), "sensorcast-node-service-"));
    s.port = await freePort();
    writeFileSync(join(s.dir, "sensorcast.toml"), configText(s.port, broker.url(), extra));
    writeFileSync(join(s.dir, "registry.toml"), registry);
    writeFileSync(join(s.dir, "jwt.secret"), SECRET + "\n");
    await s.run();
    return s;
  }

  url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** (Re)starts the process on the same port and directory, and waits until it is ready. */
  async run() {
    this.child = child(binary(), ["--config", join(this.dir, "sensorcast.toml")], {
      cwd: this.dir,
      // The service refuses SENSORCAST_* variables it does not know (SENSORCAST_BIN is ours).
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SENSORCAST_"))),
        RUST_LOG: process.env.RUST_LOG ?? "warn",
      },
    });
    await eventually(
      "sensorcast to be ready",
      async () => {
        if (this.child.proc.exitCode !== null) throw new Error(`exited: ${this.child.stderr()}`);
        const r = await fetch(this.url() + "/health/ready").catch(() => null);
        return r?.status === 200;
      },
      20_000,
    );
  }

  /** SIGTERM, waiting for a clean exit. */
  async halt() {
    const { code, sig } = await this.child.stop("SIGTERM");
    if (code !== 0) throw new Error(`sensorcast exited ${code ?? sig}: ${this.child.stderr()}`);
  }

  async stop() {
    await this.child.stop("SIGTERM");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A json-format reading for `sensors/<sensor>`. */
export function reading(temperature, extra = {}) {
  return { temperature, ...extra };
}
