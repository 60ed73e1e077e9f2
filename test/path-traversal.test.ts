/**
 * Path traversal: a forged or tampered manifest (sealed with the machine's own keys, as a
 * compromised vault or agent could) is refused before any byte is written, and a restore
 * never writes outside its target folder, not through symlinks it creates nor through
 * symlinks already standing in the target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { PointInfo } from '../src/core/api.js';
import { encodeBlob } from '../src/core/blob.js';
import { chunkId } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { sealManifest, type Manifest } from '../src/core/manifest.js';
import { PackWriter } from '../src/core/pack.js';
import { backupOptions, cli, harness, tempDir, vaultDir, type TestAgent } from '../testkit/harness.js';

const PAYLOAD = Buffer.from('#!/bin/sh\necho pwned by a forged manifest\n');
const MTIME = '1700000000000000000';
const RETAIN_UNTIL = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);

type RawEntry = Record<string, unknown>;
const meta = { mode: 0o644, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, mtime: MTIME };
const dir = (path: string[]): RawEntry => ({ type: 'dir', path, ...meta, mode: 0o755 });
const link = (path: string[], target: string): RawEntry => ({ type: 'symlink', path, ...meta, mode: 0o777, target });

/** Uploads the payload as a real chunk, so a forged file entry carries real bytes to write. */
async function uploadPayload(a: TestAgent): Promise<string> {
  const id = chunkId(a.keys.idKey, PAYLOAD);
  const w = new PackWriter();
  w.add(id, encodeBlob(a.keys, id, PAYLOAD));
  await a.client.putPack(a.state.containerId, randomBytes(16).toString('hex'), w.finish().data);
  return id.toString('hex');
}

/** A point whose manifest is forged, made through the raw API exactly as the agent makes one. */
async function forgePoint(a: TestAgent, chunk: string, entries: RawEntry[]): Promise<PointInfo> {
  const start = await a.client.startBackup('forged', 'files', { paths: ['/forged'] });
  const manifest = { version: 1, item: 'forged', time: new Date().toISOString(), entries } as unknown as Manifest;
  await a.client.putPointObject(start.pointId, start.job.id, 'manifest', sealManifest(a.keys, start.pointId, manifest));
  await a.client.putPointObject(start.pointId, start.job.id, 'refs', Buffer.from(chunk, 'hex'));
  const counters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  return a.client.commit(start.pointId, { jobId: start.job.id, files: 1, bytes: PAYLOAD.length, kind: 'OnDemand', consistency: 'crash', retainUntil: RETAIN_UNTIL, counters, warnings: [] });
}

