// The connection: the official socket.io-client underneath, a token from `token` or
// `getToken` for every (re)connect and fetched again before the token's `exp`, typed requests
// (acks, alerts, history), and the subscriptions of `feeds.ts` resynchronised on every connect.

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import type {
  Alert,
  AlertAckAnswer,
  AlertsAnswer,
  ClientToServerEvents,
  ConnectionAck,
  HistoryAnswer,
  HistoryResolution,
  RollupPoint,
  SensorReading,
  ServerToClientEvents,
} from "./events.js";
import { Feeds, type Scope, type SubscriptionHandlers } from "./feeds.js";
import { isTokenError, refreshDelay, retryDelay, tokenExpiry } from "./token.js";

export interface ConnectOptions {
  /** A fixed JWT (it cannot be refreshed: the session ends at its `exp`). */
  token?: string;
  /** Called for every (re)connect and before the current token's `exp`. */
  getToken?: () => string | Promise<string>;
  /** Fetch a new token this long before `exp` (default: a quarter of its life, 1 s to 60 s). */
  refreshMarginMs?: number;
  /** How long a request waits for the server's answer (default 10 s). */
  timeoutMs?: number;
  /**
   * Largest resume position `subscribeOrganization` sends (JSON bytes, default 12 000: within
   * the server's default `limits.max_client_payload` of 16 KiB, about 500 units). Beyond it,
   * it resubscribes without `since` and fills the gaps from `get:history`.
   */
  maxSinceBytes?: number;
  /** Passed to socket.io-client's `io()` (transports, path, reconnection delays...). */
  io?: Partial<ManagerOptions & SocketOptions>;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

export interface Status {
  state: ConnectionState;
  /** Why: the server's `connect_error` message, a disconnect reason, "token refresh". */
  reason?: string;
}

export interface Subscription {
  readonly scope: Scope;
  unsubscribe(): Promise<void>;
}

export interface History {
  unitId: string;
  resolution: HistoryResolution;
  points: SensorReading[] | RollupPoint[];
  truncated: boolean;
}

/** An error the server answered (`{ ok: false, error }`), or a request that got no answer. */
export class SensorcastError extends Error {}

type Typed = Socket<ServerToClientEvents, ClientToServerEvents>;

export class SensorcastClient {
  /** The underlying socket (typed), for anything this class does not wrap. */
  readonly socket: Typed;
  /** The last `connection:ack` (organization, role, epoch). */
  session: ConnectionAck | null = null;
  private feeds: Feeds;
  private statusFns = new Set<(s: Status) => void>();
  private status: Status = { state: "connecting" };
  private token: string | undefined;
  private nextToken: string | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private retries = 0;
  private refreshing = false;
  private closed = false;
  private historyMissing = false;
  private timeoutMs: number;

  constructor(url: string, private opts: ConnectOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.token = opts.token;
    this.socket = io(url, {
      ...opts.io,
      autoConnect: false,
      auth: (cb: (data: object) => void) => this.auth(cb),
    }) as Typed;
    this.feeds = new Feeds({
      connected: () => this.socket.connected,
      request: (event, arg) => this.request(event, arg),
      history: (unitId, from, to) => this.rawHistory(unitId, from, to),
    }, opts.maxSinceBytes);
    const s = this.socket as unknown as Socket;
    s.on("connect", () => this.onConnect());
    s.on("disconnect", (reason: string) => this.onDisconnect(reason));
    s.on("connect_error", (err: Error) => this.onConnectError(err));
    s.on("connection:ack", (ack: ConnectionAck) => {
      this.session = ack;
      this.feeds.setEpoch(ack.epoch);
    });
    s.on("sensor:reading", (r: SensorReading) => this.feeds.onReading(r));
    s.on("unit:door", (d) => this.feeds.onDoor(d));
    this.socket.connect();
  }

  /** Connection changes: connected, reconnecting (with why), closed. Returns an unsubscriber. */
  onStatus(fn: (s: Status) => void): () => void {
    this.statusFns.add(fn);
    fn(this.status);
    return () => this.statusFns.delete(fn);
  }

  /** A typed listener for any server event (alerts, unit states...). Returns an unsubscriber. */
  on<E extends keyof ServerToClientEvents>(event: E, fn: ServerToClientEvents[E]): () => void {
    const s = this.socket as unknown as Socket;
    s.on(event as string, fn as never);
    return () => void s.off(event as string, fn as never);
  }

  subscribeUnit(unitId: string, handlers: SubscriptionHandlers): Subscription {
    return this.subscribe({ kind: "unit", id: unitId }, handlers);
  }

  subscribeSite(siteId: string, handlers: SubscriptionHandlers): Subscription {
    return this.subscribe({ kind: "site", id: siteId }, handlers);
  }

  subscribeOrganization(handlers: SubscriptionHandlers): Subscription {
    return this.subscribe({ kind: "organization" }, handlers);
  }

  /** Acknowledges an open alert, with the corrective action taken. */
  async ack(alertId: string, comment?: string): Promise<Alert> {
    const arg = comment ? { alertId, comment } : { alertId };
    return (await this.request<Extract<AlertAckAnswer, { ok: true }>>("alert:ack", arg)).alert;
  }

  /** The open alerts this token may see, oldest first. */
  async alerts(): Promise<Alert[]> {
    return (await this.request<Extract<AlertsAnswer, { ok: true }>>("get:alerts")).alerts;
  }

  /** A unit's newest reading, or null. */
  async latest(unitId: string): Promise<SensorReading | null> {
    return this.request<SensorReading | null>("get:latest", unitId);
  }

