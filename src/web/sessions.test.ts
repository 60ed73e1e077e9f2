/** Dashboard sessions: cookies, expiry, CSRF comparison. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { COOKIE, IDLE_MS, MAX_AGE_MS, readCookie, sameSecret, sessionCookie, SessionStore } from './sessions.js';

describe('SessionStore', () => {
  it('finds a session by its cookie and ends it after 30 minutes idle or 12 hours in all', () => {
    let now = 0;
    const store = new SessionStore(() => now);
    const s = store.create('key', 'admin');
    const cookie = `other=1; ${COOKIE}=${s.id}`;
    assert.equal(store.get(cookie)?.key, 'key');
    now += IDLE_MS - 1;
    assert.ok(store.get(cookie), 'activity keeps it alive');
    now += IDLE_MS + 1;
    assert.equal(store.get(cookie), undefined, 'idle too long');
    const t = store.create('key', 'admin');
    const start = now;
    for (let at = start; at <= start + MAX_AGE_MS; at += IDLE_MS / 2) { now = at; assert.ok(store.get(`${COOKIE}=${t.id}`)); }
    now += 1;
    assert.equal(store.get(`${COOKIE}=${t.id}`), undefined, 'too old');
    assert.equal(store.get(`${COOKIE}=forged`), undefined);
    assert.equal(store.get(undefined), undefined);
  });

  it('makes HttpOnly, SameSite=Strict cookies (Secure over HTTPS) and compares secrets exactly', () => {
    assert.equal(sessionCookie('abc', false), `${COOKIE}=abc; Path=/; HttpOnly; SameSite=Strict`);
    assert.match(sessionCookie('abc', true), /; Secure$/);
    assert.equal(readCookie('a=1; b = 2', 'b'), '2');
    assert.equal(sameSecret('x', 'x'), true);
    assert.equal(sameSecret('x', 'xy'), false);
    assert.equal(sameSecret(undefined, 'x'), false);
  });
});