const isManifestInvalid = (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid';

async function exists(p: string): Promise<boolean> {
  try { await lstat(p); return true; } catch { return false; }
}

/** Names of the form used by a binary (non UTF-8) component: "\0" + base64. */
const b64 = (s: string) => '\0' + Buffer.from(s).toString('base64');

test('forged manifests with escaping names are refused with ManifestInvalid and nothing is written anywhere', async () => {
  const h = await harness();
  // The restore target sits next to a sentinel folder it must never touch.
  const base = await tempDir('coffre-traversal-');
  const outside = join(base, 'outside');
  const etcProbe = `/etc/coffre-traversal-${randomBytes(6).toString('hex')}`;
  try {
    await mkdir(outside);
    const a = await h.agent();
    const chunk = await uploadPayload(a);
    const file = (path: string[]): RawEntry => ({ type: 'file', path, ...meta, mode: 0o755, size: PAYLOAD.length, chunks: [[chunk, PAYLOAD.length]] });

    // The forging itself is sound: a benign forged point restores, inside the target.
    const control = await forgePoint(a, chunk, [dir(['a']), file(['a', 'ok'])]);
    const controlTarget = join(h.dir, 'control');
    const ok = await restore({ client: a.client, keys: a.keys, pointId: control.id, target: controlTarget });
    assert.equal(ok.job.status, 'Completed');
    assert.ok((await readFile(join(controlTarget, 'a', 'ok'))).equals(PAYLOAD));

    const cases: [string, RawEntry[]][] = [
      ['.. at the root', [file(['..', 'evil'])]],
      ['.. under a folder', [dir(['a']), file(['a', '..', '..', 'evil'])]],
      // Every level declared as a folder, as an attacker would: without the check this lands in outside/.
      ['a chain of .. folders reaching the sentinel', [dir(['a']), dir(['a', '..']), dir(['a', '..', '..']), dir(['a', '..', '..', 'outside']), file(['a', '..', '..', 'outside', 'evil'])]],
      ['a root name with a slash reaching the sentinel', [file(['../outside/evil'])]],
      ['an absolute name', [dir(['/etc']), file(['/etc', etcProbe.slice('/etc/'.length)])]],
      ['an absolute name naming the sentinel', [file([join(outside, 'evil')])]],
      ['a name with a slash inside', [dir(['a']), file(['a', '../../outside/evil'])]],
      ['a nested name with a slash inside', [file(['sub/evil'])]],
      ['a binary-encoded name hiding ..', [dir(['a']), file(['a', b64('..')])]],
      ['a binary-encoded name hiding a slash', [dir(['a']), file(['a', b64('../../outside/evil')])]],
      ['a "." component', [dir(['.']), file(['.', 'evil'])]],
      ['an empty component', [dir(['a']), file(['a', '', 'evil'])]],
      ['a NUL inside a name', [file(['evil\0.txt'])]],
      ['a file under a symlink to outside', [link(['a'], outside), file(['a', 'pwned'])]],
      ['a folder under a symlink to outside', [link(['a'], outside), dir(['a', 'd']), file(['a', 'd', 'pwned'])]],
      ['a folder re-using a symlink\'s name', [link(['a'], outside), dir(['a']), file(['a', 'pwned'])]],
      ['a file under a file', [file(['a']), file(['a', 'pwned'])]],
      ['a file before its folder', [file(['a', 'pwned']), dir(['a'])]],
      ['a hard link to a symlink to outside', [link(['a'], join(outside, 'evil')), { type: 'hardlink', path: ['b'], ...meta, link: 0 }]],
      ['a hard link to a later entry', [{ type: 'hardlink', path: ['b'], ...meta, link: 1 }, file(['a'])]],
    ];
    for (const [name, entries] of cases) {
      const point = await forgePoint(a, chunk, entries);
      const target = join(base, 'target');
      await assert.rejects(restore({ client: a.client, keys: a.keys, pointId: point.id, target }), isManifestInvalid, name);
      assert.deepEqual((await readdir(base)).sort(), ['outside'], `${name}: nothing is created next to the target`);
      assert.deepEqual(await readdir(outside), [], `${name}: nothing is written outside the target`);
      assert.equal(await exists(etcProbe), false, `${name}: nothing is written under /etc`);
    }

    // The CLI refuses the same way, with the error code and a failure exit status.
    const point = await forgePoint(a, chunk, [dir(['a']), file(['a', '..', '..', 'outside', 'evil'])]);
    const target = join(base, 'target');
    const r = await cli(['restore', point.id, '--target', target], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url }, { cwd: h.dir });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /\[ManifestInvalid\]/);
    assert.deepEqual(await readdir(outside), []);
    assert.equal(await exists(target), false);
  } finally {
    await rm(etcProbe, { force: true });
    await rm(base, { recursive: true, force: true });
    await h.close();
  }
});

