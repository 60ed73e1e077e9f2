/**
 * `coffre quickstart`: the whole product in one command on a temporary vault — server,
 * vault, credentials, registration, two backups, restore, byte-for-byte check, summary.
 */
import { mkdtemp, mkdir, writeFile, symlink, link, rm, readFile, truncate, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../agent/backup.js';
import { VaultClient } from '../agent/client.js';
import { registerAgent } from '../agent/register.js';
import { restore } from '../agent/restore.js';
import { compareTrees } from '../agent/tree-compare.js';
import type { CredentialsFile } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { startServer, type RunningServer } from '../vault/server.js';
import { formatBytes } from './output.js';

/** A small tree with the kinds of files people have: text, JSON, binary, duplicates, links, a sparse file. */
export async function generateSampleTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'src', 'lib'), { recursive: true });
  await mkdir(join(dir, 'empty'), { recursive: true });
  const words = 'backup vault restore point chunk pack policy retention agent encrypted compressed'.split(' ');
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 200; i++) {
    const lines = Array.from({ length: 20 + Math.floor(rnd() * 200) }, () => Array.from({ length: 8 }, () => words[Math.floor(rnd() * words.length)]).join(' '));
    await writeFile(join(dir, 'src', i % 2 ? 'lib' : '', `file-${i}.txt`), lines.join('\n'));
  }
  await writeFile(join(dir, 'data.json'), JSON.stringify(Array.from({ length: 5000 }, (_, i) => ({ id: i, name: words[i % words.length], ok: i % 3 === 0 }))));
  await writeFile(join(dir, 'random.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(dir, 'copy-of-random.bin'), await readFile(join(dir, 'random.bin')));
  await writeFile(join(dir, 'name with spaces & ünïcödé.txt'), 'hello\n');
  await writeFile(join(dir, 'empty-file'), '');
  await symlink('data.json', join(dir, 'link-to-data'));
  await link(join(dir, 'data.json'), join(dir, 'hardlink-to-data'));
  const sparse = join(dir, 'sparse.img');
  await writeFile(sparse, '');
  await truncate(sparse, 32 * 1024 * 1024);
  const fh = await open(sparse, 'r+');
  await fh.write(Buffer.from('boot sector'), 0, 11, 0);
  await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, 16 * 1024 * 1024);
  await fh.close();
}

/** Bytes of one copy of the vault (a GRS vault keeps a second one in the paired region). */
async function storeSize(server: RunningServer, vaultId: string): Promise<number> {
  let total = 0;
  const store = (await server.stores.byId(vaultId)).copies()[0]!.store;
  for await (const key of store.list('')) total += (await store.stat(key))?.size ?? 0;
  return total;
}

export async function quickstart(folder?: string): Promise<void> {
  const started = Date.now();
  const say = (s: string) => process.stdout.write(s + '\n');
  const work = await mkdtemp(join(tmpdir(), 'coffre-quickstart-'));
  const source = folder ? resolve(folder) : join(work, 'sample');
  if (!folder) {
    await generateSampleTree(source);
    say(`generated a sample folder at ${source}`);
  }
  const server = await startServer({ dataDir: join(work, 'coffre-data'), listen: '127.0.0.1:0', log: () => undefined });
  try {
    say(`1. started a vault server at ${server.url} (data in ${server.dataDir}), certificate fingerprint ${server.fingerprint}`);
    const admin = new VaultClient(server.url, server.adminToken, { fingerprint: server.fingerprint });
    const vault = await admin.createVault({ name: 'quickstart' });
    say(`2. created vault ${vault.name} (redundancy ${vault.redundancy}) with its DefaultPolicy`);
    const c = await admin.createCredentials(vault.name);
    const credentials: CredentialsFile = { kind: 'coffre-vault-credentials', version: 1, server: server.url, vault: vault.name, vaultId: vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: c.fingerprint };
    const agentDir = join(work, 'agent');
    const passphrase = randomBytes(18).toString('base64url');
    const state = await registerAgent({ agentDir, credentials, passphrase, machine: 'quickstart-machine' });
    say(`3. registered this machine over HTTPS, pinning the vault's certificate; its keys are wrapped by a passphrase the vault never sees`);
    const client = new VaultClient(server.url, state.token, { fingerprint: state.fingerprint ?? null });
    const keys = (await import('../core/crypto.js')).keysFromJSON(state.keys);
    const common = { client, containerId: state.containerId, keys, agentDir, vaultId: state.vaultId, item: 'quickstart', paths: [source] };
    const first = await backup(common);
    say(`4. first backup: point ${first.point.id}, ${first.point.files} files, ${formatBytes(first.counters.bytesScanned)} read, ${formatBytes(first.counters.bytesNew)} new, ${formatBytes(first.counters.bytesUploaded)} sent`);
    const second = await backup(common);
    say(`5. second backup (nothing changed): ${formatBytes(second.counters.bytesNew)} new, ${formatBytes(second.counters.bytesUploaded)} sent, ${second.counters.filesChanged} files re-read`);
    const target = join(work, 'restored');
    const r = await restore({ client, keys, pointId: second.point.id, target });
    if (r.errors.length) throw new CoffreError('ChecksumMismatch', `the restore reported errors: ${r.errors.map((e) => e.message).join('; ')}`);
    const name = source.split('/').filter(Boolean).pop() ?? 'rootfs';
    const diffs = await compareTrees(source, join(target, name));
    if (diffs.length) throw new CoffreError('ChecksumMismatch', `the restored tree differs: ${diffs.slice(0, 5).map((d) => `${d.path}: ${d.what}`).join('; ')}`);
    say(`6. restored point ${second.point.id} into ${target} and compared it with the source: identical, byte for byte (content, modes, links, mtimes)`);
    const stored = await storeSize(server, vault.id);
    const points = await admin.listPoints({ item: 'quickstart' });
    const read = first.counters.bytesScanned;
    say('');
    say('summary');
    say(`  points          ${points.length}`);
    say(`  bytes read      ${formatBytes(read)} (first backup)`);
    say(`  bytes new       ${formatBytes(first.counters.bytesNew)} (after deduplication)`);
    say(`  bytes sent      ${formatBytes(first.counters.bytesUploaded + second.counters.bytesUploaded)}`);
    say(`  bytes stored    ${formatBytes(stored)} (one copy; ${vault.redundancy} keeps ${vault.redundancy === 'LRS' ? 'no other' : vault.redundancy === 'ZRS' ? 'one in each zone' : 'a second in the paired region'})`);
    say(`  dedup ratio     ${(read / Math.max(1, first.counters.bytesNew)).toFixed(2)}x (source bytes / unique bytes)`);
    say(`  compression     ${(first.counters.bytesNew / Math.max(1, stored)).toFixed(2)}x (unique bytes / stored bytes)`);
    say(`  time            ${((Date.now() - started) / 1000).toFixed(1)} s`);
    say(`\nnext: run your own server with \`npx coffre server\` (see README.md)`);
  } finally {
    await server.close();
    await rm(work, { recursive: true, force: true });
  }
}
