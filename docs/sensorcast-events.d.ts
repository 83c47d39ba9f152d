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

export type Failure = { ok: false; error: string };
export type UnitSubscribeAck =
  | { ok: true; latest: SensorReading | null; epoch: string; recovered?: boolean }
  | Failure;
export type ManySubscribeAck =
  | { ok: true; latest: SensorReading[]; epoch: string; recovered?: boolean }
  | Failure;
export type OkAck = { ok: true } | Failure;

export interface ServerToClientEvents {
  "connection:ack": (ack: ConnectionAck) => void;
  "sensor:reading": (reading: SensorReading) => void;
  "subscription:error": (err: SubscriptionError) => void;
  "auth:expired": (info: { message: "Token expired" }) => void;
  "sensor:readings:batch": (batch: { unitId: string; readings: SensorReading[]; count: number }) => void;
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
  "subscribe:organization": (ack?: (a: ManySubscribeAck) => void) => void;
  "unsubscribe:unit": (unit: string | { unitId: string }, ack?: (a: OkAck) => void) => void;
  "unsubscribe:site": (site: string | { siteId: string }, ack?: (a: OkAck) => void) => void;
  "unsubscribe:organization": (ack?: (a: OkAck) => void) => void;
  "get:latest": (unitId: string, ack: (r: SensorReading | null | Failure) => void) => void;
  ping: (ack: (serverTimeMs: number) => void) => void;
}
