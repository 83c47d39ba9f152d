// A unit's last 24 h as inline SVG: the 15-minute rollups' min-max band and mean from
// get:history, the live readings since, and the temperature limits as dashed lines. Written by
// hand rather than bundling a charting library: it is one line, one band and two limits, and
// the page stays small (the whole script is one file the binary embeds).

const NS = "http://www.w3.org/2000/svg";
export const SPAN_MS = 24 * 3600 * 1000;
/** Drawn points per chart at most (live readings are bucketed down to this). */
const MAX_POINTS = 288;

/** A point: time (ms), value; `lo`/`hi` for a rollup bucket's min and max. */
export interface Point {
  t: number;
  v: number;
  lo?: number;
  hi?: number;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** Averages consecutive points into at most MAX_POINTS buckets over the span. */
function thin(points: Point[], from: number): Point[] {
  if (points.length <= MAX_POINTS) return points;
  const width = SPAN_MS / MAX_POINTS;
  const out: Point[] = [];
  let bucket: Point[] = [];
  const flush = () => {
    if (!bucket.length) return;
    const vs = bucket.map((p) => p.v);
    out.push({
      t: bucket[bucket.length - 1].t,
      v: vs.reduce((a, b) => a + b, 0) / vs.length,
      lo: Math.min(...bucket.map((p) => p.lo ?? p.v)),
      hi: Math.max(...bucket.map((p) => p.hi ?? p.v)),
    });
    bucket = [];
  };
  let edge = from + width;
  for (const p of points) {
    while (p.t >= edge) {
      flush();
      edge += width;
    }
    bucket.push(p);
  }
  flush();
  return out;
}

export function drawChart(
  target: SVGSVGElement,
  points: Point[],
  limits: { min?: number | null; max?: number | null },
  now: number,
): void {
  const from = now - SPAN_MS;
  const inSpan = points.filter((p) => p.t >= from && p.t <= now + 60_000).sort((a, b) => a.t - b.t);
  const pts = thin(inSpan, from);
  const values = pts.flatMap((p) => [p.lo ?? p.v, p.hi ?? p.v]);
  for (const l of [limits.min, limits.max]) if (l != null) values.push(l);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  const pad = Math.max(0.5, (hi - lo) * 0.12);
  lo -= pad;
  hi += pad;
  const W = 1000;
  const H = 100;
  const x = (t: number) => (((t - from) / SPAN_MS) * W).toFixed(1);
  const y = (v: number) => (H - ((v - lo) / (hi - lo)) * H).toFixed(1);
  target.replaceChildren();
  target.setAttribute("viewBox", `0 0 ${W} ${H}`);
  target.setAttribute("preserveAspectRatio", "none");
  for (const frac of [0.25, 0.5, 0.75]) {
    target.append(svg("line", { class: "grid", x1: W * frac, x2: W * frac, y1: 0, y2: H }));
  }
  const banded = pts.filter((p) => p.lo !== undefined && p.hi !== undefined);
  if (banded.length > 1) {
    const top = banded.map((p) => `${x(p.t)},${y(p.hi!)}`);
    const bottom = banded.map((p) => `${x(p.t)},${y(p.lo!)}`).reverse();
    target.append(svg("polygon", { class: "band", points: [...top, ...bottom].join(" ") }));
  }
  if (pts.length) {
    const line = pts.map((p) => `${x(p.t)},${y(p.v)}`);
    if (pts.length === 1) line.push(`${x(now)},${y(pts[0].v)}`);
    target.append(svg("polyline", { class: "line", points: line.join(" ") }));
  }
  for (const l of [limits.min, limits.max]) {
    if (l == null) continue;
    target.append(svg("line", { class: "lim", x1: 0, x2: W, y1: y(l), y2: y(l) }));
  }
}
