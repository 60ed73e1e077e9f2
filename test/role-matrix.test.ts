/**
 * The role matrix through the HTTP API: every built-in role × every semantic operation, with
 * the role assigned at vault scope and at subscription scope, allowed or refused exactly as
 * the table of azure-backup-spec.md §3.1 says (model written out below, not taken from the
 * code). Prints the matrix it observed. Also: Forbidden names the missing permission, and a
 * route without an operation cannot be registered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { buildApi } from '../src/vault/http.js';
import { systemClock } from '../src/core/clock.js';
import { registerAgent } from '../src/agent/register.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { backupOptions, clientFor, credentialsFor, harness, PASSPHRASE, rawRequest, type Harness, type TestAgent } from '../testkit/harness.js';

const ROLES = ['Owner', 'Contributor', 'Reader', 'Backup Contributor', 'Backup Operator', 'Backup Reader'] as const;
type Role = typeof ROLES[number];

/** §3.1, by hand: which roles may perform each operation. */
const TABLE: Record<string, Role[]> = {
  'view': ['Owner', 'Contributor', 'Reader', 'Backup Contributor', 'Backup Operator', 'Backup Reader'],
  'create vault': ['Owner', 'Contributor', 'Backup Contributor'],
  'delete vault': ['Owner', 'Contributor'],
  'create / modify / delete policy': ['Owner', 'Contributor', 'Backup Contributor'],
  'enable protection': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'on-demand backup': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'restore': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'stop protection, retain data': ['Owner', 'Contributor', 'Backup Contributor'],
  'stop protection, delete data': ['Owner', 'Contributor', 'Backup Contributor'],
  'change security settings': ['Owner', 'Contributor', 'Backup Contributor'],
  'change redundancy': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'register machine': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'unregister machine': ['Owner', 'Contributor', 'Backup Contributor'],
  'cancel job': ['Owner', 'Contributor', 'Backup Contributor', 'Backup Operator'],
  'grant access': ['Owner'],
};

interface Fixture { sub: string; vault: string; machine: string; point: string; jobs: Record<string, string> }
interface Call { method: string; path: string; body?: unknown; target: (f: Fixture, scope: 'vault' | 'subscription') => string; ok: number; okCode?: string }

/**
 * One call per operation. `ok` is what a permitted call answers: most succeed; some are then
 * refused by the vault's own rules (an item-holding vault is neither deleted nor re-stored
 * elsewhere), which shows RBAC let them through. `target` is the scope the call acts on.
 */
const vaultTarget = (f: Fixture) => `/subscriptions/${f.sub}/vaults/${f.vault}`;
function calls(f: Fixture, s: 'vault' | 'subscription'): Record<string, Call> {
  return {
    'view': { method: 'GET', path: `/v1/items?vault=${f.vault}`, target: vaultTarget, ok: 200 },
    // At subscription scope a new vault is made; at vault scope the assigned vault itself is the
    // one "created" again (the scope covers only it), which passes RBAC and then meets VaultExists.
    'create vault': s === 'subscription'
      ? { method: 'POST', path: '/v1/vaults', body: { name: `${f.vault}-new`, subscription: f.sub }, target: () => `/subscriptions/${f.sub}/vaults/${f.vault}-new`, ok: 200 }
      : { method: 'POST', path: '/v1/vaults', body: { name: f.vault, subscription: f.sub }, target: vaultTarget, ok: 409, okCode: 'VaultExists' },
    'delete vault': { method: 'DELETE', path: `/v1/vaults/${f.vault}`, target: vaultTarget, ok: 409, okCode: 'VaultNotEmpty' },
    'create / modify / delete policy': { method: 'POST', path: '/v1/policies', body: { vault: f.vault, name: `P-${s}`, policy: { schedule: { frequency: 'Daily', times: ['03:00'] }, retention: { daily: { count: 30 } } } }, target: vaultTarget, ok: 200 },
    'enable protection': { method: 'POST', path: '/v1/policies/DefaultPolicy/assign', body: { vault: f.vault, item: 'main' }, target: vaultTarget, ok: 200 },
    'on-demand backup': { method: 'POST', path: '/v1/items/main/backup', body: { vault: f.vault }, target: vaultTarget, ok: 200 },
    'restore': { method: 'POST', path: `/v1/points/${f.point}/restores`, body: {}, target: vaultTarget, ok: 200 },
    'stop protection, retain data': { method: 'POST', path: `/v1/items/keep-${s}/stop`, body: { vault: f.vault, deleteData: false }, target: vaultTarget, ok: 200 },
    'stop protection, delete data': { method: 'POST', path: `/v1/items/gone-${s}/stop`, body: { vault: f.vault, deleteData: true }, target: vaultTarget, ok: 200 },
    'change security settings': { method: 'PUT', path: `/v1/vaults/${f.vault}/security`, body: { softDeleteDays: 21 }, target: vaultTarget, ok: 200 },
    'change redundancy': { method: 'PATCH', path: `/v1/vaults/${f.vault}`, body: { redundancy: 'LRS' }, target: vaultTarget, ok: 409, okCode: 'RedundancyLocked' },
    'register machine': { method: 'POST', path: `/v1/vaults/${f.vault}/credentials`, body: {}, target: vaultTarget, ok: 200 },
    'unregister machine': { method: 'DELETE', path: `/v1/vaults/${f.vault}/machines/${f.machine}`, target: vaultTarget, ok: 409, okCode: 'MachineHasItems' },
    'cancel job': { method: 'POST', path: `/v1/jobs/${f.jobs[s]}/cancel`, body: {}, target: vaultTarget, ok: 200 },
    'grant access': { method: 'POST', path: '/v1/role-assignments', body: { principal: 'bystander', role: 'Reader', scope: `/subscriptions/${f.sub}/vaults/${f.vault}` }, target: vaultTarget, ok: 200 },
  };
}

