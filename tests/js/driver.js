#!/usr/bin/env node
// Drives many official socket.io-client sockets on behalf of sensorcast's Rust integration
// tests (tests/common/jsclient.rs), so the server is tested against the client real browsers
// and dashboards use rather than against a Rust re-implementation of the protocol.
//
// Protocol: one JSON command per line on stdin, one JSON report per line on stdout. Nothing
// else is ever written to stdout; diagnostics go to stderr. The driver never exits on a bad
// command (it reports `driver_error`) and exits cleanly when stdin closes.
//
// Commands:
//   {"op":"connect","client":"a","url":"http://127.0.0.1:PORT","auth":{..}|null,
//    "transports":["websocket"]|null,"reconnection":false}
//   {"op":"emit","client":"a","event":"e","args":[..],"ack":true,"req":7,"timeout_ms":5000}
//   {"op":"close","client":"a"}
//   {"op":"reconnect","client":"a"}
// Reports (all carry "client" except driver_error without one):
//   connect {id} | connect_error {message, data} | disconnect {reason}
//   event {event, args} | ack {req, args} | ack_timeout {req} | closed
//   driver_error {message}
"use strict";

const readline = require("node:readline");
const { io } = require("socket.io-client");

const DEFAULT_ACK_TIMEOUT_MS = 5000;

/** Sockets by client name. */
const sockets = new Map();

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function driverError(message, client) {
  const line = { kind: "driver_error", message };
  if (client !== undefined) line.client = client;
  report(line);
}

/** Looks up a socket, reporting a driver_error when the name is unknown. */
function socketFor(cmd) {
  const socket = sockets.get(cmd.client);
  if (!socket) driverError(`unknown client ${JSON.stringify(cmd.client)}`, cmd.client);
  return socket;
}

function wireReports(client, socket) {
  socket.on("connect", () => report({ client, kind: "connect", id: socket.id }));
  socket.on("connect_error", (err) =>
    report({ client, kind: "connect_error", message: err.message, data: err.data ?? null }),
  );
  socket.on("disconnect", (reason) => report({ client, kind: "disconnect", reason }));
  socket.onAny((event, ...args) => report({ client, kind: "event", event, args, at: Date.now() }));
}

function opConnect(cmd) {
  if (typeof cmd.client !== "string" || typeof cmd.url !== "string") {
    return driverError("connect needs string fields client and url", cmd.client);
  }
  if (sockets.has(cmd.client)) {
    return driverError(`client ${JSON.stringify(cmd.client)} already exists`, cmd.client);
  }
  // forceNew: every test client gets its own engine.io connection, like separate browsers.
  const opts = { reconnection: cmd.reconnection === true, forceNew: true };
  if (cmd.auth != null) opts.auth = cmd.auth;
  if (cmd.transports != null) opts.transports = cmd.transports;
  const socket = io(cmd.url, opts);
  sockets.set(cmd.client, socket);
  wireReports(cmd.client, socket);
}

function opEmit(cmd) {
  const socket = socketFor(cmd);
  if (!socket) return;
  if (typeof cmd.event !== "string") return driverError("emit needs a string event", cmd.client);
  const args = Array.isArray(cmd.args) ? cmd.args : [];
  if (!cmd.ack) {
    socket.emit(cmd.event, ...args);
    return;
  }
  const client = cmd.client;
  const req = cmd.req;
  const timeout = Number.isInteger(cmd.timeout_ms) ? cmd.timeout_ms : DEFAULT_ACK_TIMEOUT_MS;
  socket.timeout(timeout).emit(cmd.event, ...args, (err, ...resp) => {
    if (err) report({ client, kind: "ack_timeout", req });
    else report({ client, kind: "ack", req, args: resp });
  });
}

function opClose(cmd) {
  const socket = socketFor(cmd);
  if (!socket) return;
  socket.disconnect();
  report({ client: cmd.client, kind: "closed" });
}

function opReconnect(cmd) {
  const socket = socketFor(cmd);
  if (socket) socket.connect();
}

const OPS = { connect: opConnect, emit: opEmit, close: opClose, reconnect: opReconnect };

function handleLine(line) {
  if (line.trim() === "") return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return driverError(`bad JSON: ${e.message}`);
  }
  if (cmd === null || typeof cmd !== "object") return driverError("command is not an object");
  const op = OPS[cmd.op];
  if (!op) return driverError(`unknown op ${JSON.stringify(cmd.op)}`, cmd.client);
  try {
    op(cmd);
  } catch (e) {
    driverError(`${cmd.op} failed: ${e.message}`, cmd.client);
  }
}

function shutdown() {
  for (const socket of sockets.values()) socket.disconnect();
  // stdout to a pipe is synchronous on Linux, so every report is already written.
  process.exit(0);
}

process.on("uncaughtException", (e) => {
  process.stderr.write(`driver: uncaught exception: ${e.stack || e}\n`);
  driverError(`uncaught exception: ${e.message}`);
});

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", handleLine);
rl.on("close", shutdown);
