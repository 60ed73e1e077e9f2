/**
 * `node dist/bench/profile.js [--scale F] [--seed N] [--top N] [--keep] [--out FILE]`
 *
 * Where the agent's time goes: generates the test tree (small by default), starts a Coffre
 * server in its own process, runs one initial backup and one full restore with
 * `node --cpu-prof` on the CLI process, and summarises each profile (self time by function,
 * by source file, and inclusive time of Coffre's own functions). Prints the summary and
 * rewrites the profile section of docs/benchmarks.md.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BIN, COFFRE_PASSPHRASE, CoffreServer, ROOT, cleanEnv, generateTree, machine, mib, registerCoffreAgent, replaceSection, timed, treeStats,
} from './lib.js';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

function where(url: string): string {
  if (!url) return '';
  if (url.startsWith('file://')) {
    const abs = fileURLToPath(url);
    const nm = abs.lastIndexOf('/node_modules/');
    if (nm >= 0) return abs.slice(nm + 1);
    const rel = relative(ROOT, abs);
    return rel.startsWith('..') ? abs : rel;
  }
  return url;
}

function label(cf: CallFrame): string {
  const name = cf.functionName || '(anonymous)';
  const at = where(cf.url);
  return at ? `${name} (${at}:${cf.lineNumber + 1})` : name;
}

export interface ProfileSummary { totalMs: number; self: [string, number][]; files: [string, number][]; inclusive: [string, number][]; callers: Map<string, string> }

/** Summarises one or more profiles (e.g. all worker threads) together. */
export function summarise(profiles: CpuProfile[]): ProfileSummary {
  const self = new Map<string, number>();
  const files = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const callerTime = new Map<string, Map<string, number>>();
  let total = 0;
  for (const p of profiles) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // timeDeltas[i + 1] is the time between sample i and the next: the time sample i stands for.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    total += dt;
    const node = byId.get(p.samples[i]!)!;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    // The nearest caller that is not Node's or a library's own code: who asked for this work.
    let up = parent.get(node.id);
    while (up !== undefined && !byId.get(up)!.callFrame.url.includes('/dist/src/')) up = parent.get(up);
    if (up !== undefined) {
      const c = callerTime.get(key) ?? new Map<string, number>();
      const ck = label(byId.get(up)!.callFrame);
      c.set(ck, (c.get(ck) ?? 0) + dt);
      callerTime.set(key, c);
    }
    const file = where(node.callFrame.url) || (node.callFrame.functionName.startsWith('(') ? node.callFrame.functionName : '(native or built-in)');
    files.set(file, (files.get(file) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const cf = byId.get(id)!.callFrame;
      if (!cf.url.includes('/dist/src/')) continue;
      const k = label(cf);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  }
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  const callers = new Map<string, string>();
  for (const [k, m] of callerTime) callers.set(k, sorted(m)[0]![0]);
  return { totalMs: total, self: sorted(self), files: sorted(files), inclusive: sorted(inclusive), callers };
}

const code = (k: string) => `\`${k.replace(/\|/g, '\\|')}\``;

function table(title: string, rows: [string, number][], total: number, top: number, callers?: Map<string, string>): string[] {
  const out = callers ? [`| ${title} | ms | % | mostly under (Coffre code) |`, '|---|---|---|---|'] : [`| ${title} | ms | % |`, '|---|---|---|'];
  for (const [k, ms] of rows.slice(0, top)) {
    const c = callers?.get(k);
    out.push(`| ${code(k)} | ${ms.toFixed(0)} | ${(100 * ms / total).toFixed(1)} |${callers ? ` ${c ? code(c) : ''} |` : ''}`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, def: string) => { const i = args.indexOf(name); return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def; };
  const scale = Number(opt('--scale', '0.1'));
  const seed = Number(opt('--seed', '1'));
  const top = Number(opt('--top', '15'));
  const out = opt('--out', join(ROOT, 'docs', 'benchmarks.md'));
  const keep = args.includes('--keep');
  const work = await mkdtemp(join(tmpdir(), 'coffre-profile-'));
  const env = cleanEnv({ COFFRE_PASSPHRASE });
  let server: CoffreServer | null = null;
  try {
    const src = join(work, 'src');
    await generateTree(src, scale, seed);
    const tree = await treeStats(src);
    server = await CoffreServer.start(join(work, 'coffre-data'), cleanEnv());
    const agentDir = join(work, 'agent');
    await registerCoffreAgent(server, work, agentDir, env);
    const profileOf = async (name: string, cliArgs: string[]) => {
      const dir = join(work, `prof-${name}`);
      const t = await timed(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, BIN, '--agent-dir', agentDir, ...cliArgs], { cwd: work, env, timeFile: join(work, '.time'), okCodes: [4] });
      // One file per thread: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile, thread 0 is the main one.
      const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
      const load = async (f: string) => JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile;
      const isMain = (f: string) => /\.0\.\d+\.cpuprofile$/.test(f);
      const workers = files.filter((f) => !isMain(f));
      return {
        t, job: JSON.parse(t.stdout) as { pointId: string | null; status: string },
        summary: summarise([await load(files.find(isMain)!)]),
        workers: workers.length, workerSummary: workers.length ? summarise(await Promise.all(workers.map(load))) : null,
      };
    };
    const b = await profileOf('backup', ['backup', src, '--item', 'profile', '--json']);
    const u = await profileOf('unchanged', ['backup', src, '--item', 'profile', '--json']);
    const r = await profileOf('restore', ['restore', b.job.pointId!, '--target', join(work, 'restore'), '--json']);
    const m = machine();
    const lines: string[] = [
      `## Where the agent's time goes (CPU profile, ${new Date().toISOString().slice(0, 10)})`, '',
      `\`node dist/bench/profile.js --scale ${scale}\`: \`node --cpu-prof\` on the \`coffre\` CLI process (the agent: its main thread, then its worker threads together; the server runs in its own process and is not in these figures) ` +
      `for one initial backup, one unchanged re-backup and one full restore of the scale-${scale} tree (${tree.files.toLocaleString('en-US')} files, ${mib(tree.bytes).toFixed(1)} MiB) on ${m.cpu}, Node.js ${m.node}, Coffre ${m.coffre}. ` +
      'Inclusive time only follows synchronous call stacks (an `await` cuts the stack), so it undercounts async functions. Self time is time spent in the function itself (native code called from it, e.g. zstd or libsodium, counts as the JS function that called it only when V8 attributes it so; otherwise it shows as `(program)` or by the native function\'s name). `(idle)` is the event loop waiting: for the disk, the server or a child.', '',
    ];
    for (const [name, p] of [['initial backup', b], ['unchanged re-backup', u], ['full restore', r]] as const) {
      lines.push(`### ${name}: ${p.t.wall.toFixed(2)} s wall, ${(p.t.user + p.t.sys).toFixed(2)} s CPU (profiled; job ${p.job.status}); ${(p.summary.totalMs / 1000).toFixed(2)} s sampled`, '');
      lines.push(...table('function (self time)', p.summary.self, p.summary.totalMs, top, p.summary.callers), '');
      lines.push(...table('source file (self time)', p.summary.files, p.summary.totalMs, 8), '');
      lines.push(...table('Coffre function (inclusive time)', p.summary.inclusive, p.summary.totalMs, 10), '');
      if (p.workerSummary) {
        const w = p.workerSummary;
        lines.push(`Worker threads (${p.workers}, together): ${(w.totalMs / 1000).toFixed(2)} s sampled, ${(100 * (1 - (w.self.find(([k]) => k === '(idle)')?.[1] ?? 0) / w.totalMs)).toFixed(0)}% of it busy.`, '');
        lines.push(...table('worker function (self time)', w.self, w.totalMs, 8, w.callers), '');
      }
    }
    const body = lines.join('\n');
    process.stdout.write(body + '\n');
    let text = '';
    try { text = await readFile(out, 'utf8'); } catch { /* new file */ }
    await writeFile(out, replaceSection(text, 'profile', body));
    process.stderr.write(`profile: wrote ${out}\n`);
  } finally {
    await server?.stop();
    if (keep) process.stderr.write(`profile: kept ${work}\n`);
    else await rm(work, { recursive: true, force: true });
  }
}

// Run only as a program: other scripts import `summarise` from here.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    process.stderr.write(`profile: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