test('a tampered manifest in the vault\'s store (sealed with the right keys) is refused before anything is written', async () => {
  const h = await harness();
  const base = await tempDir('coffre-traversal-');
  try {
    const outside = join(base, 'outside');
    await mkdir(outside);
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f.txt'), 'genuine');
    const { point } = await backup(backupOptions(a, 'genuine', [src]));
    const chunk = await uploadPayload(a);
    // Same point id, so the seal verifies; the entries climb out of the target.
    const forged = {
      version: 1, item: 'genuine', time: new Date().toISOString(),
      entries: [dir(['src']), dir(['src', '..']), dir(['src', '..', '..']), dir(['src', '..', '..', 'outside']),
        { type: 'file', path: ['src', '..', '..', 'outside', 'f.txt'], ...meta, size: PAYLOAD.length, chunks: [[chunk, PAYLOAD.length]] }],
    } as unknown as Manifest;
    const sealed = sealManifest(a.keys, point.id, forged);
    await writeFile(join(vaultDir(join(h.dir, 'data'), h.credentials.vaultId), 'points', point.id, 'manifest'), sealed);
    // A hostile vault serves what it likes: it records the forged manifest's hash too.
    await h.server.db.updateTable('point_objects').set({ manifest_sha256: createHash('sha256').update(sealed).digest('hex') }).where('point_id', '=', point.id).execute();
    const target = join(base, 'target');
    await assert.rejects(restore({ client: a.client, keys: a.keys, pointId: point.id, target }), isManifestInvalid);
    assert.deepEqual((await readdir(base)).sort(), ['outside']);
    assert.deepEqual(await readdir(outside), []);
  } finally {
    await rm(base, { recursive: true, force: true });
    await h.close();
  }
});

test('an absolute symlink is restored as a symlink, and nothing is written through it', async () => {
  const h = await harness();
  const base = await tempDir('coffre-traversal-');
  try {
    const outside = join(base, 'outside');
    await mkdir(outside);
    const a = await h.agent();
    const src = join(h.dir, 'root');
    await mkdir(join(src, 'inner'), { recursive: true });
    await symlink(outside, join(src, 'link'));
    await symlink(join(outside, 'file.txt'), join(src, 'inner', 'file-link'));
    await writeFile(join(src, 'inner', 'data.txt'), 'kept inside');
    await writeFile(join(src, 'zzz-after-link.txt'), 'after the link');
    const { point } = await backup(backupOptions(a, 'links', [src]));
    const target = join(base, 'target');
    for (const overwrite of ['rename', 'replace'] as const) {
      // The second round restores over the first: existing symlinks are replaced, not followed.
      const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite });
      assert.deepEqual(r.errors, []);
      assert.equal(r.job.status, 'Completed');
      assert.ok((await lstat(join(target, 'root', 'link'))).isSymbolicLink());
      assert.equal(await readlink(join(target, 'root', 'link')), outside);
      assert.equal(await readlink(join(target, 'root', 'inner', 'file-link')), join(outside, 'file.txt'));
      assert.deepEqual(await readdir(outside), [], `nothing is written through the symlinks (${overwrite})`);
    }
    assert.deepEqual(await compareTrees(src, join(target, 'root')), []);
  } finally {
    await rm(base, { recursive: true, force: true });
    await h.close();
  }
});

