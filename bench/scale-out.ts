/**
 * `npm run bench:scale-out [-- --agents N] [--runs N] [--files N] [--out FILE]`
 *
 * A bounded load test of the scale-out deployment on loopback: one PostgreSQL 15 catalog and
 * one Azure Blob store (Azurite), with `coffre server` nodes as separate processes started as
 * a script would (`--catalog postgresql://… --store azblob://…`). For one node and for three
 * nodes, side by side in each run (order alternating), N agents (default 50) each back up a
 * small tree at the same moment — each agent given every node, its first one in rotation —
 * then back it up again after a small change. Reported: wall time of each wave, throughput
 * (backups/s and MiB/s of source), and the median and p99 latency of the commit call (the
 * catalog transaction that makes a point visible). Every job must complete, and a sample of
 * points is restored and compared with its source byte for byte. The agents run in this one
 * process, so agents and nodes share the machine's CPUs: the figures compare the two
 * deployments on the same machine, they are not a capacity of either. Writes the section
 * "scale-out" of docs/benchmarks.md.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { VaultClient } from '../src/agent/client.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { createDatabase } from '../testkit/catalog-nodes.js';
import { AZURITE_KEY, azblobUrl, startAzurite } from '../testkit/object-servers.js';
import { startPostgres } from '../testkit/postgres.js';
import { startServerProcess, type ServerProcess } from '../testkit/server-process.js';
import { seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';
import { machine, machineBusySeconds, median, replaceSection, ROOT } from './lib.js';

interface Options { agents: number; runs: number; files: number; out: string }

function parseOptions(argv: string[]): Options {
  const o: Options = { agents: 50, runs: 1, files: 12, out: join(ROOT, 'docs', 'benchmarks.md') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => { const v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); return v; };
    if (a === '--agents') o.agents = Number(value());
    else if (a === '--runs') o.runs = Number(value());
    else if (a === '--files') o.files = Number(value());
    else if (a === '--out') o.out = value();
    else if (a === '--help' || a === '-h') { process.stdout.write('usage: npm run bench:scale-out -- [--agents N] [--runs N] [--files N] [--out FILE]\n'); process.exit(0); }
    else throw new Error(`unknown option ${a} (see --help)`);
  }
  for (const [k, v] of [['--agents', o.agents], ['--runs', o.runs], ['--files', o.files]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 500) throw new Error(`${k} must be an integer from 1 to 500`);
  }
  return o;
}

const PASSPHRASE = 'scale-out bench passphrase';

interface Wave { wall: number; backups: number; bytes: number; commits: number[]; busy: number }
interface Sample { nodes: number; run: number; initial: Wave; changed: Wave; restoresChecked: number }

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function deployment(dir: string, count: number, catalog: string, store: string): Promise<ServerProcess[]> {
  const nodes: ServerProcess[] = [];
  for (let i = 0; i < count; i++) {
    const data = join(dir, `node-${i}`);
    if (i > 0) {
      await mkdir(data, { mode: 0o700 });
      await cp(join(dir, 'node-0', 'admin.token'), join(data, 'admin.token'));
      await cp(join(dir, 'node-0', 'tls'), join(data, 'tls'), { recursive: true });
    }
    nodes.push(await startServerProcess(['--data', data, '--catalog', catalog, '--store', store], { AZURE_STORAGE_KEY: AZURITE_KEY }, { dataDir: data }));
  }
  return nodes;
}

async function measure(o: Options, count: number, run: number, pgUrl: () => Promise<string>, azure: Awaited<ReturnType<typeof startAzurite>>): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), `coffre-bench-scale-${count}-`));
  const nodes = await deployment(dir, count, await pgUrl(), azblobUrl(azure, `bench-${count}-${run}`, 'coffre'));
  try {
    const fingerprint = nodes[0]!.fingerprint;
    const urls = nodes.map((n) => n.url);
    const rotated = (i: number) => urls.map((_, k) => urls[(i + k) % urls.length]).join(',');
    const admin = new VaultClient(rotated(0), nodes[0]!.token, { fingerprint });
    await admin.createVault({ name: 'load', redundancy: 'LRS' });
    process.stderr.write(`  ${count} node(s): registering ${o.agents} agents\n`);
    const agents: { st: Awaited<ReturnType<typeof registerAgent>>; agentDir: string; src: string; keys: ReturnType<typeof keysFromJSON>; client: VaultClient }[] = [];
    for (let i = 0; i < o.agents; i++) {
      const c = await admin.createCredentials('load');
      const agentDir = join(dir, `agent-${i}`);
      const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: `m${i}`, credentials: { kind: 'coffre-vault-credentials', version: 1, server: rotated(i), vault: 'load', vaultId: c.vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint } });
      const src = join(dir, `src-${i}`);
      const files: Record<string, string | Buffer> = { 'shared.txt': seededText('shared', 20_000) };
      for (let f = 0; f < o.files; f++) files[`f${f}.bin`] = seededBytes(`${i}-${f}`, 8_000 + f * 997);
      await writeTree(src, files);
      agents.push({ st, agentDir, src, keys: keysFromJSON(st.keys), client: new VaultClient(rotated(i), st.token, { fingerprint }) });
    }
    const wave = async (round: number): Promise<{ wave: Wave; points: string[] }> => {
      const commits: number[] = [];
      const busy0 = machineBusySeconds();
      const t0 = performance.now();
      const results = await Promise.all(agents.map((a) => {
        const timedClient = new Proxy(a.client, {
          get(target, prop, receiver) {
            const value = Reflect.get(target, prop, receiver) as unknown;
            if (typeof value !== 'function') return value;
            if (prop !== 'commit') return (value as (...x: unknown[]) => unknown).bind(target);
            return async (...args: unknown[]) => {
              const c0 = performance.now();
              try { return await (value as (...x: unknown[]) => Promise<unknown>).apply(target, args); } finally { commits.push(performance.now() - c0); }
            };
          },
        });
        return backup({ client: timedClient, containerId: a.st.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.st.vaultId, item: `files-${agents.indexOf(a)}`, paths: [a.src] });
      }));
      const wall = (performance.now() - t0) / 1000;
      const bytes = results.reduce((n, r) => n + r.counters.bytesScanned, 0);
      for (const r of results) if (r.warnings.length) throw new Error(`a backup had warnings: ${JSON.stringify(r.warnings)}`);
      process.stderr.write(`  ${count} node(s), wave ${round}: ${results.length} backups in ${wall.toFixed(2)} s\n`);
      return { wave: { wall, backups: results.length, bytes, commits, busy: machineBusySeconds() - busy0 }, points: results.map((r) => r.point.id) };
    };
    const first = await wave(1);
    for (const [i, a] of agents.entries()) await writeFile(join(a.src, `f${i % o.files}.bin`), seededBytes(`changed-${i}`, 9_000));
    const second = await wave(2);
    const jobs = (await admin.listJobs('load')).filter((j) => j.operation === 'Backup');
    const bad = jobs.filter((j) => j.status !== 'Completed');
    if (jobs.length !== 2 * o.agents || bad.length) throw new Error(`${jobs.length} backup jobs, ${bad.length} not Completed: ${JSON.stringify(bad.slice(0, 3))}`);
    // A sample of the second wave's points, restored through the nodes and compared byte for byte.
    let checked = 0;
    for (let i = 0; i < agents.length; i += Math.max(1, Math.floor(agents.length / 5))) {
      const a = agents[i]!;
      const target = join(dir, `restore-${i}`);
      await restore({ client: a.client, keys: a.keys, pointId: second.points[i]!, target });
      const diffs = await compareTrees(a.src, join(target, basename(a.src)));
      if (diffs.length) throw new Error(`restore of agent ${i} differs: ${JSON.stringify(diffs.slice(0, 3))}`);
      checked++;
    }
    return { nodes: count, run, initial: first.wave, changed: second.wave, restoresChecked: checked };
  } finally {
    for (const n of nodes) await n.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function report(o: Options, samples: Sample[], meta: Record<string, string>): string {
  const rows: string[] = [];
  const by = (n: number) => samples.filter((s) => s.nodes === n);
  const line = (n: number, which: 'initial' | 'changed') => {
    const ws = by(n).map((s) => s[which]);
    const wall = median(ws.map((w) => w.wall));
    const commits = ws.flatMap((w) => w.commits);
    const mib = median(ws.map((w) => w.bytes)) / 2 ** 20;
    return { wall, perSecond: o.agents / wall, mibPerSecond: mib / wall, p50: median(commits), p99: percentile(commits, 99), busy: median(ws.map((w) => w.busy)) };
  };
  rows.push('| nodes | wave | backups | wall (s) | backups/s | MiB/s of source | commit p50 (ms) | commit p99 (ms) | machine CPU busy (s) |');
  rows.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  const figures: Record<string, ReturnType<typeof line>> = {};
  for (const n of [1, 3]) {
    for (const which of ['initial', 'changed'] as const) {
      const f = line(n, which);
      figures[`${n}:${which}`] = f;
      rows.push(`| ${n} | ${which === 'initial' ? 'first backup' : 'after a small change'} | ${o.agents} | ${f.wall.toFixed(2)} | ${f.perSecond.toFixed(1)} | ${f.mibPerSecond.toFixed(2)} | ${f.p50.toFixed(0)} | ${f.p99.toFixed(0)} | ${f.busy.toFixed(1)} |`);
    }
  }
  const ratio = (which: 'initial' | 'changed') => figures[`1:${which}`]!.wall / figures[`3:${which}`]!.wall;
  return [
    `## Scale-out (${new Date().toISOString().slice(0, 10)}, ${o.agents} agents, ${o.runs} run${o.runs > 1 ? 's' : ''}, medians)`,
    '',
    `\`npm run bench:scale-out -- --agents ${o.agents} --runs ${o.runs} --files ${o.files}\`: one PostgreSQL 15 catalog, one Azurite store, ` +
    `\`coffre server\` nodes as processes (\`--catalog --store\`), ${o.agents} agents in one process backing up at once (${o.files} files of 8-20 KB each plus one shared file), ` +
    'each agent given every node with its own first one. Every job Completed; a sample of points restored byte-identical in each run.',
    '',
    ...rows,
    '',
    `Wall-time ratio one node / three nodes: first backup ${ratio('initial').toFixed(2)}, after a change ${ratio('changed').toFixed(2)} (above 1: three nodes faster).`,
    '',
    `Machine: ${meta.cpu}; ${meta.memory}; Node ${meta.node}; ${meta.coffre}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}.`,
  ].join('\n');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const pg = await startPostgres();
  const azure = await startAzurite();
  const samples: Sample[] = [];
  try {
    const pgUrl = () => createDatabase(pg, 'bench');
    for (let run = 1; run <= o.runs; run++) {
      for (const count of run % 2 ? [1, 3] : [3, 1]) {
        process.stderr.write(`run ${run}: ${count} node(s)\n`);
        samples.push(await measure(o, count, run, pgUrl, azure));
      }
    }
  } finally {
    await azure.stop();
    await pg.close();
  }
  const section = report(o, samples, machine());
  process.stdout.write(section + '\n');
  const before = await readFile(o.out, 'utf8').catch(() => '');
  await writeFile(o.out, replaceSection(before, 'scale-out', section));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
