/**
 * Builds a database point on the file data path: files go in batches to the file backup's
 * worker threads (FileEncoder: read, content-defined chunks, keyed ids, zstd, encryption,
 * packs), only chunks the vault lacks travel, and the tree becomes a sealed manifest and a
 * reference list. A Full of a database that changed a little therefore stores little: its
 * unchanged chunks are those of the previous Full.
 *
 * Relation files and WAL segments are cut at fixed offsets (FIXED_CHUNK), not by content:
 * PostgreSQL never shifts their bytes (a page stays at its offset), so fixed boundaries
 * deduplicate a new full against the previous one exactly as content-defined ones would, and
 * a changed page touches one chunk; the rolling hash that finds content-defined boundaries
 * was the largest cost of reading a database (measured: about 40% of a full's CPU). Other
 * files are cut content-defined.
 *
 * Differences from a file backup: no metadata cache (a database's files change in place
 * within the same second, so size and time prove nothing: every file is read); a file that
 * changes while read is expected (WAL replay repairs it); a file that vanished while the
 * backup ran (a dropped table) is left out; any other read error fails the backup, since a
 * database with a missing file cannot be restored.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import type { JobCounters, JobProblem } from '../../core/api.js';
import { ID_BYTES, type KeySet } from '../../core/crypto.js';
import { DEFAULT_CHUNKER } from '../../core/fastcdc.js';
import { SharedIdSet } from '../../core/known-ids.js';
import { dbReferencedChunks, sealDbManifest, type DbManifest, type DeltaFile } from '../../core/db-manifest.js';
import type { Entry, FileEntry } from '../../core/manifest.js';
import { CoffreError } from '../../core/errors.js';
import type { VaultClient } from '../client.js';
import { FileEncoder, type FileResult, type FileTask, type PageFilter } from '../file-encoder.js';

const SMALL_FILE = 1024 * 1024;
/**
 * Files larger than this are read as parts of this size, each on whichever worker is free: a
 * database's largest tables are single files of up to 1 GiB, which one worker alone would
 * read while the others wait. A multiple of the page size, so parts of a relation file hold
 * whole pages; a chunk boundary falls at each part's end, at the same offsets every time.
 */
export const PART_BYTES = 64 * 1024 * 1024;
/** Chunk size of files cut at fixed offsets: 128 pages. */
export const FIXED_CHUNK = 1024 * 1024;
const BATCH_BYTES = 2 * 1024 * 1024;
const BATCH_FILES = 128;

export interface FileMetaInput { mode: number; uid: number; gid: number; mtimeNs: string; ctimeNs: string; size: number }

/** A file being read, in one or several parts. */
interface Reading { entry: FileEntry; abs: string; pages?: PageFilter; parts: (FileResult | null)[]; left: number }
interface Pending { reading: Reading; part: number }

export class PointWriter {
  readonly entries: Entry[] = [];
  readonly deltas: DeltaFile[] = [];
  private readonly dropped = new Set<Entry>();
  private readonly work: Promise<void>[] = [];
  private encoder: FileEncoder | null = null;
  private shared: SharedIdSet | null = null;
  private batch: { tasks: FileTask[]; pending: Pending[]; bytes: number } = { tasks: [], pending: [], bytes: 0 };

  private failure: unknown = null;
  uploaded = 0;
  files = 0;
  bytes = 0;
  filesScanned = 0;
  /** Bytes of the changed pages a differential keeps of its relation files. */
  changedPageBytes = 0;

  private constructor(private readonly client: VaultClient, private readonly containerId: string, private readonly keys: KeySet, private readonly ids: Buffer,
    private readonly expectedBytes: number, private readonly partBytes: number) {}

  /** `expectedBytes` sizes the shared id set (new chunks it may have to hold); `partBytes` (a multiple of 8 KiB) splits large files. */
  static async open(client: VaultClient, containerId: string, keys: KeySet, expectedBytes: number, partBytes = PART_BYTES): Promise<PointWriter> {
    if (partBytes <= 0 || partBytes % 8192 !== 0) throw new CoffreError('InvalidArgument', 'a file part is a positive multiple of 8 KiB');
    return new PointWriter(client, containerId, keys, await client.blobIds(containerId), expectedBytes, partBytes);
  }

  counters(): JobCounters {
    const read = this.encoder?.counts ?? { bytesRead: 0, bytesNew: 0 };
    return { bytesScanned: read.bytesRead, bytesNew: read.bytesNew, bytesUploaded: this.uploaded, filesScanned: this.filesScanned, filesChanged: this.filesScanned };
  }

  addDir(path: string[], m: FileMetaInput): void {
    this.entries.push({ type: 'dir', path, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtimeNs });
  }

  addSymlink(path: string[], m: FileMetaInput, target: string): void {
    this.entries.push({ type: 'symlink', path, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtimeNs, target });
  }

