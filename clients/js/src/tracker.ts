// Where the client stands in each unit's stream of readings, and the rule that turns what the
// server sends (live readings, replays after a resubscribe, history answers, an ack's `latest`)
// into each reading delivered once and in order. Pure: no socket, no timer, so it is simple to
// reason about; `client.ts` feeds it.
//
// A unit's readings are numbered by `seq` within an `epoch` (docs/protocol.md). While a unit is
// being synchronised (a subscribe or resubscribe is waiting for its ack, or a history fill is
// running) its readings are held; when the sync ends, everything held plus what the sync brought
// is delivered in order, each reading once. Outside a sync, the next `seq` is delivered at once;
// an older one is a duplicate and dropped; a newer one (a hole) is held and asks for a sync.

import type { SensorReading } from "./events.js";

/** The last reading delivered for a unit (or, before any, where its subscription began). */
export interface Position {
  epoch: string;
  seq: number;
  unitId: string;
  siteId: string | null;
  /** The reading's earlier time (or the subscription's start), for history queries. */
  at: string;
  reading: SensorReading | null;
}

function positionOf(r: SensorReading, epoch: string): Position {
  const at = r.recordedAt < r.receivedAt ? r.recordedAt : r.receivedAt;
  return { epoch, seq: r.seq, unitId: r.unitId, siteId: r.siteId, at, reading: r };
}

interface Track {
  pos: Position | null;
  /** Readings waiting for a sync to end, by id. */
  held: Map<string, SensorReading>;
  /** Syncs under way that cover the unit. */
  syncing: number;
}

/** What `offer` did with a reading. */
export type Offer =
  | { kind: "deliver"; readings: SensorReading[] }
  | { kind: "held" }
  | { kind: "duplicate" }
  /** Held, and the unit has a hole: start a sync for it. */
  | { kind: "hole" };

/** What ending a sync gives: readings to deliver in order, and whether a hole remains. */
export interface SyncEnd {
  readings: SensorReading[];
  /** Readings are known to be missing between the previous position and what was delivered. */
  hole: boolean;
}

/** The epoch of a reading, from its id `{epoch}-{unitId}-{seq}`. */
export function epochOf(r: SensorReading): string | null {
  const tail = `-${r.unitId}-${r.seq}`;
  return r.id.endsWith(tail) ? r.id.slice(0, r.id.length - tail.length) : null;
}

export class Tracker {
  private tracks = new Map<string, Track>();

  private track(unitId: string): Track {
    let t = this.tracks.get(unitId);
    if (!t) {
      t = { pos: null, held: new Map(), syncing: 0 };
      this.tracks.set(unitId, t);
    }
    return t;
  }

  /** Every unit with a position. */
  positions(): [string, Position][] {
    const out: [string, Position][] = [];
    for (const [unitId, t] of this.tracks) if (t.pos) out.push([unitId, t.pos]);
    return out;
  }

  position(unitId: string): Position | null {
    return this.tracks.get(unitId)?.pos ?? null;
  }

  /** A unit subscribed in `epoch` that had no reading yet: everything after seq 0 is new. */
  assume(unitId: string, epoch: string, at: string): void {
    const t = this.track(unitId);
    t.pos ??= { epoch, seq: 0, unitId, siteId: null, at, reading: null };
  }

  /** Forgets a unit no subscription covers any more (a later subscribe starts afresh). */
  forget(unitId: string): void {
    this.tracks.delete(unitId);
  }

  offer(r: SensorReading): Offer {
    const t = this.track(r.unitId);
    const epoch = epochOf(r);
    if (t.pos && epoch === t.pos.epoch && r.seq <= t.pos.seq) return { kind: "duplicate" };
    if (t.syncing > 0) {
      t.held.set(r.id, r);
      return { kind: "held" };
    }
    if (!t.pos || epoch === null) {
      // The first reading of a unit nobody synchronised (a unit added to a site by a reload).
      t.pos = positionOf(r, epoch ?? "");
      return { kind: "deliver", readings: [r] };
    }
    if (epoch === t.pos.epoch && r.seq === t.pos.seq + 1) {
      return { kind: "deliver", readings: [r] };
    }
    t.held.set(r.id, r);
    return { kind: "hole" };
  }

  /** Marks a delivered reading as the unit's position (called for every delivered reading). */
  advance(r: SensorReading): void {
    const t = this.track(r.unitId);
    t.pos = positionOf(r, epochOf(r) ?? t.pos?.epoch ?? "");
  }

  beginSync(unitId: string): void {
    this.track(unitId).syncing += 1;
  }

  /**
   * Whether ending the sync of `unitId` now, with `more`, would leave a hole (so a history fill
   * is worth asking for first). Changes nothing.
   */
  wouldLeaveHole(unitId: string, more: SensorReading[], currentEpoch: string): boolean {
    const t = this.track(unitId);
    return order(t.pos, [...t.held.values(), ...more], currentEpoch).hole;
  }

  /**
   * Ends one sync of `unitId`. `more` is what the sync brought besides the held readings (the
   * ack's `latest`, history points). When another sync of the unit is still under way, nothing
   * is delivered yet. `currentEpoch` is the server's epoch now.
   */
  endSync(unitId: string, more: SensorReading[], currentEpoch: string): SyncEnd {
    const t = this.track(unitId);
    t.syncing = Math.max(0, t.syncing - 1);
    for (const r of more) if (r.unitId === unitId) t.held.set(r.id, r);
    if (t.syncing > 0) return { readings: [], hole: false };
    const all = [...t.held.values()];
    t.held.clear();
    return order(t.pos, all, currentEpoch);
  }
}

/** `readings` after `start`, each once: older epochs first (a fill across a restart), each in
 * seq order; `hole` when a seq is known to be skipped. */
function order(start: Position | null, readings: SensorReading[], currentEpoch: string): SyncEnd {
  const all = [...new Map(readings.map((r) => [r.id, r])).values()];
  const rank = (r: SensorReading) => (epochOf(r) === currentEpoch ? 1 : 0);
  all.sort((a, b) => rank(a) - rank(b) || a.seq - b.seq);
  const out: SensorReading[] = [];
  let hole = false;
  let pos = start ? { epoch: start.epoch, seq: start.seq } : null;
  for (const r of all) {
    const e = epochOf(r) ?? currentEpoch;
    if (pos && e === pos.epoch && r.seq <= pos.seq) continue;
    // Another epoch's reading from before the start (a history fill reaching back): seen.
    if (start && e !== start.epoch && r.receivedAt <= start.at) continue;
    if (pos && start && (e !== pos.epoch ? r.seq !== 1 : r.seq !== pos.seq + 1)) hole = true;
    out.push(r);
    pos = { epoch: e, seq: r.seq };
  }
  return { readings: out, hole };
}