test('a symlink already standing in the target where the point has a folder is not followed (PathConflict)', async () => {
  const h = await harness();
  const base = await tempDir('coffre-traversal-');
  try {
    const a = await h.agent();
    const src = join(h.dir, 'sub');
    await mkdir(join(src, 'inner'), { recursive: true });
    await writeFile(join(src, 'top.txt'), 'top');
    await writeFile(join(src, 'inner', 'deep.txt'), 'deep');
    const { point } = await backup(backupOptions(a, 'sub', [src]));

    // The point's root folder "sub" is a symlink to outside in the target.
    const outside1 = join(base, 'outside1');
    await mkdir(outside1);
    const target1 = join(base, 'target1');
    await mkdir(target1);
    await symlink(outside1, join(target1, 'sub'));
    let lastJob = '';
    for (const overwrite of ['rename', 'replace', 'skip'] as const) {
      const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target: target1, overwrite });
      assert.equal(r.job.status, 'Failed', overwrite);
      assert.deepEqual(r.errors.map((e) => [e.code, e.path]), [['PathConflict', 'sub']], overwrite);
      assert.deepEqual(await readdir(outside1), [], `nothing is written into the symlink's target (${overwrite})`);
      assert.equal(await readlink(join(target1, 'sub')), outside1, 'the symlink is left as it was');
      assert.deepEqual(await readdir(target1), ['sub']);
      lastJob = r.job.id;
    }
    // The vault's record of the restore job says so too.
    const job = await h.admin.getJob(lastJob);
    assert.equal(job.status, 'Failed');
    assert.ok(job.errors.some((e) => e.code === 'PathConflict' && e.path === 'sub'));

    // A nested folder replaced by a symlink: its siblings are restored, nothing goes through it.
    const outside2 = join(base, 'outside2');
    await mkdir(outside2);
    const target2 = join(base, 'target2');
    await mkdir(join(target2, 'sub'), { recursive: true });
    await symlink(outside2, join(target2, 'sub', 'inner'));
    const r2 = await restore({ client: a.client, keys: a.keys, pointId: point.id, target: target2 });
    assert.equal(r2.job.status, 'Failed');
    assert.deepEqual(r2.errors.map((e) => [e.code, e.path]), [['PathConflict', 'sub/inner']]);
    assert.deepEqual(await readdir(outside2), []);
    assert.equal(await readFile(join(target2, 'sub', 'top.txt'), 'utf8'), 'top');
    assert.equal(await readlink(join(target2, 'sub', 'inner')), outside2);

    // The CLI reports the conflict with a failure exit status.
    const r3 = await cli(['restore', point.id, '--target', target1, '--json'], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url }, { cwd: h.dir });
    assert.equal(r3.code, 1, r3.stderr);
    assert.match(r3.stderr, /PathConflict/);
    assert.deepEqual(await readdir(outside1), []);
  } finally {
    await rm(base, { recursive: true, force: true });
    await h.close();
  }
});

test('a symlink already standing in the target where the point has a file is replaced or kept, never written through', async () => {
  const h = await harness();
  const base = await tempDir('coffre-traversal-');
  try {
    const a = await h.agent();
    const src = join(h.dir, 'docs');
    await mkdir(src);
    await writeFile(join(src, 'report.txt'), 'from the backup');
    const { point } = await backup(backupOptions(a, 'docs', [src]));
    const outside = join(base, 'outside');
    await mkdir(outside);
    const victim = join(outside, 'victim.txt');
    await writeFile(victim, 'must stay as it is');

    for (const overwrite of ['skip', 'rename', 'replace'] as const) {
      const target = join(base, `target-${overwrite}`);
      await mkdir(join(target, 'docs'), { recursive: true });
      await symlink(victim, join(target, 'docs', 'report.txt'));
      const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite });
      assert.deepEqual(r.errors, [], overwrite);
      assert.equal(await readFile(victim, 'utf8'), 'must stay as it is', `the symlink's target is untouched (${overwrite})`);
      assert.deepEqual(await readdir(outside), ['victim.txt']);
      const names = (await readdir(join(target, 'docs'))).sort();
      if (overwrite === 'replace') {
        // The symlink itself is replaced by the restored file.
        assert.deepEqual(names, ['report.txt']);
        assert.ok((await lstat(join(target, 'docs', 'report.txt'))).isFile());
        assert.equal(await readFile(join(target, 'docs', 'report.txt'), 'utf8'), 'from the backup');
      } else {
        assert.equal(await readlink(join(target, 'docs', 'report.txt')), victim, `the symlink is kept (${overwrite})`);
        if (overwrite === 'rename') {
          assert.equal(names.length, 2);
          const copy = names.find((n) => n.startsWith('report.txt.restored-'));
          assert.ok(copy, names.join(', '));
          assert.equal(await readFile(join(target, 'docs', copy), 'utf8'), 'from the backup');
        } else {
          assert.deepEqual(names, ['report.txt']);
        }
      }
    }
  } finally {
    await rm(base, { recursive: true, force: true });
    await h.close();
  }
});
