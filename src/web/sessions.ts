/**
 * Dashboard sessions, in the server's memory: a random session id in a cookie (HttpOnly,
 * SameSite=Strict) stands for the key the principal signed in with, which never reaches the
 * page's scripts. Each session also has a CSRF token that the page must send back on every
 * request that changes something. Sessions end after 30 minutes idle or 12 hours in all, on
 * sign-out, or when the key stops being valid; a server restart ends them all (signing in again
 * is cheap, and nothing secret is written to disk).
 *
 * Session times are wall-clock (`now`), not the vault's Clock, which tests move by months.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

export const COOKIE = 'coffre_session';
export const IDLE_MS = 30 * 60 * 1000;
export const MAX_AGE_MS = 12 * 60 * 60 * 1000;
export const MAX_SESSIONS = 1000;

export interface Session {
  id: string;
  /** The principal's key: the dashboard calls the API with it, so the API decides what it may see and do. */
  key: string;
  principal: string;
  csrf: string;
  createdAt: number;
  lastSeen: number;
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  create(key: string, principal: string): Session {
    const t = this.now();
    this.sweep(t);
    if (this.sessions.size >= MAX_SESSIONS) {
      // Maps iterate in insertion order: the oldest session goes.
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const s: Session = { id: randomBytes(32).toString('base64url'), key, principal, csrf: randomBytes(32).toString('base64url'), createdAt: t, lastSeen: t };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session of a cookie header, touched; undefined when absent or expired. */
  get(cookieHeader: string | undefined): Session | undefined {
    const id = readCookie(cookieHeader, COOKIE);
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.lastSeen > IDLE_MS || t - s.createdAt > MAX_AGE_MS) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastSeen = t;
    return s;
  }

  end(id: string): void { this.sessions.delete(id); }

  get size(): number { return this.sessions.size; }

  private sweep(t: number): void {
    for (const [id, s] of this.sessions) if (t - s.lastSeen > IDLE_MS || t - s.createdAt > MAX_AGE_MS) this.sessions.delete(id);
  }
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string, secure: boolean): string {
  return `${COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

export function sameSecret(a: string | undefined, b: string): boolean {
  if (typeof a !== 'string') return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
