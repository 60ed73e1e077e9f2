/**
 * `npm run bench [-- --scale F] [--runs N] [--tools coffre,restic,borg] [--seed N] [--keep] [--no-install] [--out FILE]`
 * `npm run bench -- --tree PATH` (an existing folder, read only: e.g. /usr) or `--small-files N`
 * (a generated tree of N files of 64-200 bytes, 1000 per folder): initial backup, unchanged
 * re-backup and restore of that tree, reported in a section of their own.
 *
 * Generates the deterministic test tree of bench/dataset.py (~1.2 GiB at scale 1), then
 * measures Coffre (a `coffre server` and the `coffre` CLI as separate processes on loopback),
 * restic and borg on it in the same run: initial backup, unchanged re-backup, backup after a
 * ~1% change, full restore. Every client process runs under GNU time (wall, CPU, peak RSS);
 * the server's CPU time and peak memory are read from /proc for each step. Every restore is
 * compared with the source byte for byte. Prints a markdown report with the ratios
 * Coffre/restic and Coffre/borg and the issue's targets, and writes it to docs/benchmarks.md.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { compareTrees, type TreeDifference } from '../src/agent/tree-compare.js';
import {
  BIN, COFFRE_PASSPHRASE, CoffreServer, PASSWORD, ROOT, cleanEnv, duBytes, generateSmallFiles, generateTree, machine, median, mib,
  machineBusySeconds, must, mutateTree, registerCoffreAgent, replaceSection, run, timed, treeStats, version, type Timed,
} from './lib.js';

const TOOLS = ['coffre', 'restic', 'borg'] as const;
type Tool = (typeof TOOLS)[number];
const STEPS = ['initial', 'unchanged', 'changed', 'restore'] as const;
type Step = (typeof STEPS)[number];
const STEP_NAMES: Record<Step, string> = {
  initial: 'initial backup', unchanged: 'unchanged re-backup', changed: 'backup after ~1% change', restore: 'full restore',
};

interface Options { scale: number; runs: number; seed: number; keep: boolean; install: boolean; tools: Tool[]; out: string; tree?: string; smallFiles?: number }

/** What is backed up: the generated test tree, an existing folder, or a generated tree of many small files. */
type Kind = 'synthetic' | 'tree' | 'small';
const kindOf = (o: Options): Kind => (o.tree ? 'tree' : o.smallFiles ? 'small' : 'synthetic');
/** An existing or many-file tree is not mutated (it is not ours, or too large to copy): no "changed" step. */
const stepsOf = (kind: Kind): readonly Step[] => (kind === 'synthetic' ? STEPS : ['initial', 'unchanged', 'restore']);
const SECTION: Record<Kind, string> = { synthetic: 'results', tree: 'results-tree', small: 'results-small' };

