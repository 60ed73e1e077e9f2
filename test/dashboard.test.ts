/**
 * The Backup center in a real browser (Debian's Chromium through playwright-core), on a vault
 * whose clock the test drives: sign in, an item turning critical after a failed job and a
 * missed schedule, a running job's progress moving without a reload, an on-demand backup and
 * its point, a restore carried out by the agent, a policy change previewed then applied, a
 * report. Every page is checked at 1280×800 and 390×844 (no horizontal scrolling, every control
 * named) and photographed into test-results/screenshots/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { runRequestedRestores } from '../src/agent/restore-requests.js';
import { requireState } from '../src/agent/state.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { ManualClock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { startServer } from '../src/vault/server.js';
import { launchBrowser, snap, type Browser } from '../testkit/browser.js';
import { clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';

const MiB = 1024 * 1024;

test('the Backup center in a browser: health, live progress, back up now, restore, policy preview, reports', { timeout: 300_000 }, async () => {
  const dir = await tempDir();
  const clock = new ManualClock(new Date('2026-02-24T03:00:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  let b: Browser | null = null;
  try {
    // A machine backs "site" up once by hand, then every night at 02:30 through its daemon.
    const admin = clientFor(server);
    await admin.createVault({ name: 'v' });
    const agentDir = join(dir, 'agent');
    const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: 'web01', credentials: await credentialsFor(server, 'v') });
    const client = clientFor(server, st.token);
    const src = join(dir, 'site');
    await mkdir(join(src, 'img'), { recursive: true });
    await writeFile(join(src, 'index.html'), '<h1>hello</h1>\n'.repeat(200));
    await backup({ client, containerId: st.containerId, keys: keysFromJSON(st.keys), agentDir, vaultId: st.vaultId, item: 'site', paths: [src] });
    await admin.createPolicy('Nightly', { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 30 } } });
    await admin.assignPolicy('Nightly', 'site');
    const daemon = { client, state: await requireState(agentDir), agentDir };
    for (const day of ['2026-02-25', '2026-02-26', '2026-02-27', '2026-02-28', '2026-03-01']) {
      clock.set(new Date(`${day}T02:31:00Z`));
      await writeFile(join(src, 'img', `${day}.bin`), Buffer.alloc(64 * 1024, day));
      assert.equal((await runDueOnce(daemon)).filter((r) => r.result).length, 1);
      assert.equal(await server.drainReplication(), 0); // the paired region keeps up: no replication lag in the screenshots
      await server.maintain(); // a storage sample a day for the chart
    }
    clock.set(new Date('2026-03-01T03:00:00Z'));

    b = await launchBrowser();
    const page = b.page;
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const go = async (hash: string, heading: string | RegExp) => {
      await page.goto(`${server.url}/${hash}`);
      await page.getByRole('heading', { level: 1, name: heading }).waitFor();
    };

    // Sign in: a wrong key and a machine's key are refused, the admin token opens the overview.
    await page.goto(`${server.url}/`);
    const key = page.getByLabel('API key or admin token');
    await key.waitFor();
    await snap(b, '01-sign-in');
    await key.fill('cadm_not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    await key.fill(st.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'agent key cannot open' }).waitFor();
    await key.fill(server.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(await page.locator('.count[data-health="healthy"]').textContent(), '1');

    // A running job's progress moves on the jobs page and on its own page, with no reload.
    const running = await client.startBackup('site', 'files', { paths: [src] });
    const jobId = running.job.id;
    await client.progress(jobId, { bytesScanned: 3 * MiB, filesScanned: 2 });
    await go('#/jobs', 'Jobs');
    const row = page.locator('tr', { has: page.locator(`a[href="#/job/${jobId}"]`) });
    await row.getByText('3.00 MiB read').waitFor();
    await client.progress(jobId, { bytesScanned: 7 * MiB, filesScanned: 5 });
    await row.getByText('7.00 MiB read').waitFor();
    await snap(b, '04-jobs');
    await row.getByRole('link').click();
    await page.getByRole('heading', { level: 1, name: new RegExp(`Backup job ${jobId}`) }).waitFor();
    const counter = page.locator('[data-counter="bytesScanned"]');
    await counter.filter({ hasText: '7.00 MiB' }).waitFor();
    await client.progress(jobId, { bytesScanned: 9 * MiB, filesScanned: 6 });
    await counter.filter({ hasText: '9.00 MiB' }).waitFor();
    // The job fails: the page shows it, with its error.
    clock.advance(60_000);
    await client.finishJob(jobId, { status: 'Failed', errors: [{ code: 'SourceUnreadable', message: 'the disk of /srv/site went away' }] });
    await page.getByRole('cell', { name: 'the disk of /srv/site went away' }).waitFor();
    await snap(b, '05-job');

    // The item: a warning after the failed job, critical once the next night's run is missed.
    await go('#/items', 'Protected items');
    const itemRow = page.locator('tr', { has: page.getByRole('link', { name: 'site', exact: true }) });
    await itemRow.locator('.badge-warning').waitFor();
    await itemRow.getByText(/1 backup\(s\) failed since the last success/).waitFor();
    assert.equal(await server.drainReplication(), 0);
    clock.set(new Date('2026-03-02T07:00:00Z'));
    await server.maintain();
    await page.reload();
    await itemRow.locator('.badge-critical', { hasText: 'critical' }).waitFor();
    await itemRow.getByText(/scheduled run\(s\) missed/).waitFor();
    await itemRow.getByText('Breached').waitFor();
    await snap(b, '03-items');
    await go('#/', 'Overview');
    assert.equal(await page.locator('.count[data-health="critical"]').textContent(), '1');
    await page.getByRole('cell', { name: 'RpoBreach' }).waitFor();
    await page.getByRole('img', { name: /Stored bytes over time/ }).waitFor();
    // The vault's copies, read through its stores: GRS, one zone here and one in the paired region, which has them all.
    await page.getByRole('cell', { name: 'GRS: primary/zone-1, secondary/zone-1' }).waitFor();
    await page.getByRole('cell', { name: 'Up to date' }).waitFor();
    await snap(b, '02-overview');
    await go('#/alerts', 'Alerts');
    await page.getByRole('cell', { name: 'MissedSchedule' }).waitFor();
    await snap(b, '08-alerts');

    // Back up now: the agent runs it on its next poll; the point appears and the item is healthy again.
    clock.advance(60_000);
    await go('#/item/v/site', /site/);
    await page.locator('h1 .badge-critical').waitFor();
    await page.getByRole('button', { name: 'Back up now' }).click();
    await page.getByRole('status').filter({ hasText: 'Backup requested' }).waitFor();
    const ran = await runDueOnce(daemon);
    assert.equal(ran.length, 1);
    const pointId = ran[0]!.result!.point.id;
    const pointRow = page.locator('tr', { has: page.getByText(pointId, { exact: true }) });
    await pointRow.getByText('OnDemand').waitFor();
    await page.locator('h1 .badge-healthy').waitFor();

    // A restore of that point, asked here and carried out by the agent on its machine.
    await pointRow.getByRole('button', { name: `Restore point ${pointId}` }).click();
    const target = join(dir, 'restored');
    await page.getByLabel('Target folder on web01').fill(target);
    await page.getByRole('button', { name: 'Request restore' }).click();
    const requestRow = page.locator('tr', { has: page.getByText(target, { exact: true }) });
    await requestRow.locator('.badge-pending').waitFor();
    const restored = await runRequestedRestores({ client, keys: keysFromJSON(st.keys) });
    assert.deepEqual(restored.map((r) => r.status), ['Completed']);
    await requestRow.locator('.badge-completed').waitFor();
    assert.deepEqual(await compareTrees(src, join(target, 'site')), []);
    await snap(b, '06-item');

    // A policy change previewed (daily → weekly on Sundays: the weekday points go), then applied.
    await go('#/policies', 'Policies');
    await page.getByRole('button', { name: 'Change Nightly…' }).click();
    await page.getByLabel(/Policy Nightly/).fill(JSON.stringify({
      timeZone: 'UTC', schedule: { frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:30'] }, retention: { weekly: { count: 4, weekDays: ['Sunday'] } },
    }, null, 2));
    await page.getByRole('button', { name: 'Preview change' }).click();
    await page.getByText('4 point(s) would be deleted').waitFor();
    assert.equal(await page.locator('.preview td[data-label="Effect"]', { hasText: 'deleted' }).count(), 4);
    assert.equal((await admin.listPoints({ item: 'site' })).length, 7, 'a preview changes nothing');
    await snap(b, '07-policies');
    await page.getByRole('button', { name: 'Apply change' }).click();
    await page.getByRole('heading', { name: 'Applied' }).waitFor();
    const left = await admin.listPoints({ item: 'site' });
    assert.deepEqual(left.map((p) => p.time.slice(0, 10)), ['2026-02-24', '2026-03-01', '2026-03-02']);

    // A report of the period, and its CSV through the session.
    await go('#/reports', 'Reports');
    await page.getByLabel('From').fill('2026-02-20');
    await page.getByLabel('To (included)').fill('2026-03-02');
    await page.getByRole('button', { name: 'Show report' }).click();
    await page.getByRole('cell', { name: 'vault v' }).waitFor();
    await snap(b, '09-reports');
    const csvHref = await page.getByRole('link', { name: 'CSV' }).getAttribute('href');
    const csv = await page.request.get(`${server.url}${csvHref}`);
    assert.equal(csv.status(), 200);
    assert.match(await csv.text(), /^scope,vault,item,/);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key or admin token').waitFor();
    assert.deepEqual(errors, [], 'no script error on any page');
  } finally {
    await b?.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
