// The subscriptions of one client and their synchronisation with the server: the first
// subscribe, the resubscribe with `since` after every reconnect, a resubscribe for a unit whose
// stream shows a hole, and a `get:history` fill when the server could not replay. Ordering and
// deduplication are the tracker's; this file decides when to sync and what to ask for.

import type { ManySubscribeAck, SensorReading, UnitDoor, UnitSubscribeAck } from "./events.js";
import { Tracker, type Position } from "./tracker.js";

export type Scope =
  | { kind: "unit"; id: string }
  | { kind: "site"; id: string }
  | { kind: "organization" };

/** After every (re)subscribe of a subscription. */
export interface SyncReport {
  /** false for the first subscribe; true for a resubscribe (reconnect, or a hole in a stream). */
  resumed: boolean;
  /** The server's `recovered` (undefined when nothing was asked to resume). */
  recovered: boolean | undefined;
  /** Readings fetched through `get:history` because the server could not replay them. */
  filled: number;
  /** Units whose missed readings could not be recovered (no history, or beyond it). */
  lost: string[];
  epoch: string;
}

export interface SubscriptionHandlers {
  /** Each reading once, in `seq` order per unit; first the unit's latest on subscribe. */
  reading?: (r: SensorReading) => void;
  /** Door changes, and the door of each covered unit after every (re)subscribe. */
  door?: (d: UnitDoor) => void;
  synced?: (s: SyncReport) => void;
  error?: (e: Error) => void;
}

/** What the feeds need from the connection. */
export interface Wire {
  connected(): boolean;
  /** Emits with an ack; rejects on timeout or `{ ok: false }`. */
  request<T>(event: string, arg: unknown): Promise<T>;
  /** Raw readings of a unit between two times, or null when the server keeps no history. */
  history(unitId: string, from: string, to: string): Promise<SensorReading[] | null>;
}


interface Sync {
  sub: Sub;
  /** Units this sync asks about: null for the whole scope. */
  units: Set<string> | null;
  /** Units whose readings this sync holds (one tracker count each). */
  touched: Set<string>;
  /** Units some of whose readings this sync delivered. */
  delivered: Set<string>;
  /** The server answered: readings that come now are live, not part of the sync. */
  answered: boolean;
  cancelled: boolean;
}

interface Sub {
  scope: Scope;
  handlers: SubscriptionHandlers;
  active: boolean;
  synced: boolean;
  inflight: Sync | null;
  queued: Sync | null;
  /** Held units of syncs a disconnect cut short, handed to the next sync. */
  carry: Set<string>;
}

function covers(scope: Scope, r: { unitId: string; siteId: string }): boolean {
  if (scope.kind === "unit") return r.unitId === scope.id;
  if (scope.kind === "site") return r.siteId === scope.id;
  return true;
}

function coversPos(scope: Scope, pos: Position): boolean {
  return scope.kind === "unit" ? pos.unitId === scope.id : pos.siteId !== null && covers(scope, pos as { unitId: string; siteId: string });
}

export class Feeds {
  private tracker = new Tracker();
  private subs: Sub[] = [];
  private epoch = "";
  private historyChain: Promise<unknown> = Promise.resolve();

  /** `maxSinceBytes`: beyond this, `subscribe:organization` is sent without `since`. */
  constructor(private wire: Wire, private maxSinceBytes = 12_000) {}

  setEpoch(epoch: string): void {
    this.epoch = epoch;
  }

  add(scope: Scope, handlers: SubscriptionHandlers): Sub {
    const sub: Sub = {
      scope, handlers, active: true, synced: false, inflight: null, queued: null, carry: new Set(),
    };
    this.subs.push(sub);
    if (this.wire.connected()) this.start(sub, null, []);
    return sub;
  }

  async remove(sub: Sub): Promise<void> {
    if (!sub.active) return;
    sub.active = false;
    this.subs = this.subs.filter((s) => s !== sub);
    for (const sync of [sub.inflight, sub.queued]) if (sync) this.release(sync);
    this.releaseUnits(sub.carry);
    sub.carry.clear();
    for (const [unitId, pos] of this.tracker.positions()) {
      if (!this.subs.some((s) => coversPos(s.scope, pos))) this.tracker.forget(unitId);
    }
    if (!this.wire.connected()) return;
    const s = sub.scope;
    const [event, arg] =
      s.kind === "unit" ? ["unsubscribe:unit", s.id] :
      s.kind === "site" ? ["unsubscribe:site", s.id] : ["unsubscribe:organization", []];
    await this.wire.request(event, arg);
  }