  /** Stored readings (`"raw"`) or rollups of a unit between two times (`get:history`). */
  async history(
    unitId: string,
    from: Date | string,
    to: Date | string,
    resolution?: HistoryResolution,
  ): Promise<History> {
    const iso = (t: Date | string) => (typeof t === "string" ? t : t.toISOString());
    const query = { unitId, from: iso(from), to: iso(to), ...(resolution ? { resolution } : {}) };
    const a = await this.request<Extract<HistoryAnswer, { ok: true }>>("get:history", query);
    return { unitId: a.unitId, resolution: a.resolution, points: a.points, truncated: a.truncated };
  }

  /** Ends the session: no reconnect, timers stopped. */
  close(): void {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.retryTimer);
    this.socket.disconnect();
    this.setStatus({ state: "closed" });
  }

  private subscribe(scope: Scope, handlers: SubscriptionHandlers): Subscription {
    const sub = this.feeds.add(scope, handlers);
    return { scope, unsubscribe: () => this.feeds.remove(sub) };
  }

  private request<T>(event: string, ...args: unknown[]): Promise<T> {
    return new Promise((resolve, reject) => {
      const s = this.socket.timeout(this.timeoutMs) as unknown as Socket;
      s.emit(event, ...args, (err: Error | null, answer: unknown) => {
        if (err) return reject(new SensorcastError(`${event}: no answer within ${this.timeoutMs} ms`));
        const a = answer as { ok?: boolean; error?: string } | null;
        if (a && a.ok === false) return reject(new SensorcastError(a.error ?? "refused"));
        resolve(answer as T);
      });
    });
  }

  /** History for a gap fill: null once the server has said it keeps none. */
  private async rawHistory(unitId: string, from: string, to: string): Promise<SensorReading[] | null> {
    if (this.historyMissing) return null;
    try {
      return (await this.history(unitId, from, to, "raw")).points as SensorReading[];
    } catch (e) {
      if (e instanceof SensorcastError && /unknown event/i.test(e.message)) {
        this.historyMissing = true;
        return null;
      }
      throw e;
    }
  }

  private auth(cb: (data: object) => void): void {
    const get = this.opts.getToken;
    if (!get) return cb(this.token ? { token: this.token } : {});
    const ready = this.nextToken ?? get();
    this.nextToken = null;
    Promise.resolve(ready).then(
      (t) => {
        this.token = t;
        cb({ token: t });
      },
      (e: unknown) => {
        this.setStatus({ state: "reconnecting", reason: `getToken failed: ${String(e)}` });
        cb({});
      },
    );
  }

  private onConnect(): void {
    this.retries = 0;
    this.refreshing = false;
    this.setStatus({ state: "connected" });
    this.scheduleRefresh();
    this.feeds.onConnect();
  }

  private onDisconnect(reason: string): void {
    this.feeds.onDisconnect();
    clearTimeout(this.refreshTimer);
    if (this.closed) return;
    if (this.refreshing) return this.setStatus({ state: "reconnecting", reason: "token refresh" });
    this.setStatus({ state: "reconnecting", reason });
    // The server hung up (an expired token, a shutdown): socket.io-client leaves that to us.
    if (reason === "io server disconnect") this.retryLater();
  }

  private onConnectError(err: Error): void {
    if (this.closed) return;
    this.refreshing = false;
    if (!this.opts.getToken && isTokenError(err.message)) {
      this.socket.disconnect();
      return this.setStatus({ state: "closed", reason: err.message });
    }
    this.setStatus({ state: "reconnecting", reason: err.message });
    // A refusal by the server (not a transport failure) is not retried by socket.io-client.
    if (!this.socket.active) this.retryLater();
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    const delay = Math.min(30_000, 500 * 2 ** this.retries++);
    this.retryTimer = setTimeout(() => this.closed || this.socket.connect(), delay);
  }

  /**
   * Before the token runs out: fetch a new one and reconnect with it (the feeds resume; the
   * connect arms the timer again for the new token). When getToken fails or has nothing newer
   * yet, it is asked again shortly, as long as the token in use lives.
   */
  private scheduleRefresh(delay?: number): void {
    clearTimeout(this.refreshTimer);
    const exp = tokenExpiry(this.token);
    const get = this.opts.getToken;
    if (!get || exp === null) return;
    delay ??= refreshDelay(exp, Date.now(), this.opts.refreshMarginMs);
    this.refreshTimer = setTimeout(() => void this.refresh(get, exp), delay);
  }

  private async refresh(get: () => string | Promise<string>, exp: number): Promise<void> {
    let fresh: string | null = null;
    let failure: { error: unknown } | null = null;
    try {
      fresh = await get();
    } catch (error) {
      failure = { error };
    }
    // Closed, or disconnected meanwhile: the next connect asks getToken and arms the timer.
    if (this.closed || !this.socket.connected) return;
    if (failure !== null) this.setStatus({ state: "connected", reason: `token refresh failed: ${String(failure.error)}` });
    const freshExp = fresh === null ? null : tokenExpiry(fresh);
    if (fresh !== null && (freshExp === null || freshExp > exp)) {
      this.nextToken = fresh;
      this.refreshing = true;
      this.socket.disconnect().connect();
      return;
    }
    const left = exp - Date.now();
    if (left > 0) this.scheduleRefresh(retryDelay(left));
  }

  private setStatus(s: Status): void {
    this.status = s;
    for (const fn of this.statusFns) fn(s);
  }
}

/** Connects to a sensorcast service (`http://box:3000`). */
export function connect(url: string, opts: ConnectOptions = {}): SensorcastClient {
  return new SensorcastClient(url, opts);
}
