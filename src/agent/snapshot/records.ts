/**
 * Knowing which snapshots a dead run left. Each run is named after its process: pid and the
 * process's start time (field 22 of /proc/PID/stat), which together never name two processes,
 * even when a pid is reused. Snapshot names carry that identity, and before a run makes any
 * snapshot it writes (durably) a record of the ones it is about to make under
 * `<agent dir>/snapshots/`. A later run removes the snapshots of every record, and of every
 * name, whose process is gone: nothing a `kill -9` leaves survives the next run.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SNAPSHOT_PREFIX, type SnapshotRef } from './snapshotter.js';

export interface RunIdentity { pid: number; start: string }

async function startOf(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

let self: RunIdentity | null = null;
let runs = 0;

export async function thisProcess(): Promise<RunIdentity> {
  self ??= { pid: process.pid, start: (await startOf(process.pid)) ?? '0' };
  return self;
}

/** A prefix no other run shares: this process, and the how-manyth run in it. */
export async function newRunName(): Promise<string> {
  const me = await thisProcess();
  return `${SNAPSHOT_PREFIX}${me.pid}-${me.start}-${runs++}`;
}

/** The process a snapshot or record name belongs to, or null for a name not made by Coffre. */
export function ownerOf(name: string): RunIdentity | null {
  const m = /^coffre-(\d+)-(\d+)-/.exec(name);
  return m ? { pid: Number(m[1]), start: m[2]! } : null;
}

export async function isRunning(id: RunIdentity): Promise<boolean> {
  return (await startOf(id.pid)) === id.start;
}

interface RunRecord { version: 1; run: string; snapshots: SnapshotRef[] }

const recordsDir = (agentDir: string) => join(agentDir, 'snapshots');

/** Writes the record before the snapshots exist: a crash at any point after leaves it behind. */
export async function writeRecord(agentDir: string, run: string, snapshots: SnapshotRef[]): Promise<void> {
  const dir = recordsDir(agentDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${run}.json`);
  const tmp = `${file}.tmp`;
  const record: RunRecord = { version: 1, run, snapshots };
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(record));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export async function removeRecord(agentDir: string, run: string): Promise<void> {
  await rm(join(recordsDir(agentDir), `${run}.json`), { force: true });
}

/** Records of runs whose process is gone. A record that cannot be read is skipped (and kept). */
export async function deadRecords(agentDir: string): Promise<{ run: string; snapshots: SnapshotRef[] }[]> {
  let names: string[];
  try {
    names = await readdir(recordsDir(agentDir));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: { run: string; snapshots: SnapshotRef[] }[] = [];
  for (const name of names) {
    const owner = ownerOf(name);
    if (!owner || await isRunning(owner)) continue;
    // A record torn by a kill while it was written: its snapshots were not made yet.
    if (name.endsWith('.json.tmp')) await rm(join(recordsDir(agentDir), name), { force: true });
    if (!name.endsWith('.json')) continue;
    try {
      const record = JSON.parse(await readFile(join(recordsDir(agentDir), name), 'utf8')) as RunRecord;
      if (record.version === 1 && Array.isArray(record.snapshots)) out.push({ run: record.run, snapshots: record.snapshots });
    } catch {
      // Torn or foreign: the snapshots it would name are still found by their names on their volumes.
    }
  }
  return out;
}