  /** Every connect: each subscription subscribes again, resuming where it left off. */
  onConnect(): void {
    for (const sub of this.subs) this.start(sub, null, [...sub.carry]);
  }

  /** A disconnect: syncs under way will get no answer; their held units go to the next one. */
  onDisconnect(): void {
    for (const sub of this.subs) {
      for (const sync of [sub.inflight, sub.queued]) {
        if (!sync) continue;
        sync.cancelled = true;
        for (const u of sync.touched) sub.carry.add(u);
      }
      sub.inflight = sub.queued = null;
    }
  }

  onReading(r: SensorReading): void {
    const subs = this.subs.filter((s) => covers(s.scope, r));
    if (subs.length === 0) return;
    for (const s of subs) {
      for (const sync of [s.inflight, s.queued]) {
        if (sync && !sync.answered && (!sync.units || sync.units.has(r.unitId))) this.touch(sync, r.unitId);
      }
    }
    const offer = this.tracker.offer(r);
    if (offer.kind === "deliver") this.deliver(offer.readings);
    if (offer.kind === "hole") {
      const sub = subs.find((s) => s.scope.kind === "unit") ?? subs[0];
      this.start(sub, new Set([r.unitId]), []);
    }
  }

  onDoor(d: UnitDoor): void {
    for (const s of this.subs) if (covers(s.scope, d)) call(s.handlers, "door", d);
  }

  private touch(sync: Sync, unitId: string): void {
    if (sync.touched.has(unitId)) return;
    sync.touched.add(unitId);
    this.tracker.beginSync(unitId);
  }

  private deliver(readings: SensorReading[]): void {
    for (const r of readings) {
      this.tracker.advance(r);
      for (const s of this.subs) if (covers(s.scope, r)) call(s.handlers, "reading", r);
    }
  }

  /** Starts (or queues behind the one under way) a sync of `sub` for `units` (null: all). */
  private start(sub: Sub, units: Set<string> | null, carried: string[]): void {
    if (!sub.active) return;
    let sync = sub.queued;
    if (sync && units && sync.units) for (const u of units) sync.units.add(u);
    else if (sync && !units) sync.units = null;
    if (!sync) {
      sync = { sub, units, touched: new Set(), delivered: new Set(), answered: false, cancelled: false };
      if (sub.inflight) sub.queued = sync;
    }
    for (const u of carried) if (!sync.touched.has(u)) sync.touched.add(u);
    if (carried.length) sub.carry.clear();
    for (const u of units ?? []) this.touch(sync, u);
    if (!sub.inflight) this.send(sync);
  }

  private send(sync: Sync): void {
    const sub = sync.sub;
    sub.inflight = sync;
    if (sub.queued === sync) sub.queued = null;
    const [event, arg] = this.subscribeArgs(sync);
    this.wire.request<UnitSubscribeAck | ManySubscribeAck>(event, arg).then(
      (ack) => this.answered(sync, ack),
      (err: Error) => this.failed(sync, err),
    );
  }

  private subscribeArgs(sync: Sync): [string, unknown] {
    const scope = sync.sub.scope;
    if (scope.kind === "unit") {
      const pos = this.tracker.position(scope.id);
      return ["subscribe:unit", { unitId: scope.id, since: pos ? { epoch: pos.epoch, seq: pos.seq } : undefined }];
    }
    const seqs: Record<string, number> = {};
    for (const [unitId, pos] of this.tracker.positions()) {
      if (pos.epoch !== this.epoch || !coversPos(scope, pos)) continue;
      if (sync.units && !sync.units.has(unitId)) continue;
      seqs[unitId] = pos.seq;
    }
    const since = Object.keys(seqs).length ? { epoch: this.epoch, seqs } : undefined;
    if (scope.kind === "site") return ["subscribe:site", { siteId: scope.id, since }];
    const fits = JSON.stringify(seqs).length <= this.maxSinceBytes;
    return ["subscribe:organization", since && fits ? { since } : []];
  }

  private failed(sync: Sync, err: Error): void {
    if (sync.cancelled) return;
    const sub = sync.sub;
    if (/rate limited/i.test(err.message)) {
      // Asked too fast (many holes at once): again in a second, holding the units meanwhile.
      setTimeout(() => (sync.cancelled || !sub.active ? undefined : this.send(sync)), 1000);
      return;
    }
    sub.inflight = null;
    this.release(sync);
    call(sub.handlers, "error", err);
    if (sub.queued) this.send(sub.queued);
  }

