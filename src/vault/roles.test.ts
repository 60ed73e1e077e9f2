/**
 * The role table against a model written out by hand from azure-backup-spec.md §3.1, and scope
 * matching against a model that compares path segments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CoffreError } from '../core/errors.js';
import {
  formatScope, parseScope, permitted, ROLE_NAMES, ROLE_OPERATIONS, roleAllows, rolesGranting, scopeCovers,
  type Assignment, type RoleName, type RoleOperation,
} from './roles.js';

// The table, row by row, in its own words: Owner, Contributor, Reader, Backup Contributor, Backup Operator, Backup Reader.
const TABLE: [string, string][] = [
  ['create vault',                    '✓ ✓ ✗ ✓ ✗ ✗'],
  ['delete vault',                    '✓ ✓ ✗ ✗ ✗ ✗'],
  ['create / modify / delete policy', '✓ ✓ ✗ ✓ ✗ ✗'],
  ['enable protection',               '✓ ✓ ✗ ✓ ✓ ✗'],
  ['on-demand backup',                '✓ ✓ ✗ ✓ ✓ ✗'],
  ['restore',                         '✓ ✓ ✗ ✓ ✓ ✗'],
  ['stop protection, retain data',    '✓ ✓ ✗ ✓ ✗ ✗'],
  ['stop protection, delete data',    '✓ ✓ ✗ ✓ ✗ ✗'],
  ['change security settings',        '✓ ✓ ✗ ✓ ✗ ✗'],
  ['change redundancy',               '✓ ✓ ✗ ✓ ✓ ✗'],
  ['register machine',                '✓ ✓ ✗ ✓ ✓ ✗'],
  ['unregister machine',              '✓ ✓ ✗ ✓ ✗ ✗'],
  ['cancel job',                      '✓ ✓ ✗ ✓ ✓ ✗'],
  ['view',                            '✓ ✓ ✓ ✓ ✓ ✓'],
  ['grant access',                    '✓ ✗ ✗ ✗ ✗ ✗'],
];
const COLUMNS: RoleName[] = ['Owner', 'Contributor', 'Reader', 'Backup Contributor', 'Backup Operator', 'Backup Reader'];
const opByLabel = new Map(Object.entries(ROLE_OPERATIONS).map(([op, label]) => [label as string, op as RoleOperation]));

test('the built-in roles permit exactly the operations of the role table', () => {
  assert.equal(TABLE.length, Object.keys(ROLE_OPERATIONS).length, 'every operation has a row');
  assert.deepEqual([...ROLE_NAMES], COLUMNS);
  for (const [label, marks] of TABLE) {
    const op = opByLabel.get(label);
    assert.ok(op, `operation "${label}" exists`);
    marks.split(' ').forEach((m, i) => assert.equal(roleAllows(COLUMNS[i]!, op), m === '✓', `${COLUMNS[i]} / ${label}`));
    assert.deepEqual(rolesGranting(op), COLUMNS.filter((_, i) => marks.split(' ')[i] === '✓'));
  }
  // Operations that are a machine's or the guard's: no role grants them.
  for (const op of ['backup.upload', 'job.report', 'schedule.poll', 'machine.keys', 'guard.approve'] as const) {
    assert.deepEqual(rolesGranting(op), []);
  }
});

// ---- scopes ----
const segment = fc.constantFrom('a', 'b', 'prod', 'prod-2', 'x.y');
const scopeArb = fc.oneof(
  fc.constant('/'),
  segment.map((s) => `/subscriptions/${s}`),
  fc.tuple(segment, segment).map(([s, v]) => `/subscriptions/${s}/vaults/${v}`),
);

/** The obviously right model: an assignment reaches its own scope and every longer path below it. */
function modelCovers(assigned: string, target: string): boolean {
  const a = assigned.split('/').filter(Boolean);
  const t = target.split('/').filter(Boolean);
  return a.length <= t.length && a.every((seg, i) => seg === t[i]);
}

test('scope matching agrees with a segment-by-segment model', () => {
  fc.assert(fc.property(scopeArb, scopeArb, (a, t) => scopeCovers(a, t) === modelCovers(a, t)), { numRuns: 2000 });
  // Prefixes of names are not parents: /subscriptions/prod does not reach /subscriptions/prod-2.
  assert.equal(scopeCovers('/subscriptions/prod', '/subscriptions/prod-2/vaults/v'), false);
  assert.equal(scopeCovers('/subscriptions/prod', '/subscriptions/prod/vaults/v'), true);
  assert.equal(scopeCovers('/subscriptions/p/vaults/v', '/subscriptions/p'), false);
});

test('permitted() is "some assignment whose role allows the operation reaches the target"', () => {
  const assignment = fc.record({ role: fc.constantFrom(...COLUMNS), scope: scopeArb });
  const ops = Object.keys(ROLE_OPERATIONS) as RoleOperation[];
  fc.assert(fc.property(fc.array(assignment, { maxLength: 5 }), fc.constantFrom(...ops), scopeArb, (as: Assignment[], op, target) => {
    const row = TABLE.find(([label]) => opByLabel.get(label) === op)![1].split(' ');
    const model = as.some((a) => row[COLUMNS.indexOf(a.role)] === '✓' && modelCovers(a.scope, target));
    return permitted(as, op, target) === model;
  }), { numRuns: 3000 });
});

test('scopes are parsed strictly and printed canonically', () => {
  for (const s of ['/', '/subscriptions/a', '/subscriptions/a/vaults/b']) assert.equal(formatScope(parseScope(s)), s);
  for (const bad of ['', 'subscriptions/a', '/subscriptions', '/subscriptions/a/', '/subscriptions/a/vaults', '/subscriptions/a/vaults/b/items/c', '/subs/a', '/subscriptions/../vaults/x', '/subscriptions/a b']) {
    assert.throws(() => parseScope(bad), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument', bad);
  }
});
