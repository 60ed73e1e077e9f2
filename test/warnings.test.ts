/** What a backup reports rather than dies of: files changing under it, unreadable files; and live progress. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, open, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { backupOptions, cli, harness } from '../testkit/harness.js';

const IS_ROOT = process.getuid?.() === 0;

test('a file that changes while it is read is reported, and the job completes with warnings', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'live');
    await mkdir(src);
    await writeFile(join(src, 'steady.txt'), 'steady');
    const growing = join(src, 'growing.log');
    await writeFile(growing, randomBytes(48 * 1024 * 1024));
    // Keep writing to the file for as long as the backup runs.
    let writing = true;
    const writer = (async () => {
      const fh = await open(growing, 'a');
      while (writing) {
        await fh.write(randomBytes(4096));
        await new Promise((r) => setImmediate(r));
      }
      await fh.close();
    })();
    const result = await backup(backupOptions(a, 'live', [src]));
    writing = false;
    await writer;
    const changed = result.warnings.filter((w) => w.code === 'FileChanged');
    assert.equal(changed.length, 1);
    assert.equal(changed[0]!.path, 'live/growing.log');
    const job = await a.client.getJob(result.jobId);
    assert.equal(job.status, 'CompletedWithWarnings');
    assert.equal(job.warnings[0]!.code, 'FileChanged');
    // The point still restores, with the other files intact.
    const target = join(h.dir, 'out');
    await restore({ client: a.client, keys: a.keys, pointId: result.point.id, target });
    assert.deepEqual((await readdir(join(target, 'live'))).sort(), ['growing.log', 'steady.txt']);
  } finally {
    await h.close();
  }
});

test('unreadable files are reported, not fatal (agent running as an unprivileged user)', { skip: !IS_ROOT && 'needs root to run the agent as another user' }, async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    // Let the unprivileged user reach the harness folder, the agent state and the source.
    await chmod(h.dir, 0o755);
    const nobody = 65534;
    for (const entry of await readdir(a.agentDir, { recursive: true })) await chown(join(a.agentDir, entry), nobody, nobody);
    await chown(a.agentDir, nobody, nobody);
    const src = join(h.dir, 'mixed');
    await mkdir(join(src, 'locked-dir'), { recursive: true });
    await writeFile(join(src, 'readable.txt'), 'fine');
    await writeFile(join(src, 'secret.key'), 'root only');
    await chmod(join(src, 'secret.key'), 0o600);
    await chmod(join(src, 'locked-dir'), 0o700);
    await chmod(src, 0o755);
    const r = await cliAs(nobody, ['backup', src, '--item', 'mixed', '--json'], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url, COFFRE_TOKEN: '' });
    assert.equal(r.code, 4, r.stderr); // completed with warnings
    const job = JSON.parse(r.stdout) as { status: string; warnings: { code: string; path?: string }[]; filesScanned: number };
    assert.equal(job.status, 'CompletedWithWarnings');
    const unreadable = job.warnings.filter((w) => w.code === 'Unreadable').map((w) => w.path).sort();
    assert.deepEqual(unreadable, ['mixed/locked-dir', 'mixed/secret.key']);
    const points = await a.client.listPoints({ item: 'mixed' });
    assert.equal(points.length, 1);
    assert.equal(points[0]!.files, 1);
  } finally {
    await h.close();
  }
});

function cliAs(uid: number, args: string[], env: Record<string, string>) {
  return cli(args, { ...env, HOME: '/tmp' }, { uid });
}

test('a running backup shows live progress in the vault', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'big');
    await mkdir(src);
    for (let i = 0; i < 8; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(16 * 1024 * 1024));
    const running = backup(backupOptions(a, 'big', [src]));
    let seen: { status: string; bytesScanned: number } | undefined;
    for (let i = 0; i < 400 && !seen; i++) {
      const jobs = await h.admin.listJobs();
      const j = jobs.find((x) => x.operation === 'Backup' && x.status === 'InProgress' && x.bytesScanned > 0);
      if (j) seen = j;
      else await new Promise((r) => setTimeout(r, 25));
    }
    const done = await running;
    assert.ok(seen, 'the job was seen in progress with counters');
    assert.ok(seen.bytesScanned < done.counters.bytesScanned, 'the counters moved while the job ran');
    const final = await a.client.getJob(done.jobId);
    assert.equal(final.status, 'Completed');
    assert.equal(final.bytesScanned, 128 * 1024 * 1024);
  } finally {
    await h.close();
  }
});
