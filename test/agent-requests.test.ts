/**
 * Work asked of an agent from the vault side (the dashboard, the API, `coffre request`): an
 * on-demand backup and a restore, which the daemon picks up on its next poll — the agent still
 * connects outward only. Each request runs once, on its own machine only; restores come back
 * byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { runRequestedRestores } from '../src/agent/restore-requests.js';
import { requireState } from '../src/agent/state.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { CoffreError } from '../src/core/errors.js';
import type { RestoreRequestInfo } from '../src/core/monitor-api.js';
import { backupOptions, cli, harness } from '../testkit/harness.js';

const code = (c: string) => (e: unknown) => e instanceof CoffreError && e.code === c;

test('on-demand backups and restores asked of an agent run once, on their machine, on its next poll', { timeout: 120_000 }, async () => {
  const h = await harness({ vault: 'v' });
  try {
    const web = await h.agent('web01');
    const db = await h.agent('db01');
    const site = join(h.dir, 'site');
    await mkdir(join(site, 'css'), { recursive: true });
    await writeFile(join(site, 'index.html'), '<h1>hello</h1>\n');
    await writeFile(join(site, 'css', 'main.css'), 'body { color: red }\n'.repeat(300));
    await backup(backupOptions(web, 'site', [site]));
    const dump = join(h.dir, 'dump');
    await mkdir(dump);
    await writeFile(join(dump, 'db.sql'), 'insert into t values (1);\n');
    await backup(backupOptions(db, 'db', [dump]));
    const webDaemon = { client: web.client, state: await requireState(web.agentDir), agentDir: web.agentDir };
    const dbDaemon = { client: db.client, state: await requireState(db.agentDir), agentDir: db.agentDir };

    // Back up now: only web01's daemon sees it, runs it once, as an on-demand point kept until the date given.
    await assert.rejects(web.client.backupItem('site'), code('Forbidden'), 'an agent key asks for no backup');
    await assert.rejects(h.admin.backupItem('nope'), code('ItemNotFound'));
    await assert.rejects(h.admin.backupItem('site', '2001-01-01'), code('InvalidArgument'));
    const asked = await h.admin.backupItem('site', '2099-12-31');
    assert.equal(asked.retainUntil, '2099-12-31');
    assert.deepEqual(await runDueOnce(dbDaemon), []);
    await writeFile(join(site, 'new.txt'), 'added after the first backup\n');
    const ran = await runDueOnce(webDaemon);
    assert.equal(ran.length, 1);
    assert.equal(ran[0]!.item, 'site');
    const point = (await h.admin.listPoints({ item: 'site' })).find((p) => p.id === ran[0]!.result!.point.id)!;
    assert.equal(point.kind, 'OnDemand');
    assert.equal(point.retainUntil, '2099-12-31');
    assert.deepEqual(await runDueOnce(webDaemon), [], 'a request runs once');

    // Restore: validated when asked; only web01 sees and claims it; the restore is byte for byte.
    await assert.rejects(h.admin.requestRestore({ point: point.id, target: 'relative/dir' }), code('InvalidArgument'));
    await assert.rejects(h.admin.requestRestore({ point: point.id, target: '/tmp/x', paths: ['../etc'] }), code('InvalidArgument'));
    await assert.rejects(db.client.requestRestore({ point: point.id, target: '/tmp/x' }), code('Forbidden'));
    const target = join(h.dir, 'restored');
    const req = await h.admin.requestRestore({ point: point.id, target });
    assert.equal(req.state, 'Pending');
    assert.equal(req.machine, 'web01');
    assert.deepEqual(await db.client.pendingRestores(), []);
    await assert.rejects(db.client.claimRestore(req.id), code('RestoreRequestNotFound'));
    assert.deepEqual(await runRequestedRestores({ client: db.client, keys: db.keys }), []);
    const done = await runRequestedRestores({ client: web.client, keys: web.keys });
    assert.deepEqual(done.map((d) => [d.request, d.status]), [[req.id, 'Completed']]);
    assert.deepEqual(await compareTrees(site, join(target, 'site')), []);
    const [shown] = await h.admin.restoreRequests('site');
    assert.deepEqual([shown!.state, shown!.jobId, shown!.error], ['Completed', done[0]!.jobId, null]);
    assert.equal((await h.admin.getJob(shown!.jobId!)).operation, 'Restore');
    assert.deepEqual(await runRequestedRestores({ client: web.client, keys: web.keys }), [], 'a request runs once');

    // A restore that cannot be done (the target is a file) ends Failed with the reason.
    const blocker = join(h.dir, 'a-file');
    await writeFile(blocker, 'not a folder');
    const bad = await h.admin.requestRestore({ point: point.id, target: blocker });
    const failed = await runRequestedRestores({ client: web.client, keys: web.keys });
    assert.equal(failed.length, 1);
    assert.ok(failed[0]!.error || failed[0]!.status === 'Failed');
    const badShown = (await h.admin.restoreRequests()).find((r) => r.id === bad.id)!;
    assert.equal(badShown.state, 'Failed');
    assert.ok(badShown.error);

    // Through the CLI: asked with `coffre request restore`, carried out by `coffre agent run --once`.
    const env = { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint! };
    const partial = join(h.dir, 'partial');
    const r = await cli(['request', 'restore', point.id, '--target', partial, '--path', 'site/css', '--json'], { ...env, COFFRE_AGENT_DIR: join(h.dir, 'none') }, { cwd: h.dir });
    assert.equal(r.code, 0, r.stderr);
    const cliReq = JSON.parse(r.stdout) as RestoreRequestInfo;
    assert.deepEqual(cliReq.paths, ['site/css']);
    const run = await cli(['agent', 'run', '--once', '--json'], { COFFRE_AGENT_DIR: web.agentDir }, { cwd: h.dir });
    assert.equal(run.code, 0, run.stderr);
    const entries = JSON.parse(run.stdout) as { restoreRequest?: string; status?: string }[];
    assert.deepEqual(entries.map((e) => [e.restoreRequest, e.status]), [[cliReq.id, 'Completed']]);
    assert.deepEqual(await compareTrees(join(site, 'css'), join(partial, 'site', 'css')), []);
    const listed = await cli(['request', 'list', '--item', 'site', '--json'], { ...env, COFFRE_AGENT_DIR: join(h.dir, 'none') }, { cwd: h.dir });
    assert.deepEqual((JSON.parse(listed.stdout) as RestoreRequestInfo[]).map((x) => x.state), ['Completed', 'Failed', 'Completed']);
  } finally {
    await h.close();
  }
});
