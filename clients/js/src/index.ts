// sensorcast-client: a typed Socket.io client for sensorcast dashboards. See README.md.
export { connect, SensorcastClient, SensorcastError } from "./client.js";
export type { ConnectOptions, ConnectionState, History, Status, Subscription } from "./client.js";
export type { Scope, SubscriptionHandlers, SyncReport } from "./feeds.js";
export { tokenExpiry } from "./token.js";
export type * from "./events.js";
