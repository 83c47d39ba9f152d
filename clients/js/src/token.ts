// Reading a JWT's `exp` (to refresh before it) without verifying anything: the server verifies,
// the client only needs to know when its token runs out.

/** The token's `exp` in epoch milliseconds, or null when it has none or is not a JWT. */
export function tokenExpiry(token: string | undefined | null): number | null {
  const part = token?.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to fetch a new token, in ms from `now`: `margin` before `exp` (default a quarter of the
 * token's remaining life, between 1 s and 60 s), never in the past.
 */
export function refreshDelay(expMs: number, now: number, margin?: number): number {
  const life = expMs - now;
  const m = margin ?? Math.min(60_000, Math.max(1_000, life / 4));
  return Math.max(0, life - m);
}

/**
 * When to ask again after a refresh that failed or brought nothing newer, `left` ms before
 * `exp`: a quarter of what is left, between 50 ms and 1 s, so several tries fit before `exp`.
 */
export function retryDelay(left: number): number {
  return Math.min(1_000, Math.max(50, left / 4));
}

/** Handshake refusals that a retry with the same static token cannot fix. */
export function isTokenError(message: string): boolean {
  return /token|organization access/i.test(message);
}