  /**
   * Queues a file to read: whole, or only its changed pages (`pages`); cut content-defined, or
   * every `fixedChunk` bytes for a file whose content never shifts.
   */
  async addFile(path: string[], abs: string, m: FileMetaInput, opts: { pages?: PageFilter; fixedChunk?: number } = {}): Promise<void> {
    const { pages, fixedChunk } = opts;
    this.filesScanned++;
    const entry: FileEntry = { type: 'file', path, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtimeNs, size: 0, chunks: [] };
    this.entries.push(entry);
    const count = Math.max(1, Math.ceil(m.size / this.partBytes));
    const reading: Reading = { entry, abs, ...(pages ? { pages } : {}), parts: new Array<FileResult | null>(count).fill(null), left: count };
    for (let part = 0; part < count; part++) {
      const range: [string, string] | undefined = count > 1 ? [String(part * this.partBytes), String(part === count - 1 ? Number.MAX_SAFE_INTEGER : (part + 1) * this.partBytes)] : undefined;
      this.batch.tasks.push({ path: Buffer.from(abs).toString('latin1'), display: path.join('/'), size: String(m.size), mtimeNs: m.mtimeNs, ctimeNs: m.ctimeNs, ...(pages ? { pages } : {}), ...(range ? { range } : {}), ...(fixedChunk ? { fixedChunk } : {}) });
      this.batch.pending.push({ reading, part });
      const bytes = Math.min(this.partBytes, m.size);
      this.batch.bytes += bytes;
      if (bytes >= SMALL_FILE || this.batch.bytes >= BATCH_BYTES || this.batch.tasks.length >= BATCH_FILES) await this.dispatch();
    }
  }

  private async dispatch(): Promise<void> {
    if (this.batch.tasks.length === 0) return;
    const { tasks, pending, bytes } = this.batch;
    this.batch = { tasks: [], pending: [], bytes: 0 };
    if (!this.encoder) {
      const ids = this.ids;
      this.shared = SharedIdSet.create(ids.length / ID_BYTES + Math.ceil(this.expectedBytes / DEFAULT_CHUNKER.minSize) + 4096);
      for (let o = 0; o < ids.length; o += ID_BYTES) this.shared.claim(ids.subarray(o, o + ID_BYTES));
      this.encoder = new FileEncoder(this.keys, this.shared, async (data) => {
        await this.client.putPack(this.containerId, randomBytes(16).toString('hex'), data);
        this.uploaded += data.length;
      });
    }
    await this.encoder.ready();
    const task = this.encoder.read(tasks, bytes).then((results) => { results.forEach((r, i) => this.finished(pending[i]!, r)); });
    task.catch((e: unknown) => { this.failure ??= e; });
    this.work.push(task);
  }

  private finished(p: Pending, r: FileResult): void {
    const reading = p.reading;
    reading.parts[p.part] = r;
    if (--reading.left > 0) return;
    const parts = reading.parts as FileResult[];
    const e = reading.entry;
    if (parts.some((x) => !x.chunks)) {
      // Gone since the walk (a dropped table, a removed temporary file): not part of the database any more.
      if (!lstatSync(reading.abs, { throwIfNoEntry: false })) { this.dropped.add(e); return; }
      const bad = parts.find((x) => !x.chunks)!;
      this.failure ??= new CoffreError('Internal', `cannot read ${e.path.join('/')}: ${bad.problems[0]?.message ?? 'unknown error'}; the backup needs every file of the database`);
      return;
    }
    if (reading.pages) {
      this.dropped.add(e);
      const extents = parts.flatMap((x) => x.extents ?? []);
      const size = Math.min(...parts.map((x) => x.size!));
      this.deltas.push({ path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size, extents });
      for (const [, chunks] of extents) for (const c of chunks) this.changedPageBytes += c[1];
      this.files++;
      this.bytes += size;
      return;
    }
    e.chunks = parts.flatMap((x) => x.chunks!);
    e.size = e.chunks.reduce((n, c) => n + c[1], 0);
    this.files++;
    this.bytes += e.size;
  }

  /** Waits until every file queued so far is read (its chunks may still be on their way to the vault). */
  async drain(): Promise<void> {
    await this.dispatch();
    await Promise.all(this.work);
    if (this.failure) throw this.failure;
  }

  /** Waits for every file and pack; returns the tree without the files that vanished. */
  async finish(): Promise<{ entries: Entry[]; deltas: DeltaFile[] }> {
    await this.drain();
    if (this.encoder) await this.encoder.finish();
    this.deltas.sort((a, b) => (a.path.join('/') < b.path.join('/') ? -1 : 1));
    return { entries: this.entries.filter((e) => !this.dropped.has(e)), deltas: this.deltas };
  }

  async close(): Promise<void> {
    await this.encoder?.close();
  }
}

/** Warnings of a database backup: the file engine's "changed while read" is expected here and dropped. */
export function keepWarning(p: JobProblem): boolean {
  return p.code !== 'FileChanged';
}

/** Sends a database point's sealed manifest and the list of chunks it references (what the vault keeps alive). */
export async function putDbPointObjects(client: VaultClient, keys: KeySet, pointId: string, jobId: string, manifest: DbManifest): Promise<void> {
  const refs = dbReferencedChunks(manifest);
  const refsBuf = Buffer.allocUnsafe(refs.length * ID_BYTES);
  refs.forEach((id, i) => refsBuf.write(id, i * ID_BYTES, 'hex'));
  await client.putPointObject(pointId, jobId, 'manifest', sealDbManifest(keys, pointId, manifest));
  await client.putPointObject(pointId, jobId, 'refs', refsBuf);
}