const covers = (assigned: string, target: string) => target === assigned || target.startsWith(assigned + '/');

/** A vault of its own per role, with a machine, a point to restore, items to stop and jobs to cancel. */
async function fixture(h: Harness, role: Role, n: number): Promise<Fixture> {
  const sub = `sub${n}`;
  const vault = `vault${n}`;
  await h.admin.createVault({ name: vault, subscription: sub });
  const agentDir = join(h.dir, `agent-${n}`);
  const state = await registerAgent({ agentDir, credentials: await credentialsFor(h.server, vault), passphrase: PASSPHRASE, machine: `m${n}` });
  const a: TestAgent = { state, keys: keysFromJSON(state.keys), client: clientFor(h.server, state.token), agentDir };
  const src = join(h.dir, `src-${n}`);
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'f.txt'), `data of ${role}`);
  const { point } = await backup(backupOptions(a, 'main', [src]));
  // Items with no point yet: a backup started and abandoned by the machine leaves the item.
  for (const name of ['keep-vault', 'keep-subscription', 'gone-vault', 'gone-subscription']) {
    const { job } = await a.client.startBackup(name, 'files', { paths: [src] });
    await a.client.finishJob(job.id, { status: 'Failed', errors: [{ code: 'Test', message: 'abandoned' }] });
  }
  const jobs: Record<string, string> = {};
  for (const s of ['vault', 'subscription']) jobs[s] = (await a.client.startBackup(`running-${s}`, 'files', { paths: [src] })).job.id;
  return { sub, vault, machine: `m${n}`, point: point.id, jobs };
}

