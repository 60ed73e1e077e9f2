/**
 * The `coffre vm` commands as a user runs them: protect (with a policy an agent may only
 * record), backup, points, snapshots, restore, files — JSON output and exit statuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobInfo, PointInfo, PolicyInfo } from '../src/core/api.js';
import { cli, harness } from '../testkit/harness.js';
import { cmp, MiB, mkfsExt4, seededBytes, writeTree } from '../testkit/vm-fixtures.js';

test('coffre vm: protect, backup, snapshots, restore and files from the command line', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const coffre = (args: string[], admin = false) => cli(['--agent-dir', a.agentDir, ...(admin ? ['--token', h.server.adminToken] : []), ...args], {}, { cwd: h.dir });
    await writeTree(join(h.dir, 'src'), { 'etc/nginx/nginx.conf': 'worker_processes 4;\n', 'srv/blob.bin': seededBytes('cli', MiB) });
    const os = join(h.dir, 'web01-os.img');
    const data = join(h.dir, 'web01-data.img');
    await mkfsExt4(os, join(h.dir, 'src'), 16);
    await writeFile(data, Buffer.concat([seededBytes('raw', 2 * MiB), Buffer.alloc(6 * MiB)]));

    const unknown = await coffre(['vm', 'protect', 'web01', '--disk', os, '--policy', 'Nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /\[PolicyNotFound\]/);
    const noDisk = await coffre(['vm', 'protect', 'web01', '--disk', join(h.dir, 'missing.img')]);
    assert.equal(noDisk.code, 2);

    await h.admin.createPolicy('Nightly', { name: 'Nightly', schedule: { frequency: 'Daily', times: ['02:00'] }, retention: { daily: { count: 14 } }, instantRestoreDays: 3 });
    const protect = await coffre(['vm', 'protect', 'web01', '--disk', os, '--disk', data, '--policy', 'Nightly', '--script-timeout', '20', '--json']);
    assert.equal(protect.code, 0, protect.stderr);
    const config = JSON.parse(protect.stdout) as { policy: string; policyAssigned: boolean; scriptTimeoutSeconds: number; disks: { path: string }[] };
    assert.deepEqual([config.policy, config.policyAssigned, config.scriptTimeoutSeconds, config.disks.length], ['Nightly', false, 20, 2]);

    // The agent's key may not assign a policy: the backup says so and keeps it recorded locally.
    const first = await coffre(['vm', 'backup', 'web01']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /crash-consistent, 2 disk\(s\)/);
    assert.match(first.stdout, /recorded on this machine only .*administrator token/);
    const snaps = JSON.parse((await coffre(['vm', 'snapshots', 'web01', '--json'])).stdout) as { pointId: string; createdAt: string; expiresAt: string }[];
    assert.equal(snaps.length, 1);
    assert.equal(Date.parse(snaps[0]!.expiresAt) - Date.parse(snaps[0]!.createdAt), 3 * 86_400_000, 'Nightly keeps snapshots 3 days');

    // With an administrator's token, the policy is applied once the vault knows the VM.
    const second = await coffre(['vm', 'backup', 'web01', '--json'], true);
    assert.equal(second.code, 0, second.stderr);
    const job = JSON.parse(second.stdout) as JobInfo;
    assert.equal(job.status, 'Completed');
    const details = job.details as { consistency: string; disks: { index: number; bytesScanned: number; bytesUploaded: number; changedBlocks: number }[] };
    assert.equal(details.consistency, 'crash');
    assert.deepEqual(details.disks.map((d) => [d.index, d.bytesScanned, d.bytesUploaded, d.changedBlocks]), [[0, 16 * MiB, 0, 0], [1, 8 * MiB, 0, 0]]);
    assert.equal(job.bytesUploaded, 0, 'nothing changed, nothing sent');
    const policy = JSON.parse((await coffre(['policy', 'show', 'Nightly', '--json'], true)).stdout) as PolicyInfo;
    assert.deepEqual(policy.items, ['web01']);
    const list = JSON.parse((await coffre(['vm', 'list', '--json'])).stdout) as { name: string; policyAssigned: boolean }[];
    assert.deepEqual(list.map((c) => [c.name, c.policyAssigned]), [['web01', true]]);

    const points = JSON.parse((await coffre(['points', '--item', 'web01', '--json'])).stdout) as PointInfo[];
    assert.equal(points.length, 2);
    assert.deepEqual(points.map((p) => [p.consistency, p.files]), [['crash', 2], ['crash', 2]]);
    const point = points[1]!.id;

    // The file restore command recognises a VM point and says which command restores it.
    const wrongTool = await coffre(['restore', point, '--target', join(h.dir, 'wrong')]);
    assert.equal(wrongTool.code, 2);
    assert.match(wrongTool.stderr, /coffre vm restore/);
    const restored = await coffre(['vm', 'restore', point, '--target', join(h.dir, 'out'), '--json']);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal((JSON.parse(restored.stdout) as JobInfo).details.source, 'snapshot');
    assert.ok(await cmp(join(h.dir, 'out', 'web01-os.img'), os));
    assert.ok(await cmp(join(h.dir, 'out', 'web01-data.img'), data));
    const vhd = await coffre(['vm', 'restore', point, '--target', join(h.dir, 'vhd'), '--format', 'vhd', '--disk', '1', '--source', 'vault']);
    assert.equal(vhd.code, 0, vhd.stderr);
    assert.match(vhd.stdout, /disk 1 -> .*web01-data\.vhd \(vhd, 8\.00 MiB, from vault\)/);

    const live = await coffre(['vm', 'restore', point, '--target', h.dir]);
    assert.equal(live.code, 2);
    assert.match(live.stderr, /live disk of web01.*--replace.*\[InvalidArgument\]/);
    const noTarget = await coffre(['vm', 'restore', point]);
    assert.equal(noTarget.code, 2);

    const listed = await coffre(['vm', 'files', point, '--disk', '0', '--path', '/etc/nginx', '--list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as { entries: { name: string }[] }).entries.map((e) => e.name), ['nginx.conf']);
    const got = await coffre(['vm', 'files', point.slice(0, 8), '--path', '/etc/nginx', '--target', join(h.dir, 'files')]);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /1 file\(s\)/);
    assert.equal(await readFile(join(h.dir, 'files', 'nginx', 'nginx.conf'), 'utf8'), 'worker_processes 4;\n');
    const both = await coffre(['vm', 'files', point, '--path', '/etc', '--list', '--target', join(h.dir, 'x')]);
    assert.equal(both.code, 2);
  } finally {
    await h.close();
  }
});
