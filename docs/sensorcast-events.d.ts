// Event contract of sensorcast's Socket.io server (see docs/protocol.md).
// Usage: `const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, { auth: { token } })`.

export interface SensorReading {
  id: string;
  seq: number;
  unitId: string;
  siteId: string;
  organizationId: string;
  deviceId: string;
  temperature: number;
  humidity: number | null;
  battery: number | null;
  signalStrength: number | null;
  recordedAt: string;
  receivedAt: string;
  source: string;
  extra: Record<string, number>;
  /** Present (true) only on a broker's retained copy, handed out because sensorcast
   * subscribed: the sensor's last value, not a sign that it is alive (docs/protocol.md). */
  retained?: true;
  /** The unit's door; absent until a door contact of the unit has reported. */
  door?: DoorState;
}

/** A unit's door: the contact that decides it (the open one, else the one changed last). */
export interface DoorState {
  deviceId: string;
  open: boolean;
  /** When sensorcast first received this state. */
  since: string;
}

/** `unit:door`: one door contact of a unit changed state (also the acks' `door`/`doors`). */
export interface UnitDoor extends DoorState {
  unitId: string;
  siteId: string;
  organizationId: string;
  /** When the contact last reported it. */
  recordedAt: string;
}

export interface ConnectionAck {
  socketId: string;
  timestamp: string;
  organizationId: string;
  role: string;
  epoch: string;
}

export interface SubscriptionError {
  entity: "unit" | "site" | "organization";
  entityId: string;
  message: "Access denied";
}

export type UnitState = "ok" | "excursion" | "alarm" | "restoring" | "offline";
export type AlertType =
  | "temperature_excursion"
  | "humidity_excursion"
  | "door_open"
  | "monitoring_interrupted"
  | "low_battery";
export type Severity = "info" | "warning" | "critical";

export interface UnitStateChanged {
  unitId: string;
  siteId: string;
  organizationId: string;
  previousState: UnitState;
  newState: UnitState;
  timestamp: string;
  reason: string;
}

export interface AlertTriggered {
  alertId: string;
  unitId: string;
  siteId: string;
  organizationId: string;
  alertType: AlertType;
  severity: Severity;
  message: string;
  /** The reading (°C, %RH), the battery (%), the seconds a door was open; null for monitoring_interrupted. */
  value: number | null;
  threshold: number | null;
  thresholdViolated: "min" | "max" | null;
  triggeredAt: string;
}

export interface AlertEscalated {
  alertId: string;
  unitId: string;
  severity: Severity;
  escalationLevel: number;
  escalatedAt: string;
}

export interface AlertResolved {
  alertId: string;
  unitId: string;
  resolvedAt: string;
}

export interface AlertAcknowledged {
  alertId: string;
  unitId: string;
  acknowledgedBy: string;
  acknowledgedAt: string;
  /** The corrective action given with `alert:ack` (trimmed, at most 500 characters); null when none. */
  acknowledgedComment: string | null;
}

/** An open alert as `get:alerts` and `alert:ack` return it. */
export interface Alert extends AlertTriggered {
  escalationLevel: number;
  escalatedAt: string | null;
  acknowledgedBy: string | null;
  acknowledgedAt: string | null;
  /** The corrective action kept with the acknowledgement; null when none (or not acknowledged). */
  acknowledgedComment: string | null;
}

export type Failure = { ok: false; error: string };
export type UnitSubscribeAck =
  | { ok: true; latest: SensorReading | null; door: UnitDoor | null; epoch: string; recovered?: boolean }
  | Failure;
export type ManySubscribeAck =
  | { ok: true; latest: SensorReading[]; doors: UnitDoor[]; epoch: string; recovered?: boolean }
  | Failure;
export type OkAck = { ok: true } | Failure;
export type AlertAckAnswer = { ok: true; alert: Alert } | Failure;
export type AlertsAnswer = { ok: true; alerts: Alert[] } | Failure;

export interface ServerToClientEvents {
  "connection:ack": (ack: ConnectionAck) => void;
  "sensor:reading": (reading: SensorReading) => void;
  "unit:door": (door: UnitDoor) => void;
  "subscription:error": (err: SubscriptionError) => void;
  "auth:expired": (info: { message: "Token expired" }) => void;
  "sensor:readings:batch": (batch: { unitId: string; readings: SensorReading[]; count: number }) => void;
  "unit:state:changed": (e: UnitStateChanged) => void;
  "alert:triggered": (e: AlertTriggered) => void;
  "alert:escalated": (e: AlertEscalated) => void;
  "alert:resolved": (e: AlertResolved) => void;
  "alert:acknowledged": (e: AlertAcknowledged) => void;
}

/** Where a client left off, for resuming (docs/protocol.md). */
export type UnitSince = { epoch: string; seq: number };
export type SiteSince = { epoch: string; seqs: Record<string, number> };

export interface ClientToServerEvents {
  "subscribe:unit": (
    unit: string | { unitId: string; since?: UnitSince },
    ack?: (a: UnitSubscribeAck) => void,
  ) => void;
  "subscribe:site": (
    site: string | { siteId: string; since?: SiteSince },
    ack?: (a: ManySubscribeAck) => void,
  ) => void;
  "subscribe:organization":
    | ((ack?: (a: ManySubscribeAck) => void) => void)
    | ((resume: { since?: SiteSince }, ack?: (a: ManySubscribeAck) => void) => void);
  "unsubscribe:unit": (unit: string | { unitId: string }, ack?: (a: OkAck) => void) => void;
  "unsubscribe:site": (site: string | { siteId: string }, ack?: (a: OkAck) => void) => void;
  "unsubscribe:organization": (ack?: (a: OkAck) => void) => void;
  "get:latest": (unitId: string, ack: (r: SensorReading | null | Failure) => void) => void;
  ping: (ack: (serverTimeMs: number) => void) => void;
  "alert:ack": (
    alert: { alertId: string; comment?: string } | string,
    ack?: (a: AlertAckAnswer) => void,
  ) => void;
  "get:alerts": (ack: (a: AlertsAnswer) => void) => void;
}

// History (docs/protocol.md, issue 13): `get:history`. Declared apart and merged into the
// interfaces above.

export type HistoryResolution = "raw" | "1m" | "15m" | "1h";

/** One rollup bucket starting at `t`: temperature count/min/max/mean, humidity mean. */
export interface RollupPoint {
  t: string;
  count: number;
  min: number;
  max: number;
  mean: number;
  humidityMean: number | null;
}

export interface HistoryQuery {
  unitId: string;
  /** ISO 8601. */
  from: string;
  to: string;
  /** Default: chosen by the server from the span. */
  resolution?: HistoryResolution;
}

export type HistoryAnswer =
  | {
      ok: true;
      unitId: string;
      resolution: HistoryResolution;
      /** `SensorReading`s for "raw", `RollupPoint`s otherwise; oldest first. */
      points: SensorReading[] | RollupPoint[];
      /** More than `limits.max_history_points` matched: the answer stops there. */
      truncated: boolean;
    }
  | Failure;

export interface ClientToServerEvents {
  "get:history": (query: HistoryQuery, ack: (a: HistoryAnswer) => void) => void;
}
