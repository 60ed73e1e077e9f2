/**
 * `npm run bench:redundancy [-- --scale F] [--runs N] [--seed N] [--keep] [--out FILE]`
 *
 * The cost of redundancy on the benchmark tree (bench/dataset.py): an initial backup into an
 * LRS, a ZRS and a GRS vault of one `coffre server` (embedded default: three zone folders and
 * a paired-region folder under the data folder), measured side by side in each run, in a
 * rotating order. ZRS writes every pack to three zones in parallel, GRS to one zone and
 * queues a copy for the paired region; the backup's wall time is the agent's (GNU time). For
 * GRS, the replication lag is then measured: the seconds from the end of the backup until
 * `coffre vault show` reports nothing left to copy. Writes the section "redundancy" of
 * docs/benchmarks.md.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import type { VaultDetails } from '../src/core/api.js';
import {
  BIN, COFFRE_PASSPHRASE, CoffreServer, ROOT, cleanEnv, duBytes, generateTree, machine, machineBusySeconds, median, mib, must, registerCoffreAgent, replaceSection, timed, treeStats,
} from './lib.js';

const KINDS = ['LRS', 'ZRS', 'GRS'] as const;
type Kind = (typeof KINDS)[number];

interface Options { scale: number; runs: number; seed: number; keep: boolean; out: string }

function parseOptions(argv: string[]): Options {
  const o: Options = { scale: 1, runs: 3, seed: 1, keep: false, out: join(ROOT, 'docs', 'benchmarks.md') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => { const v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); return v; };
    if (a === '--scale') o.scale = Number(value());
    else if (a === '--runs') o.runs = Number(value());
    else if (a === '--seed') o.seed = Number(value());
    else if (a === '--keep') o.keep = true;
    else if (a === '--out') o.out = value();
    else if (a === '--help' || a === '-h') { process.stdout.write('usage: npm run bench:redundancy -- [--scale F] [--runs N] [--seed N] [--keep] [--out FILE]\n'); process.exit(0); }
    else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!(o.scale >= 0.01 && o.scale <= 10)) throw new Error('--scale must be in [0.01, 10]');
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs must be a positive integer');
  return o;
}

interface Sample {
  kind: Kind; run: number; wall: number; cpu: number; serverCpu: number; otherCpu: number;
  /** GRS: copies still queued when the backup ended, and the seconds until none was. */
  pendingObjects?: number; pendingMiB?: number; lagSeconds?: number;
  /** Server CPU seconds spent after the backup ended, until the paired region had everything. */
  replicationCpu?: number;
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

async function oneRun(work: string, runNo: number, order: Kind[], samples: Sample[]): Promise<{ copies: Record<string, number> }> {
  const data = join(work, `coffre-data-${runNo}`);
  const env = cleanEnv({ COFFRE_PASSPHRASE });
  const server = await CoffreServer.start(data, cleanEnv());
  const copies: Record<string, number> = {};
  try {
    for (const k of KINDS) await registerCoffreAgent(server, work, join(work, `agent-${runNo}-${k}`), env, k.toLowerCase(), k);
    // Over HTTP rather than `coffre vault show`: a CLI start would weigh on the lag measured.
    const show = async (vault: string) => {
      return server.getJson<VaultDetails>(`/v1/vaults/${vault}`);
    };
    for (const kind of order) {
      await must('sync', []);
      const busy0 = machineBusySeconds();
      const cpu0 = server.cpuSeconds();
      const t = await timed(process.execPath, [BIN, '--agent-dir', join(work, `agent-${runNo}-${kind}`), 'backup', join(work, 'src'), '--item', 'bench', '--json'], { cwd: work, env, timeFile: join(work, '.time'), okCodes: [4] });
      const ended = Date.now();
      const serverCpu = server.cpuSeconds() - cpu0;
      const s: Sample = { kind, run: runNo, wall: t.wall, cpu: t.user + t.sys, serverCpu, otherCpu: 0 };
      if (kind === 'GRS') {
        const v = await show('grs');
        s.pendingObjects = v.replication.pendingObjects;
        s.pendingMiB = mib(v.replication.pendingBytes);
        // The replicator runs in the server: its progress can only be polled.
        for (let r = v; r.replication.pendingObjects > 0; r = await show('grs')) await new Promise((res) => setTimeout(res, 50));
        s.lagSeconds = (Date.now() - ended) / 1000;
        s.replicationCpu = server.cpuSeconds() - cpu0 - serverCpu;
      }
      s.otherCpu = Math.max(0, machineBusySeconds() - busy0 - s.cpu - (server.cpuSeconds() - cpu0));
      samples.push(s);
      log(`run ${runNo} ${kind}: wall ${s.wall.toFixed(2)} s, agent cpu ${s.cpu.toFixed(2)} s, server cpu ${serverCpu.toFixed(2)} s` +
        (s.lagSeconds !== undefined ? `, ${s.pendingObjects} objects (${s.pendingMiB!.toFixed(1)} MiB) queued at the end, replicated ${s.lagSeconds.toFixed(2)} s later (server cpu ${s.replicationCpu!.toFixed(2)} s meanwhile)` : '') + `, load ${loadavg()[0]!.toFixed(1)}`);
    }
    for (const [name, dir] of [['primary/zone-1', 'primary/zone-1'], ['primary/zone-2', 'primary/zone-2'], ['primary/zone-3', 'primary/zone-3'], ['secondary/zone-1', 'secondary/zone-1']]) {
      copies[name] = mib(await duBytes(join(data, 'regions', dir!)));
    }
  } finally {
    await server.stop();
    await rm(data, { recursive: true, force: true });
  }
  return { copies };
}

