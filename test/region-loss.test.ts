/**
 * Losing a region: the primary region's stores and the catalog are deleted; a server started
 * with `--recover-from secondary` on a fresh data folder rebuilds the catalog from the paired
 * region; the machine registers again with its passphrase; every replicated point restores
 * byte-identical, and policies and items are back. A point that never reached the secondary
 * does not come back. Losing only the catalog, `--recover-from primary` brings every vault back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { parseConfig } from '../src/vault/config.js';
import { startServer } from '../src/vault/server.js';
import type { JobInfo, PointInfo, PolicyInfo, VaultDetails } from '../src/core/api.js';
import { cli, clientFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { startServerProcess, type ServerProcess } from '../testkit/server-process.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

async function until<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  // Another process replicates: its progress can only be polled, within a bound.
  for (let i = 0; i < 300; i++) {
    const v = await probe();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('region loss: recover the catalog from the secondary region; every replicated point restores byte-identical', async () => {
  const dir = await tempDir('coffre-region-loss-');
  let server: ServerProcess | null = null;
  try {
    const url = (name: string) => pathToFileURL(join(dir, name)).href;
    const config = join(dir, 'coffre.yaml');
    await writeFile(config, [
      'regions:',
      '  primary:',
      '    name: paris',
      '    zones:',
      ...['p1', 'p2', 'p3'].map((z) => `      - { name: ${z}, store: "${url(z)}" }`),
      '  secondary:',
      '    name: lyon',
      '    zones:',
      `      - { name: s1, store: "${url('s1')}" }`,
      '',
    ].join('\n'));
    const passFile = join(dir, 'pass.txt');
    await writeFile(passFile, PASSPHRASE + '\n');
    server = await startServerProcess(['--config', config, '--data', join(dir, 'data1')], {}, { cwd: dir, dataDir: join(dir, 'data1') });
    const admin = (s: ServerProcess, args: string[]) => cli(args, { COFFRE_SERVER: s.url, COFFRE_TOKEN: s.token, COFFRE_FINGERPRINT: s.fingerprint ?? '' }, { cwd: dir });
    const agent1 = join(dir, 'agent1');
    const agent = (agentDir: string, args: string[]) => cli(['--agent-dir', agentDir, ...args], {}, { cwd: dir });
    const ok = async (p: Promise<{ code: number | null; stdout: string; stderr: string }>) => {
      const r = await p;
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };

    await ok(admin(server, ['vault', 'create', 'geo', '--cross-region-restore']));
    await writeFile(join(dir, 'weekly.json'), JSON.stringify({ schedule: { frequency: 'Weekly', weekDays: ['Sunday'], times: ['03:00'] }, retention: { weekly: { count: 8, weekDays: ['Sunday'] } } }));
    await ok(admin(server, ['policy', 'create', 'Weekly', '--file', join(dir, 'weekly.json'), '--vault', 'geo']));
    await ok(admin(server, ['vault', 'credentials', 'geo', '--out', join(dir, 'v1.cred')]));
    await ok(agent(agent1, ['agent', 'register', '--credentials', join(dir, 'v1.cred'), '--passphrase-file', passFile, '--machine', 'm1']));

    const docs = join(dir, 'docs');
    const photos = join(dir, 'photos');
    await writeTree(docs, { 'a.md': seededText('docs1', 500), 'b/c.bin': seededBytes('docs1', MiB) });
    await writeTree(photos, { 'one.raw': seededBytes('photo', 2 * MiB) });
    const pointOf = async (args: string[]) => (JSON.parse(await ok(agent(agent1, [...args, '--json']))) as JobInfo).pointId!;
    const d1 = await pointOf(['backup', docs, '--item', 'docs']);
    await cp(docs, join(dir, 'docs-v1'), { recursive: true, preserveTimestamps: true });
    await writeTree(docs, { 'a.md': seededText('docs2', 700) });
    const d2 = await pointOf(['backup', docs, '--item', 'docs']);
    const p1 = await pointOf(['backup', photos, '--item', 'photos']);
    await ok(admin(server, ['policy', 'assign', 'Weekly', '--item', 'photos', '--vault', 'geo']));
    await until('replication', async () => {
      const v = JSON.parse(await ok(admin(server!, ['vault', 'show', 'geo', '--json']))) as VaultDetails;
      return v.replication.pendingObjects === 0 ? v : null;
    });
    // A last point while the paired region is away: it never reaches it.
    await rename(join(dir, 's1'), join(dir, 's1.away'));
    await writeTree(docs, { 'late.txt': 'written after the last replication' });
    const late = await pointOf(['backup', docs, '--item', 'docs']);
    await server.stop();
    server = null;
    await rename(join(dir, 's1.away'), join(dir, 's1'));

    // The primary region and the catalog are lost.
    for (const z of ['p1', 'p2', 'p3', 'data1']) await rm(join(dir, z), { recursive: true });

    server = await startServerProcess(['--config', config, '--data', join(dir, 'data2'), '--recover-from', 'secondary'], {}, { cwd: dir, dataDir: join(dir, 'data2') });
    assert.match(server.stderr(), /recovered 1 vault\(s\), 2 policies, 1 machine\(s\), 2 item\(s\), 3 point\(s\)/);
    const points = JSON.parse(await ok(admin(server, ['points', '--json']))) as PointInfo[];
    assert.deepEqual(points.map((p) => p.id).sort(), [d1, d2, p1].sort());
    assert.ok(!points.some((p) => p.id === late));
    assert.deepEqual(points.map((p) => [p.item, p.machine, p.replicated]).sort(), [['docs', 'm1', true], ['docs', 'm1', true], ['photos', 'm1', true]]);
    const policies = JSON.parse(await ok(admin(server, ['policy', 'list', '--vault', 'geo', '--json']))) as PolicyInfo[];
    assert.deepEqual(policies.map((p) => [p.name, p.items]), [['DefaultPolicy', ['docs']], ['Weekly', ['photos']]]);
    const vault = JSON.parse(await ok(admin(server, ['vault', 'show', 'geo', '--json']))) as VaultDetails;
    assert.deepEqual([vault.redundancy, vault.crossRegionRestore, vault.redundancyLocked], ['GRS', true, true]);

    // A new computer: new credentials, the same machine name and passphrase.
    await ok(admin(server, ['vault', 'credentials', 'geo', '--out', join(dir, 'v2.cred')]));
    const agent2 = join(dir, 'agent2');
    assert.match(await ok(agent(agent2, ['agent', 'register', '--credentials', join(dir, 'v2.cred'), '--passphrase-file', passFile, '--machine', 'm1'])), /keys recovered/);
    const restoreAndCompare = async (point: string, expected: string, name: string, extra: string[] = [], mtimes = true) => {
      const target = join(dir, `restore-${point}`);
      await mkdir(target);
      const r = JSON.parse(await ok(agent(agent2, ['restore', point, '--target', target, '--json', ...extra]))) as JobInfo;
      assert.equal(r.status, 'Completed');
      assert.deepEqual(await compareTrees(expected, join(target, name), { mtimes }), [], `point ${point}`);
    };
    // (The copy of the first version kept its bytes and modes, not its times to the nanosecond.)
    await restoreAndCompare(d1, join(dir, 'docs-v1'), 'docs', ['--from', 'secondary'], false);
    await rm(join(docs, 'late.txt'));
    await restoreAndCompare(d2, docs, 'docs');
    await restoreAndCompare(p1, photos, 'photos', ['--from', 'secondary']);
  } finally {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('catalog loss: --recover-from primary rebuilds LRS, ZRS and GRS vaults; GRS copies to the paired region resume', async () => {
  const dir = await tempDir('coffre-catalog-loss-');
  try {
    const url = (name: string) => pathToFileURL(join(dir, name)).href;
    const yaml = ['regions:', '  primary:', '    name: paris', '    zones:', ...['p1', 'p2', 'p3'].map((z) => `      - { name: ${z}, store: "${url(z)}" }`),
      '  secondary:', '    name: lyon', '    zones:', `      - { name: s1, store: "${url('s1')}" }`, ''].join('\n');
    const config = parseConfig(yaml, join(dir, 'coffre.yaml'));
    const quiet = () => undefined;
    let server = await startServer({ config, dataDir: join(dir, 'data1'), listen: '127.0.0.1:0', log: quiet });
    const src = join(dir, 'src');
    await writeTree(src, { 'a.txt': seededText('cat', 400), 'b.bin': seededBytes('cat', MiB) });
    const made: { vault: string; machine: string; point: string; agentDir: string }[] = [];
    try {
      const admin = clientFor(server);
      for (const redundancy of ['LRS', 'ZRS', 'GRS'] as const) {
        const name = redundancy.toLowerCase();
        const v = await admin.createVault({ name, redundancy });
        const c = await admin.createCredentials(name);
        const agentDir = join(dir, `agent-${name}`);
        const state = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: `m-${name}`, credentials: { kind: 'coffre-vault-credentials', version: 1, server: server.url, vault: name, vaultId: v.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: server.fingerprint } });
        const { point } = await backup({ client: clientFor(server, state.token), containerId: state.containerId, keys: keysFromJSON(state.keys), agentDir, vaultId: state.vaultId, item: 'src', paths: [src] });
        made.push({ vault: name, machine: `m-${name}`, point: point.id, agentDir });
      }
      assert.equal(await server.drainReplication(), 0);
    } finally {
      await server.close();
    }
    // The catalog is lost, and so are zone p2 and the paired region's copy.
    for (const d of ['data1', 'p2', 's1']) await rm(join(dir, d), { recursive: true });

    const lines: string[] = [];
    server = await startServer({ config, dataDir: join(dir, 'data2'), listen: '127.0.0.1:0', recoverFrom: 'primary', log: (l) => lines.push(l) });
    try {
      assert.deepEqual([server.recovery!.vaults.sort(), server.recovery!.points, server.recovery!.pointsSkipped], [['grs', 'lrs', 'zrs'], 3, []]);
      const admin = clientFor(server);
      const before = await admin.listPoints({ vault: 'grs' });
      assert.deepEqual(before.map((p) => p.replicated), [false], 'the paired region is to be filled again');
      assert.equal(await server.drainReplication(), 0);
      assert.deepEqual((await admin.listPoints({ vault: 'grs' })).map((p) => p.replicated), [true]);
      for (const m of made) {
        const c = await admin.createCredentials(m.vault);
        const vaultId = (await admin.showVault(m.vault)).id;
        const agentDir = `${m.agentDir}-new`;
        const state = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: m.machine, credentials: { kind: 'coffre-vault-credentials', version: 1, server: server.url, vault: m.vault, vaultId, secret: c.secret, expiresAt: c.expiresAt, fingerprint: server.fingerprint } });
        assert.equal(state.reattached, true);
        const target = join(dir, `restore-${m.vault}`);
        const r = await restore({ client: clientFor(server, state.token), keys: keysFromJSON(state.keys), pointId: m.point, target });
        assert.equal(r.job.status, 'Completed', `${m.vault}: ${JSON.stringify(r.errors)}`);
        assert.deepEqual(await compareTrees(src, join(target, 'src'), { mtimes: true }), [], m.vault);
        // Zone p2 came back empty: verify --repair fills it (ZRS); the others are whole.
        const v = await admin.verify({ vault: m.vault, repair: true });
        assert.equal(v.status, 'Completed', JSON.stringify(v.errors));
      }
    } finally {
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
