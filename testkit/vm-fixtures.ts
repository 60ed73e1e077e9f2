/**
 * Disk images for the VM tests: real ext4 file systems built by `mkfs.ext4 -d` from folders
 * of generated files (no mount), patched with `debugfs -w`, optionally inside an MBR
 * partition. Contents are deterministic (seeded), sizes small.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const MiB = 1024 * 1024;

/** Incompressible but reproducible bytes: SHA-256 in counter mode. */
export function seededBytes(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let o = 0, i = 0; o < length; o += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, o, 0, Math.min(32, length - o));
  return out;
}

/** Compressible, reproducible text. */
export function seededText(seed: string, lines: number): string {
  return Array.from({ length: lines }, (_, i) => `${seed} line ${i} ${createHash('md5').update(`${seed}${i}`).digest('hex')}`).join('\n') + '\n';
}

/** Writes a tree { 'etc/nginx/nginx.conf': content, ... } under `dir`. */
export async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

/** An ext4 image of `sizeMiB` holding the tree in `srcDir`. */
export async function mkfsExt4(image: string, srcDir: string, sizeMiB: number): Promise<void> {
  await run('mkfs.ext4', ['-q', '-F', '-d', srcDir, image, `${sizeMiB}M`]);
}

/** Runs debugfs commands that write to the image (e.g. `rm /a`, `write local /a`). */
export async function debugfsWrite(image: string, commands: string[]): Promise<void> {
  const cmdFile = `${image}.cmds`;
  await writeFile(cmdFile, commands.join('\n') + '\n');
  const r = await run('debugfs', ['-w', '-f', cmdFile, image]);
  if (/error|not found|cannot/i.test(r.stderr.replace(/^debugfs \d.*$/m, ''))) throw new Error(`debugfs: ${r.stderr}`);
}

/** A disk with an MBR whose one partition (type 83, at 1 MiB) holds the file system image `fs`. */
export async function partitionedDisk(disk: string, fs: string): Promise<void> {
  const data = await readFile(fs);
  const mbr = Buffer.alloc(512);
  const e = 446;
  mbr[e + 4] = 0x83;
  mbr.writeUInt32LE(2048, e + 8);
  mbr.writeUInt32LE(data.length / 512, e + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const fh = await open(disk, 'w');
  try {
    await fh.write(mbr, 0, 512, 0);
    await fh.write(data, 0, data.length, MiB);
  } finally {
    await fh.close();
  }
}

/** Indexes of the `blockSize` blocks that differ between two images of the same size. */
export function differingBlocks(a: Buffer, b: Buffer, blockSize: number): number[] {
  const out: number[] = [];
  for (let o = 0, i = 0; o < Math.max(a.length, b.length); o += blockSize, i++) {
    if (!a.subarray(o, o + blockSize).equals(b.subarray(o, o + blockSize))) out.push(i);
  }
  return out;
}

export async function cmp(a: string, b: string): Promise<boolean> {
  try {
    await run('cmp', ['-s', a, b]);
    return true;
  } catch {
    // cmp exits 1 when the files differ (and 2 on trouble): both mean "not identical".
    return false;
  }
}

export async function qemuCompare(raw: string, vhd: string): Promise<{ same: boolean; output: string }> {
  try {
    const r = await run('qemu-img', ['compare', '-f', 'raw', raw, '-F', 'vpc', vhd]);
    return { same: true, output: r.stdout };
  } catch (e) {
    return { same: false, output: `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}` };
  }
}

export { run };
