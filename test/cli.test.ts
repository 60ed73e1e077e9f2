/** The README's flow through the real `coffre` command, with its JSON and exit-code contract. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile, readFile, stat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { compareTrees } from '../src/agent/tree-compare.js';
import { BIN, cli, tempDir, waitHealthy } from '../testkit/harness.js';
import { freePort } from '../testkit/ports.js';


test('the README flow works through the CLI, with --json output and exit codes scripts can trust', async () => {
  const dir = await tempDir('coffre-cli-');
  const port = await freePort();
  // HTTPS out of the box: the server's self-signed certificate, found by the CLI in ./coffre-data.
  const url = `https://127.0.0.1:${port}`;
  // `coffre server` with the embedded default: ./coffre-data in the working folder.
  const server = spawn(process.execPath, [BIN, 'server', '--listen', `127.0.0.1:${port}`], { cwd: dir, stdio: 'ignore' });
  try {
    await waitHealthy(url);
    const tokenMode = (await stat(join(dir, 'coffre-data', 'admin.token'))).mode & 0o777;
    assert.equal(tokenMode, 0o600);
    const env = { COFFRE_SERVER: url, COFFRE_AGENT_DIR: join(dir, 'agent'), COFFRE_TOKEN: '' };
    const run = (args: string[], extra: Record<string, string> = {}) => cli(args, { ...env, ...extra }, { cwd: dir });

    const created = await run(['vault', 'create', 'myvault', '--json']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(JSON.parse(created.stdout).redundancy, 'GRS');
    const dup = await run(['vault', 'create', 'myvault']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /^coffre: .*already exists.*\[VaultExists\]\n$/);
    assert.doesNotMatch(dup.stderr, /at .*\.js/); // no stack trace without --debug

    const cred = await run(['vault', 'credentials', 'myvault', '--out', 'vault.cred']);
    assert.equal(cred.code, 0, cred.stderr);
    assert.equal((await stat(join(dir, 'vault.cred'))).mode & 0o777, 0o600);

    await writeFile(join(dir, 'short.txt'), 'too short\n');
    const short = await run(['agent', 'register', '--credentials', 'vault.cred', '--passphrase-file', 'short.txt']);
    assert.equal(short.code, 2);
    assert.match(short.stderr, /at least 16 characters.*\[PassphraseTooShort\]/);

    await writeFile(join(dir, 'pass.txt'), 'a long enough passphrase for tests\n');
    const reg = await run(['agent', 'register', '--credentials', 'vault.cred', '--passphrase-file', 'pass.txt', '--machine', 'laptop']);
    assert.equal(reg.code, 0, reg.stderr);

    const src = join(dir, 'projects');
    await mkdir(join(src, 'app'), { recursive: true });
    await writeFile(join(src, 'app', 'main.ts'), 'console.log("hi")\n'.repeat(500));
    await writeFile(join(src, 'notes.md'), '# notes\n');
    const b1 = await run(['backup', src, '--item', 'projects', '--json']);
    assert.equal(b1.code, 0, b1.stderr);
    const job1 = JSON.parse(b1.stdout);
    for (const key of ['id', 'operation', 'status', 'item', 'startTime', 'endTime', 'bytesScanned', 'bytesNew', 'bytesUploaded', 'filesScanned', 'filesChanged', 'errors']) {
      assert.ok(key in job1, `backup job has ${key}`);
    }
    assert.equal(job1.operation, 'Backup');
    assert.equal(job1.status, 'Completed');
    assert.equal(job1.item, 'projects');
    assert.equal(job1.filesScanned, 2);

    await writeFile(join(src, 'notes.md'), '# notes\nmore\n');
    const b2 = await run(['backup', src, '--item', 'projects', '--retain-until', '2099-12-31', '--json']);
    assert.equal(b2.code, 0, b2.stderr);
    assert.equal(JSON.parse(b2.stdout).filesChanged, 1);

    const badDate = await run(['backup', src, '--item', 'projects', '--retain-until', '2020-02-30']);
    assert.equal(badDate.code, 2);

    const pts = await run(['points', '--item', 'projects', '--json']);
    assert.equal(pts.code, 0, pts.stderr);
    const points = JSON.parse(pts.stdout) as Record<string, unknown>[];
    assert.equal(points.length, 2);
    for (const key of ['id', 'item', 'time', 'consistency', 'expiresAt', 'files', 'bytes']) assert.ok(key in points[0]!, `point has ${key}`);
    assert.ok(String(points[0]!.time) < String(points[1]!.time), 'oldest first');
    assert.equal(points[1]!.expiresAt, '2100-01-01T00:00:00.000Z');

    const target = join(dir, 'restored');
    const r = await run(['restore', String(points[1]!.id), '--target', target, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).operation, 'Restore');
    assert.deepEqual(await compareTrees(src, join(target, 'projects')), []);

    const missing = await run(['restore', 'deadbeefdeadbeef', '--target', target]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /\[PointNotFound\]/);

    const jobs = await run(['jobs', '--json']);
    const list = JSON.parse(jobs.stdout) as { operation: string }[];
    assert.deepEqual(list.map((j) => j.operation), ['Backup', 'Backup', 'Restore']);

    const v = await run(['verify', '--json']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(JSON.parse(v.stdout).status, 'Completed');

    // Human output and help.
    const human = await run(['points']);
    assert.match(human.stdout, /projects/);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    for (const cmd of ['server', 'vault', 'agent', 'backup', 'points', 'restore', 'jobs', 'verify', 'quickstart', 'policy']) assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));
    const backupHelp = await run(['backup', '--help']);
    assert.match(backupHelp.stdout, /--exclude/);
    assert.match(backupHelp.stdout, /--retain-until/);

    // A server that is not there: a clear message, not a stack trace.
    const down = await cli(['points'], { ...env, COFFRE_SERVER: 'http://127.0.0.1:1' }, { cwd: dir });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the vault.*\[ServerUnreachable\]/);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
});

test('quickstart runs the whole product on a temporary vault and verifies the restore', async () => {
  const r = await cli(['quickstart']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /identical, byte for byte/);
  assert.match(r.stdout, /points\s+2/);
  assert.match(r.stdout, /dedup ratio/);
});

test('a policy preview runs without a server', async () => {
  const dir = await tempDir();
  await writeFile(join(dir, 'p.json'), JSON.stringify({ name: 'Nightly', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } }));
  await writeFile(join(dir, 'pts.json'), JSON.stringify([
    { id: 'old', time: '2026-01-01T02:30:00Z', kind: 'Scheduled' },
    { id: 'new', time: '2026-01-09T02:30:00Z', kind: 'Scheduled' },
  ]));
  const r = await cli(['policy', 'preview', '--file', join(dir, 'p.json'), '--points', join(dir, 'pts.json'), '--now', '2026-01-10T00:00:00Z', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { id: string; keep: boolean; expiresAt: string }[];
  assert.deepEqual(out.map((p) => [p.id, p.keep, p.expiresAt]), [['old', false, '2026-01-08T02:30:00.000Z'], ['new', true, '2026-01-16T02:30:00.000Z']]);
  const bad = await cli(['policy', 'preview', '--file', join(dir, 'pts.json'), '--points', join(dir, 'pts.json'), '--json']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /\[InvalidPolicy\]/);
  assert.equal(bad.stdout, '');
  await rm(dir, { recursive: true, force: true });
  void readFile;
});