test('every built-in role × every semantic operation, at vault and subscription scope, is allowed or refused as the table says', async () => {
  const h = await harness();
  try {
    await h.admin.createPrincipal('bystander');
    const observed = new Map<string, Map<string, boolean>>(); // op -> "role@scope" -> allowed
    const keys = new Map<string, { key: string; vault: string; sub: string }>();
    let n = 0;
    for (const role of ROLES) {
      const f = await fixture(h, role, n++);
      for (const scopeKind of ['vault', 'subscription'] as const) {
        const assigned = scopeKind === 'vault' ? `/subscriptions/${f.sub}/vaults/${f.vault}` : `/subscriptions/${f.sub}`;
        const name = `p-${n}-${scopeKind}`;
        const { key } = await h.admin.createPrincipal(name);
        await h.admin.assignRole({ principal: name, role, scope: assigned });
        keys.set(`${role}@${scopeKind}`, { key, vault: f.vault, sub: f.sub });
        for (const [op, call] of Object.entries(calls(f, scopeKind))) {
          const expected = TABLE[op]!.includes(role) && covers(assigned, call.target(f, scopeKind));
          const res = await rawRequest(h.server, call.method, call.path, { token: key, ...(call.body !== undefined ? { body: call.body } : {}) });
          const err = (res.body as { error?: { code: string; message: string; details?: { permission?: string } } }).error;
          const what = `${role} at ${scopeKind} scope, ${op}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
          if (expected) {
            assert.equal(res.status, call.ok, what);
            if (call.okCode) assert.equal(err?.code, call.okCode, what);
          } else {
            assert.equal(res.status, 403, what);
            assert.equal(err?.code, 'Forbidden', what);
            // The refusal names the operation (permission) that is missing.
            assert.equal(err?.details?.permission, op, what);
            assert.ok(err?.message.includes(`may not ${op}`), what);
          }
          if (op === 'create vault' && scopeKind === 'vault') {
            // A role on one vault does not reach a vault beside it.
            const beside = await rawRequest(h.server, 'POST', '/v1/vaults', { token: key, body: { name: `${f.vault}-beside`, subscription: f.sub } });
            assert.equal(beside.status, 403, `${role} at vault scope creating another vault`);
          }
          let row = observed.get(op);
          if (!row) observed.set(op, (row = new Map()));
          row.set(`${role}@${scopeKind}`, res.status !== 403);
        }
      }
    }
    // The matrix as observed: ✓ allowed, ✗ refused; v = role at vault scope, s = at subscription scope.
    const short: Record<Role, string> = { 'Owner': 'Owner', 'Contributor': 'Contrib', 'Reader': 'Reader', 'Backup Contributor': 'BkContrib', 'Backup Operator': 'BkOperator', 'Backup Reader': 'BkReader' };
    const lines = [['operation'.padEnd(32), ...ROLES.map((r) => `${short[r]} v/s`.padStart(15))].join('')];
    for (const [op, row] of observed) {
      lines.push([op.padEnd(32), ...ROLES.map((r) => `${row.get(`${r}@vault`) ? '✓' : '✗'} / ${row.get(`${r}@subscription`) ? '✓' : '✗'}`.padStart(15))].join(''));
    }
    console.log(`\nrole matrix observed through the HTTP API\n${lines.join('\n')}\n`);
    assert.equal(observed.size, Object.keys(TABLE).length);

    // Listings show only what a principal may view: its vault, or every vault of its subscription.
    for (const [who, expected] of [['Owner@vault', ['vault0']], ['Owner@subscription', ['vault0', 'vault0-new']]] as const) {
      const { key, vault, sub } = keys.get(who)!;
      const c = clientFor(h.server, key);
      const within = who.endsWith('@vault') ? (scope: string) => scope === `/subscriptions/${sub}/vaults/${vault}` : (scope: string) => scope === `/subscriptions/${sub}` || scope.startsWith(`/subscriptions/${sub}/`);
      assert.deepEqual((await c.listVaults()).map((v) => v.name), [...expected], who);
      const points = await c.listPoints({});
      assert.ok(points.length > 0 && points.every((pt) => pt.vault === vault), who);
      assert.ok((await c.listItems()).every((i) => i.vault === vault), who);
      assert.ok((await c.listJobs()).every((j) => expected.includes(j.vault as never)), who);
      const audit = await c.audit();
      assert.ok(audit.length > 0 && audit.every((e) => within(e.scope)), `${who}: ${JSON.stringify(audit.map((e) => e.scope))}`);
      assert.ok((await c.listAssignments()).every((a) => within(a.scope)), who);
    }
    // Without naming a vault, a principal's commands default to its only one.
    assert.equal((await clientFor(h.server, keys.get('Owner@vault')!.key).listPolicies()).length >= 1, true);
  } finally {
    await h.close();
  }
});

test('a route that names no operation cannot be registered: the server would not start with it', async () => {
  const h = await harness();
  try {
    const app = buildApi({ db: h.server.db, stores: h.server.stores, clock: systemClock, credentialsPin: null });
    assert.throws(() => app.get('/v1/unguarded', async () => ({ secret: true })), /names no operation/);
    assert.throws(() => app.post('/v1/half', { config: { auth: { op: 'view' } } }, async () => ({})), /names no target/);
    await app.close();
  } finally {
    await h.close();
  }
});