  private async answered(sync: Sync, ack: UnitSubscribeAck | ManySubscribeAck): Promise<void> {
    if (sync.cancelled || !ack.ok) return;
    const sub = sync.sub;
    sync.answered = true;
    this.epoch = ack.epoch;
    const latest: SensorReading[] = Array.isArray(ack.latest) ? ack.latest : ack.latest ? [ack.latest] : [];
    for (const r of latest) if (!sync.units || sync.units.has(r.unitId)) this.touch(sync, r.unitId);
    const resumed = sub.synced;
    if (!resumed && sub.scope.kind === "unit" && !ack.latest) {
      // Nothing yet: a resume from here asks for everything of this epoch.
      this.tracker.assume(sub.scope.id, ack.epoch, new Date().toISOString());
    }
    const report: SyncReport = { resumed, recovered: ack.recovered, filled: 0, lost: [], epoch: ack.epoch };
    const fills: Promise<void>[] = [];
    for (const unitId of sync.touched) {
      const more = latest.filter((r) => r.unitId === unitId);
      if (this.tracker.wouldLeaveHole(unitId, more, ack.epoch)) {
        fills.push(this.fill(sync, unitId, more, report));
      } else {
        this.finish(sync, unitId, more, report);
      }
    }
    await Promise.all(fills);
    if (sync.cancelled) return;
    if (!resumed) {
      // A new subscription starts from each unit's newest reading, even one other
      // subscriptions of this client were delivered before it came.
      for (const r of latest) {
        const pos = this.tracker.position(r.unitId);
        if (pos?.reading && !sync.delivered.has(r.unitId)) call(sub.handlers, "reading", pos.reading);
      }
    }
    sub.synced = true;
    sub.inflight = null;
    const doors: UnitDoor[] = "doors" in ack ? ack.doors : ack.door ? [ack.door] : [];
    for (const d of doors) call(sub.handlers, "door", d);
    call(sub.handlers, "synced", report);
    if (sub.queued && sub.active) this.send(sub.queued);
  }

  /** The server could not replay: ask its history for the unit's missed readings first. */
  private async fill(sync: Sync, unitId: string, more: SensorReading[], report: SyncReport): Promise<void> {
    const pos = this.tracker.position(unitId);
    let points: SensorReading[] | null = null;
    if (pos) {
      const from = new Date(Date.parse(pos.at) - 1000);
      const job = this.historyChain.then(() =>
        this.wire.history(unitId, from.toISOString(), new Date(Date.now() + 1000).toISOString()),
      );
      this.historyChain = job.catch(() => undefined);
      points = await job.catch((e: Error) => {
        call(sync.sub.handlers, "error", e);
        return null;
      });
    }
    if (sync.cancelled) return;
    this.finish(sync, unitId, [...more, ...(points ?? [])], report, points ?? []);
  }

  private finish(sync: Sync, unitId: string, more: SensorReading[], report: SyncReport, fromHistory: SensorReading[] = []): void {
    sync.touched.delete(unitId);
    const end = this.tracker.endSync(unitId, more, this.epoch);
    const fetched = new Set(fromHistory.map((r) => r.id));
    report.filled += end.readings.filter((r) => fetched.has(r.id)).length;
    if (end.hole) report.lost.push(unitId);
    if (end.readings.length) sync.delivered.add(unitId);
    this.deliver(end.readings);
  }

  /** Lets go of a sync's units: what they held is delivered as it is. */
  private release(sync: Sync): void {
    sync.cancelled = true;
    this.releaseUnits(sync.touched);
    sync.touched.clear();
  }

  private releaseUnits(units: Iterable<string>): void {
    for (const u of units) this.deliver(this.tracker.endSync(u, [], this.epoch).readings);
  }
}

function call<K extends keyof SubscriptionHandlers>(
  h: SubscriptionHandlers,
  name: K,
  arg: Parameters<NonNullable<SubscriptionHandlers[K]>>[0],
): void {
  const f = h[name] as ((a: typeof arg) => void) | undefined;
  if (!f) return;
  try {
    f(arg);
  } catch (e) {
    if (name !== "error") call(h, "error", e instanceof Error ? e : new Error(String(e)));
  }
}