function parseOptions(argv: string[]): Options {
  const o: Options = { scale: 1, runs: 1, seed: 1, keep: false, install: true, tools: [...TOOLS], out: join(ROOT, 'docs', 'benchmarks.md') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--scale') o.scale = Number(value());
    else if (a === '--runs') o.runs = Number(value());
    else if (a === '--seed') o.seed = Number(value());
    else if (a === '--keep') o.keep = true;
    else if (a === '--no-install') o.install = false;
    else if (a === '--out') o.out = value();
    else if (a === '--tree') o.tree = resolve(value());
    else if (a === '--small-files') o.smallFiles = Number(value());
    else if (a === '--tools') {
      const ts = value().split(',').map((t) => t.trim()).filter(Boolean);
      for (const t of ts) if (!(TOOLS as readonly string[]).includes(t)) throw new Error(`unknown tool ${t} (coffre, restic, borg)`);
      o.tools = ts as Tool[];
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run bench -- [--scale F | --tree PATH | --small-files N] [--runs N] [--tools coffre,restic,borg] [--seed N] [--keep] [--no-install] [--out FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!(o.scale > 0) || !(o.scale <= 10)) throw new Error('--scale must be in (0, 10]');
  // dataset.py needs at least a few medium files (scale 0.01 → 1).
  if (o.scale < 0.01) throw new Error('--scale must be at least 0.01');
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(o.seed)) throw new Error('--seed must be an integer');
  if (!o.tools.includes('coffre')) throw new Error('--tools must include coffre');
  if (o.tree && o.smallFiles) throw new Error('--tree and --small-files measure different trees: give one');
  if (o.smallFiles !== undefined && (!Number.isInteger(o.smallFiles) || o.smallFiles < 1000)) throw new Error('--small-files must be an integer of at least 1000');
  return o;
}

/** One measured step of one tool in one run. */
interface Sample {
  tool: Tool; step: Step; run: number;
  wall: number; cpu: number; rssMiB: number;
  serverCpu?: number; serverRssMiB?: number;
  storedMiB: number; storeOnlyMiB?: number;
  /** CPU seconds the rest of the machine used during the step: other load that disturbs it. */
  otherCpu: number;
  detail?: string;
}

interface RestoreCheck { tool: Tool; run: number; content: TreeDifference[]; metadata: TreeDifference[] }

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

const CONTENT_DIFF = /^(missing|unexpected|type|size|content|link target|hard link)/;

async function checkRestore(tool: Tool, runNo: number, source: string, restored: string): Promise<RestoreCheck> {
  const diffs = await compareTrees(source, restored, { mtimes: true });
  return { tool, run: runNo, content: diffs.filter((d) => CONTENT_DIFF.test(d.what)), metadata: diffs.filter((d) => !CONTENT_DIFF.test(d.what)) };
}

interface JobJson { status: string; pointId: string | null; bytesNew: number; bytesUploaded: number; filesChanged: number; filesScanned: number; warnings: { code: string; message: string }[] }

async function oneRun(work: string, runNo: number, o: Options, samples: Sample[], checks: RestoreCheck[], notes: Set<string>): Promise<void> {
  const kind = kindOf(o);
  // The generated tree is copied (it is mutated); the others are read where they are.
  const src = kind === 'tree' ? o.tree! : kind === 'small' ? join(work, 'src-orig') : join(work, 'src');
  if (kind === 'synthetic') {
    await rm(src, { recursive: true, force: true });
    await cp(join(work, 'src-orig'), src, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  }
  // Relative for the generated tree (as the baseline measured it), absolute otherwise.
  const arg = kind === 'synthetic' ? 'src' : src;
  const tfile = join(work, '.time');
  const baseEnv = cleanEnv();
  const coffreEnv = cleanEnv({ COFFRE_PASSPHRASE });
  const resticEnv = cleanEnv({ RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(work, 'restic-cache') });
  const borgEnv = cleanEnv({ BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(work, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes' });
  const coffreData = join(work, 'coffre-data');
  const coffreAgent = join(work, 'coffre-agent');
  const resticRepo = join(work, 'restic-repo');
  const borgRepo = join(work, 'borg-repo');
  for (const p of [coffreData, coffreAgent, resticRepo, borgRepo, join(work, 'restic-cache'), join(work, 'borg-base'), ...o.tools.map((t) => join(work, `restore-${t}`))]) {
    await rm(p, { recursive: true, force: true });
  }

  const server = await CoffreServer.start(coffreData, baseEnv);
  try {
    await registerCoffreAgent(server, work, coffreAgent, coffreEnv);
    if (o.tools.includes('restic')) await must('restic', ['init', '-r', resticRepo], { env: resticEnv });
    if (o.tools.includes('borg')) await must('borg', ['init', '-e', 'repokey-blake2', borgRepo], { env: borgEnv });
    let lastPoint = '';
    let archive = 0;

    let busy0 = 0;
    let busyEnd = 0;
    const record = (tool: Tool, step: Step, t: Timed, stored: number, extra: Partial<Sample> = {}) => {
      const busy = busyEnd - busy0;
      const own = t.user + t.sys + (extra.serverCpu ?? 0);
      const s: Sample = { tool, step, run: runNo, wall: t.wall, cpu: t.user + t.sys, rssMiB: t.rssKiB / 1024, storedMiB: mib(stored), otherCpu: Math.max(0, busy - own), ...extra };
      samples.push(s);
      log(`run ${runNo}/${o.runs} ${tool.padEnd(6)} ${STEP_NAMES[step].padEnd(24)} wall ${t.wall.toFixed(2)} s, cpu ${s.cpu.toFixed(2)} s, peak ${s.rssMiB.toFixed(0)} MiB` +
        (s.serverRssMiB !== undefined ? ` (server: cpu ${s.serverCpu!.toFixed(2)} s, peak ${s.serverRssMiB.toFixed(0)} MiB)` : '') + `, stored ${s.storedMiB.toFixed(1)} MiB, other load ${s.otherCpu.toFixed(1)} CPU s${s.detail ? `; ${s.detail}` : ''}`);
    };

    const measured = async (cmd: string, args: string[], opts: Parameters<typeof timed>[2]): Promise<Timed> => {
      busy0 = machineBusySeconds();
      const t = await timed(cmd, args, opts);
      busyEnd = machineBusySeconds();
      return t;
    };

    const coffre = async (step: Step) => {
      const peakReset = server.resetPeak();
      if (!peakReset) notes.add('The server\'s peak memory could not be reset between steps (/proc/PID/clear_refs): it is the peak since the server started.');
      const cpu0 = server.cpuSeconds();
      let t: Timed;
      if (step === 'restore') {
        const target = join(work, 'restore-coffre');
        t = await measured(process.execPath, [BIN, '--agent-dir', coffreAgent, 'restore', lastPoint, '--target', target, '--json'], { cwd: work, env: coffreEnv, timeFile: tfile });
      } else {
        t = await measured(process.execPath, [BIN, '--agent-dir', coffreAgent, 'backup', kind === 'synthetic' ? src : arg, '--item', 'bench', '--json'], { cwd: work, env: coffreEnv, timeFile: tfile, okCodes: [4] });
      }
      const serverCpu = server.cpuSeconds() - cpu0;
      const serverRssMiB = server.peakKiB() / 1024;
      const job = JSON.parse(t.stdout) as JobJson;
      let detail = `job ${job.status}`;
      if (step !== 'restore') {
        if (!job.pointId) throw new Error(`coffre backup gave no point: ${t.stdout}`);
        lastPoint = job.pointId;
        detail += `, ${job.filesChanged} files read, ${mib(job.bytesNew).toFixed(1)} MiB new, ${mib(job.bytesUploaded).toFixed(1)} MiB sent`;
      }
      if (job.warnings?.length) detail += `, ${job.warnings.length} warning(s): ${job.warnings.slice(0, 3).map((w) => w.message).join('; ')}`;
      if (job.status !== 'Completed') notes.add(`Coffre ${STEP_NAMES[step]} (run ${runNo}) ended with status ${job.status}.`);
      record('coffre', step, t, await duBytes(coffreData), { serverCpu, serverRssMiB, storeOnlyMiB: mib(await duBytes(join(coffreData, 'regions'))), detail });
    };

    const restic = async (step: Step) => {
      const args = step === 'restore'
        ? ['-r', resticRepo, 'restore', 'latest', '--target', join(work, 'restore-restic')]
        : ['-r', resticRepo, 'backup', '--compression', 'auto', arg];
      record('restic', step, await measured('restic', args, { cwd: work, env: resticEnv, timeFile: tfile }), await duBytes(resticRepo));
    };

    const borg = async (step: Step) => {
      let t: Timed;
      if (step === 'restore') {
        const target = join(work, 'restore-borg');
        await mkdir(target, { recursive: true });
        t = await measured('borg', ['extract', `${borgRepo}::a${archive}`], { cwd: target, env: borgEnv, timeFile: tfile });
      } else {
        archive++;
        t = await measured('borg', ['create', '--compression', 'zstd,3', `${borgRepo}::a${archive}`, arg], { cwd: work, env: borgEnv, timeFile: tfile });
      }
      record('borg', step, t, await duBytes(borgRepo));
    };

    const each = async (step: Step) => {
      for (const tool of o.tools) {
        // Start every measured command with no dirty pages left by the previous one (or by
        // copying and mutating the tree): otherwise the first fsync of the next tool pays for them.
        await must('sync', []);
        await (tool === 'coffre' ? coffre : tool === 'restic' ? restic : borg)(step);
      }
    };

    await each('initial');
    await each('unchanged');
    if (kind === 'synthetic') {
      await mutateTree(src, o.seed, 1);
      await each('changed');
    }
    await each('restore');
    // Where each tool puts the tree: relative paths under the target; absolute ones as
    // restic (the whole path) and borg (without its leading slash) keep them, Coffre by name.
    const restoredAt = (tool: Tool) => {
      const target = join(work, `restore-${tool}`);
      if (!isAbsolute(arg)) return join(target, arg);
      return tool === 'coffre' ? join(target, basename(arg)) : join(target, arg);
    };
    for (const tool of o.tools) {
      const c = await checkRestore(tool, runNo, src, restoredAt(tool));
      checks.push(c);
      log(`run ${runNo}/${o.runs} ${tool.padEnd(6)} restore ${c.content.length ? `DIFFERS (${c.content.length} differences, e.g. ${c.content.slice(0, 3).map((d) => `${d.path}: ${d.what}`).join('; ')})` : 'byte-identical'}` +
        (c.metadata.length ? `; ${c.metadata.length} metadata differences, e.g. ${c.metadata.slice(0, 3).map((d) => `${d.path}: ${d.what}`).join('; ')}` : ''));
      await rm(join(work, `restore-${tool}`), { recursive: true, force: true });
    }
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------
// Report

const f2 = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2);
const f0 = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(0);
const f1 = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1);

type Metric = 'wall' | 'cpu' | 'rssMiB' | 'serverCpu' | 'serverRssMiB' | 'storedMiB' | 'storeOnlyMiB' | 'otherCpu';

function med(samples: Sample[], tool: Tool, step: Step, m: Metric): number {
  return median(samples.filter((s) => s.tool === tool && s.step === step).map((s) => s[m] ?? NaN));
}

/** Coffre's CPU is its agent's plus the server's: the peers do everything in one process. */
function coffreCpu(samples: Sample[], step: Step): number {
  return median(samples.filter((s) => s.tool === 'coffre' && s.step === step).map((s) => s.cpu + (s.serverCpu ?? 0)));
}

function ratio(a: number, b: number): number { return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN; }

function report(o: Options, samples: Sample[], checks: RestoreCheck[], notes: Set<string>, tree: { files: number; bytes: number; disk: number }, mutated: { files: number; bytes: number }, generateSeconds: number, date: string): string {
  const m = machine();
  const has = (t: Tool) => o.tools.includes(t) && samples.some((s) => s.tool === t);
  const peers = (['restic', 'borg'] as const).filter(has);
  const out: string[] = [];
  const kind = kindOf(o);
  const steps = stepsOf(kind);
  const medianNote = o.runs > 1 ? `median of ${o.runs} runs` : 'one run';
  const what = kind === 'tree' ? `the existing folder ${o.tree}` : kind === 'small' ? `${o.smallFiles!.toLocaleString('en-US')} small files` : `scale ${o.scale}`;
  const flags = kind === 'tree' ? `--tree ${o.tree}` : kind === 'small' ? `--small-files ${o.smallFiles}` : `--scale ${o.scale}`;
  out.push(`## Results: ${what} (${date.slice(0, 10)}, ${medianNote})`, '');
  out.push(`Command: \`npm run bench -- ${flags}${o.runs > 1 ? ` --runs ${o.runs}` : ''}${o.seed !== 1 ? ` --seed ${o.seed}` : ''}${o.tools.length < 3 ? ` --tools ${o.tools.join(',')}` : ''}\`, run ${date}.`, '');
  out.push('| machine | |', '|---|---|');
  out.push(`| CPU | ${m.cpu} |`, `| memory | ${m.memory} |`, `| kernel | ${m.kernel} |`, `| Node.js | ${m.node} |`,
    `| restic | ${m.restic} |`, `| borg | ${m.borg} |`, `| Coffre | ${m.coffre} |`, `| Python (tree generator) | ${version('python3', ['--version']) ?? '?'} |`);
  const treeLine = kind === 'tree'
    ? `Tree: \`${o.tree}\` as it is on this machine, read only — ${tree.files.toLocaleString('en-US')} files, ${f1(mib(tree.bytes))} MiB (${f1(mib(tree.disk))} MiB on disk). `
    : kind === 'small'
      ? `Tree: ${tree.files.toLocaleString('en-US')} files of 64-200 bytes, 1000 per folder (bench/lib.ts generateSmallFiles, seed ${o.seed}), ${f1(mib(tree.bytes))} MiB (${f1(mib(tree.disk))} MiB on disk, generated in ${generateSeconds.toFixed(0)} s). `
      : `Tree: \`bench/dataset.py generate --seed ${o.seed} --scale ${o.scale}\` — ${tree.files.toLocaleString('en-US')} files, ${f1(mib(tree.bytes))} MiB ` +
        `(${f1(mib(tree.disk))} MiB on disk, generated in ${generateSeconds.toFixed(0)} s); after \`mutate\`: ${mutated.files.toLocaleString('en-US')} files, ${f1(mib(mutated.bytes))} MiB. `;
  out.push('', treeLine +
    'Warm page cache; `sync` before every measured command. Coffre runs as two processes on loopback (`coffre server` and the `coffre` CLI); restic and borg as one each, ' +
    'with the options of shared/bench/peers.sh (restic `--compression auto`, borg `repokey-blake2`, `zstd,3`).', '');

  // Targets (issue 15): the generated tree, an existing one (/usr), and a million small files.
  const maxOver = (tool: Tool, metric: Metric, over: readonly Step[] = steps) => Math.max(...over.map((s) => med(samples, tool, s, metric)).filter(Number.isFinite));
  const wallTarget = (s: Step, limit: number) => ({
    what: `${STEP_NAMES[s]} wall`, limit,
    value: () => ratio(med(samples, 'coffre', s, 'wall'), med(samples, 'restic', s, 'wall')),
    coffre: () => `${f2(med(samples, 'coffre', s, 'wall'))} s`, restic: () => `${f2(med(samples, 'restic', s, 'wall'))} s`,
  });
  const memoryTarget = (label: string, over: readonly Step[], limit = 1.0) => ({
    what: `agent peak memory (${label})`, limit,
    value: () => ratio(maxOver('coffre', 'rssMiB', over), maxOver('restic', 'rssMiB', over)),
    coffre: () => `${f0(maxOver('coffre', 'rssMiB', over))} MiB`, restic: () => `${f0(maxOver('restic', 'rssMiB', over))} MiB`,
  });
  const storedStep: Step = kind === 'synthetic' ? 'changed' : 'unchanged';
  const storedTarget = {
    what: `stored size (after the ${kind === 'synthetic' ? 'third' : 'second'} backup)`, limit: 1.05,
    value: () => ratio(med(samples, 'coffre', storedStep, 'storedMiB'), med(samples, 'restic', storedStep, 'storedMiB')),
    coffre: () => `${f1(med(samples, 'coffre', storedStep, 'storedMiB'))} MiB`, restic: () => `${f1(med(samples, 'restic', storedStep, 'storedMiB'))} MiB`,
  };
  const targets: { what: string; limit: number; value: () => number; coffre: () => string; restic: () => string }[] =
    kind === 'synthetic'
      ? [wallTarget('initial', 0.6), wallTarget('unchanged', 0.4), wallTarget('changed', 0.6), wallTarget('restore', 0.6), memoryTarget('highest of the four steps', STEPS), storedTarget]
      : kind === 'tree'
        ? [wallTarget('initial', 0.8), wallTarget('unchanged', 0.5), wallTarget('restore', 0.7),
          memoryTarget('backup', ['initial', 'unchanged']), memoryTarget('restore', ['restore']), storedTarget]
        : [wallTarget('unchanged', 0.5), memoryTarget('highest of the three steps', steps), storedTarget];
  out.push('### Targets (Coffre / restic)', '');
  out.push('| step | target | Coffre | restic | Coffre / restic | met? |', '|---|---|---|---|---|---|');
  let met = 0;
  for (const t of targets) {
    if (!has('restic')) { out.push(`| ${t.what} | ≤ ${t.limit.toFixed(2)} | ${t.coffre()} | – | – | n/a (restic not run) |`); continue; }
    const v = t.value();
    const ok = Number.isFinite(v) && v <= t.limit;
    if (ok) met++;
    out.push(`| ${t.what} | ≤ ${t.limit.toFixed(2)} | ${t.coffre()} | ${t.restic()} | ${f2(v)} | ${ok ? 'met' : '**not met**'} |`);
  }
  if (has('restic')) out.push('', `${met} of ${targets.length} targets met.`);
  out.push('');

  // Ratios per step
  out.push('### Ratios per step', '');
  out.push('Coffre CPU is the agent\'s plus the server\'s. Memory is the agent\'s (the CLI process) against the peer\'s only process. Stored size is the whole data folder (stores and catalog) against the repository; the vault is LRS (one copy, as the peers keep; see the redundancy section for ZRS and GRS).', '');
  const head = ['step', ...peers.flatMap((p) => [`wall C/${p}`, `CPU C/${p}`, `memory C/${p}`, `stored C/${p}`])];
  out.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const s of steps) {
    const row = [STEP_NAMES[s]];
    for (const p of peers) {
      row.push(f2(ratio(med(samples, 'coffre', s, 'wall'), med(samples, p, s, 'wall'))));
      row.push(f2(ratio(coffreCpu(samples, s), med(samples, p, s, 'cpu'))));
      row.push(f2(ratio(med(samples, 'coffre', s, 'rssMiB'), med(samples, p, s, 'rssMiB'))));
      row.push(f2(ratio(med(samples, 'coffre', s, 'storedMiB'), med(samples, p, s, 'storedMiB'))));
    }
    out.push(`| ${row.join(' | ')} |`);
  }
  out.push('');

  // All measurements
  out.push(`### Measurements (${medianNote})`, '');
  out.push('"other CPU s" is the CPU time the rest of the machine used during the step (other processes, and kernel threads such as the writeback of the step\'s own files): figures well above a few tenths of a second mean the step shared the CPUs with other work, and its times are pessimistic.', '');
  out.push('| tool | step | wall s | CPU s | peak RSS MiB | server CPU s | server peak RSS MiB | stored MiB | other CPU s |', '|---|---|---|---|---|---|---|---|---|');
  for (const s of steps) {
    for (const t of o.tools) {
      if (!has(t)) continue;
      const stored = t === 'coffre'
        ? `${f1(med(samples, t, s, 'storedMiB'))} (store ${f1(med(samples, t, s, 'storeOnlyMiB'))})`
        : f1(med(samples, t, s, 'storedMiB'));
      out.push(`| ${t} | ${STEP_NAMES[s]} | ${f2(med(samples, t, s, 'wall'))} | ${f2(med(samples, t, s, 'cpu'))} | ${f0(med(samples, t, s, 'rssMiB'))} | ` +
        `${t === 'coffre' ? f2(med(samples, t, s, 'serverCpu')) : '–'} | ${t === 'coffre' ? f0(med(samples, t, s, 'serverRssMiB')) : '–'} | ${stored} | ${f2(med(samples, t, s, 'otherCpu'))} |`);
    }
  }
  out.push('');
  const details = samples.filter((s) => s.tool === 'coffre' && s.detail);
  if (details.length) {
    out.push('Coffre jobs:', '');
    for (const s of details) out.push(`- run ${s.run}, ${STEP_NAMES[s.step]}: ${s.detail}`);
    out.push('');
  }

  // Restore checks
  out.push('### Restores compared with the source', '');
  for (const t of o.tools) {
    const cs = checks.filter((c) => c.tool === t);
    if (!cs.length) continue;
    const bad = cs.filter((c) => c.content.length);
    const meta = cs.filter((c) => c.metadata.length);
    let line = `- ${t}: ${bad.length ? `**differs** in ${bad.length} of ${cs.length} run(s): ${bad[0]!.content.slice(0, 5).map((d) => `\`${d.path}\` ${d.what}`).join('; ')}${bad[0]!.content.length > 5 ? ` … (${bad[0]!.content.length} in all)` : ''}` : `byte-identical in ${cs.length === 1 ? 'the run' : `all ${cs.length} runs`}`}`;
    line += meta.length ? `; metadata differs (${meta[0]!.metadata.length}): ${meta[0]!.metadata.slice(0, 3).map((d) => `\`${d.path}\` ${d.what}`).join('; ')}` : '; modes and mtimes identical too';
    out.push(line);
  }
  if (notes.size) {
    out.push('', '### Notes', '');
    for (const n of notes) out.push(`- ${n}`);
  }
  return out.join('\n') + '\n';
}

const INTRO = `# Benchmarks

\`npm run bench\` (bench/run.ts) measures Coffre against restic and borg on the deterministic
test tree of \`bench/dataset.py\` (a copy of shared/bench/dataset.py): initial backup,
unchanged re-backup, backup after a ~1% change (\`dataset.py mutate\`), full restore. Options:
\`--scale F\` (tree size; 1 ≈ 1.2 GiB), \`--runs N\` (medians), \`--tools coffre,restic,borg\`,
\`--keep\` (keep the work folder under the system's temporary folder), \`--no-install\` (do not
run \`bench/install-peers.sh\`, which installs restic, borgbackup and GNU time with apt-get when
run as root), \`--tree PATH\` (back up an existing folder such as /usr, read only) and
\`--small-files N\` (a generated tree of N files of 64-200 bytes): these two measure the
initial backup, the unchanged re-backup and the restore, each in a section of its own below.
Times are wall-clock seconds from GNU time; compare ratios taken in one run,
not absolute times across machines. \`node dist/bench/profile.js\` (after \`npm run build\`)
profiles the agent and rewrites the profile section below. The vault is LRS (one copy, as
the peers keep); \`npm run bench:redundancy\` (bench/redundancy.ts) measures LRS, ZRS and GRS
side by side and writes the redundancy section.
`;

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (o.install) {
    const r = await run('bash', [join(ROOT, 'bench', 'install-peers.sh')]);
    if (r.code !== 0) log(`bench/install-peers.sh: ${r.stderr.trim()}`);
  }
  if ((await run('/usr/bin/time', ['-f', '%e', 'true']).catch(() => ({ code: -1 }))).code !== 0) {
    throw new Error('needs GNU time at /usr/bin/time (Debian package time)');
  }
  for (const t of ['restic', 'borg'] as const) {
    if (o.tools.includes(t) && !version(t, t === 'restic' ? ['version'] : ['--version'])) {
      log(`${t} is not installed: measuring without it`);
      o.tools = o.tools.filter((x) => x !== t);
    }
  }
  const work = await mkdtemp(join(tmpdir(), 'coffre-bench-'));
  const onSignal = () => {
    if (!o.keep) rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  log(`work folder ${work}; scale ${o.scale}, ${o.runs} run(s), tools ${o.tools.join(', ')}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const samples: Sample[] = [];
  const checks: RestoreCheck[] = [];
  const notes = new Set<string>();
  try {
    const t0 = Date.now();
    const kind = kindOf(o);
    if (kind === 'synthetic') await generateTree(join(work, 'src-orig'), o.scale, o.seed);
    else if (kind === 'small') await generateSmallFiles(join(work, 'src-orig'), o.smallFiles!, o.seed);
    const generateSeconds = (Date.now() - t0) / 1000;
    const tree = await treeStats(kind === 'tree' ? o.tree! : join(work, 'src-orig'));
    log(`tree: ${tree.files} files, ${mib(tree.bytes).toFixed(1)} MiB, generated in ${generateSeconds.toFixed(1)} s`);
    for (let r = 1; r <= o.runs; r++) await oneRun(work, r, o, samples, checks, notes);
    const mutated = kind === 'synthetic' ? await treeStats(join(work, 'src')) : tree;
    notes.add(`Load average (1, 5, 15 min) when the run ended: ${loadavg().map((x) => x.toFixed(2)).join(', ')}.`);
    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const body = report(o, samples, checks, notes, tree, mutated, generateSeconds, date);
    process.stdout.write(body);
    let text = '';
    try { text = await readFile(o.out, 'utf8'); } catch { /* first report */ }
    text = replaceSection(replaceSection(text, 'intro', INTRO), SECTION[kind], body);
    await writeFile(o.out, text);
    log(`wrote ${o.out}`);
    const bad = checks.filter((c) => c.content.length);
    if (bad.length) {
      log(`restore differs from the source: ${[...new Set(bad.map((c) => c.tool))].join(', ')}`);
      process.exitCode = 1;
    }
  } finally {
    if (o.keep) log(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