function report(o: Options, samples: Sample[], tree: { files: number; bytes: number }, copies: Record<string, number>, date: string, busy: number[]): string {
  const m = machine();
  const med = (k: Kind, f: (s: Sample) => number | undefined) => median(samples.filter((s) => s.kind === k).map((s) => f(s) ?? NaN));
  const runs = [...new Set(samples.map((s) => s.run))];
  const one = (k: Kind, r: number) => samples.find((s) => s.kind === k && s.run === r);
  /** The median over runs of each run's ratio to LRS: what one run measured side by side. */
  const ratioOf = (k: Kind, f: (s: Sample) => number) => median(runs.map((r) => f(one(k, r)!) / f(one('LRS', r)!)));
  const out: string[] = [];
  out.push(`## Redundancy (${date.slice(0, 10)}, scale ${o.scale}, ${o.runs > 1 ? `median of ${o.runs} runs` : 'one run'})`, '');
  out.push(`Command: \`npm run bench:redundancy -- --scale ${o.scale} --runs ${o.runs}\`, run ${date}, on ${m.cpu}, ${m.memory}, Node.js ${m.node}, Coffre ${m.coffre}. ` +
    `Tree: ${tree.files.toLocaleString('en-US')} files, ${mib(tree.bytes).toFixed(1)} MiB. One \`coffre server\` with the embedded default (zones are folders of one disk); ` +
    'an initial backup into a new LRS, ZRS and GRS vault in each run, in a rotating order, `sync` before each.', '');
  out.push('Ratios are taken within each run (the three backups of a run ran one after the other on the same machine state), then the median over runs; times are medians.', '');
  out.push('| redundancy | backup wall s | wall / LRS | target | agent CPU s | server CPU s | (agent + server CPU) / LRS | other CPU s |', '|---|---|---|---|---|---|---|---|');
  for (const k of KINDS) {
    const ratio = ratioOf(k, (s) => s.wall);
    out.push(`| ${k} | ${med(k, (s) => s.wall).toFixed(2)} | ${ratio.toFixed(2)} | ${k === 'LRS' ? '–' : `≤ 1.20: ${ratio <= 1.2 ? 'met' : '**not met**'}`} | ${med(k, (s) => s.cpu).toFixed(2)} | ${med(k, (s) => s.serverCpu).toFixed(2)} | ${ratioOf(k, (s) => s.cpu + s.serverCpu).toFixed(2)} | ${med(k, (s) => s.otherCpu).toFixed(1)} |`);
  }
  out.push('', `GRS replication after the initial backup: ${med('GRS', (s) => s.pendingObjects).toFixed(0)} objects (${med('GRS', (s) => s.pendingMiB).toFixed(1)} MiB) still queued for the paired region when the backup ended; ` +
    `the lag reached zero ${med('GRS', (s) => s.lagSeconds).toFixed(2)} s later (median), the server spending ${med('GRS', (s) => s.replicationCpu).toFixed(2)} CPU s meanwhile. ` +
    'Background copies wait while a backup is writing (up to 5 minutes), as asynchronous geo-replication does, so the copy to the paired region is made after the backup rather than competing with it for the CPUs.', '');
  out.push('Space per copy after the last run (MiB, `du`): ' + Object.entries(copies).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ') +
    ' — zone-1 holds the LRS, ZRS and GRS vaults\' first copies, zones 2 and 3 the ZRS vault\'s, the paired region the GRS vault\'s.', '');
  out.push('Per run (wall s, in the order run): ' + runs.map((r) => `run ${r}: ` + samples.filter((s) => s.run === r).map((s) => `${s.kind} ${s.wall.toFixed(2)}`).join(', ')).join('; ') + '.', '');
  // Kept so that the report can be read again without measuring again.
  out.push(`<!-- samples ${JSON.stringify(samples)} -->`, '');
  const avg = busy.reduce((a, b) => a + b, 0) / Math.max(1, busy.length);
  out.push(`Load average during the runs: ${busy.map((b) => b.toFixed(1)).join(', ')} (mean ${avg.toFixed(1)} on ${m.cpu.split(', ').pop()}). ` +
    (avg > 2.5 ? 'The machine was shared with other work: absolute times are pessimistic and noisy; the ratios, taken side by side in each run, are what to read.' : 'The machine was otherwise quiet.'), '');
  return out.join('\n');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const work = await mkdtemp(join(tmpdir(), 'coffre-bench-redundancy-'));
  const cleanup = () => { if (!o.keep) rmSync(work, { recursive: true, force: true }); };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    log(`generating the tree (scale ${o.scale}) in ${work}`);
    await generateTree(join(work, 'src-orig'), o.scale, o.seed);
    await cp(join(work, 'src-orig'), join(work, 'src'), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    const tree = await treeStats(join(work, 'src'));
    const samples: Sample[] = [];
    const busy: number[] = [];
    let copies: Record<string, number> = {};
    for (let r = 1; r <= o.runs; r++) {
      const order = KINDS.map((_, i) => KINDS[(i + r - 1) % KINDS.length]!);
      busy.push(loadavg()[0]!);
      copies = (await oneRun(work, r, order, samples)).copies;
    }
    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const body = report(o, samples, tree, copies, date, busy);
    process.stdout.write(body + '\n');
    let text = '';
    try { text = await readFile(o.out, 'utf8'); } catch { /* first report */ }
    await writeFile(o.out, replaceSection(text, 'redundancy', body));
    log(`wrote ${o.out}`);
  } finally {
    cleanup();
  }
}

main().catch((e: unknown) => { process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
